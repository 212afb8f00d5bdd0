/**
 * PeSIT E Hors-SIT codec: TCP stream → entities → FPDUs → parameters, and back (docs/pesit.md §2–§4, §8.4).
 *
 * Every length is bounded before anything is allocated: entities by the caller's maximum (≤ 65535), FPDUs by
 * their entity, parameters by their FPDU and by the per-PI maximum of the catalogue. Decoding failures throw
 * `ProtocolError` carrying the diagnostic to send: D3-311 for structure (lengths, unknown type, truncated unit),
 * D3-318 for parameters (LI = 0, missing mandatory PI, unknown or repeated PI, illegal value).
 *
 * Choices where the protocol leaves room (docs/pesit.md §4.3, §12): parameters are always EMITTED in canonical
 * order; on receipt, out-of-order units are accepted (more partners work, nothing is ambiguous since repetition is
 * refused). The CRC option (PI 1 = 1) is not implemented: sessions refuse it at CONNECT.
 */
import { decodeDiagnostic, encodeDiagnostic, type Diagnostic } from './diagnostics.js'
import { ProtocolError } from './errors.js'
import { DIAG } from './diagnostics.js'
import {
  FPDU_TYPES, PI_DEFINITIONS, PGI_CODES, TEMPLATES, TOLERATED_MISSING, TOLERATED_UNUSED_PIS,
  fpduDisplayName, fpduTypeOf, isConcatenable, isDataFpdu, type FpduType, type TemplateItem
} from './fpdu-types.js'

export const HEADER_SIZE = 6
export const MAX_FPDU_SIZE = 0xffff
export const MAX_ENTITY_SIZE = 0xffff
/** Articles per multi-article DTF: ID.SRC is one byte. */
export const MAX_ARTICLES_PER_DTF = 255

export type PiValue = number | string | Uint8Array | Diagnostic
/** PIs and PGIs of one FPDU by code; a PGI's value is itself a `Params` of its member PIs. */
export interface Params { [code: number]: PiValue | Params | undefined }

export interface Fpdu {
  type: FpduType
  idDst: number
  /** connection-phase FPDUs: sender's connection id; multi-article DTF: article count; otherwise 0 */
  idSrc: number
  params: Params
  /** DTF / DTFDA / DTFMA / DTFFA payload (for a multi-article DTF, with its 2-byte article prefixes) */
  data?: Uint8Array
}

// ---------------------------------------------------------------------------------------------------------
// Parameter values

const latin1 = new TextDecoder('latin1')

function encodeString (s: string, code: number): Uint8Array {
  const out = new Uint8Array(s.length)
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c > 0xff) throw new RangeError(`PI ${code}: character outside Latin-1 in ${JSON.stringify(s)}`)
    out[i] = c
  }
  return out
}

function encodeUnsigned (n: number, code: number, max: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`PI ${code}: ${n} is not an unsigned integer`)
  const bytes: number[] = []
  let v = n
  do {
    bytes.unshift(v % 256)
    v = Math.floor(v / 256)
  } while (v > 0)
  if (bytes.length > max) throw new RangeError(`PI ${code}: ${n} does not fit in ${max} byte(s)`)
  return Uint8Array.from(bytes)
}

function isParams (v: unknown): v is Params {
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array) && !('reason' in v)
}

function encodeValue (code: number, value: PiValue): Uint8Array | undefined {
  const def = PI_DEFINITIONS.get(code)
  if (def === undefined) throw new RangeError(`unknown PI ${code}`)
  let bytes: Uint8Array
  switch (def.kind) {
    case 'C':
    case 'D':
      if (typeof value !== 'string') throw new TypeError(`PI ${code} (${def.name}) needs a string`)
      if (value.length === 0) return undefined // LI = 0 is illegal: an empty string is an absent PI
      bytes = encodeString(value, code)
      if (def.kind === 'D' && bytes.length !== 12) throw new RangeError(`PI ${code}: a date is 12 characters YYMMDDhhmmss`)
      break
    case 'N':
    case 'S':
    case 'M':
      if (typeof value !== 'number') throw new TypeError(`PI ${code} (${def.name}) needs a number`)
      bytes = encodeUnsigned(value, code, def.max)
      break
    case 'A':
      if (!(value instanceof Uint8Array)) throw new TypeError(`PI ${code} (${def.name}) needs bytes`)
      if (value.length === 0) return undefined
      bytes = value
      break
    case 'DIAG':
      if (typeof value !== 'object' || !('reason' in value)) throw new TypeError(`PI ${code} needs a Diagnostic`)
      bytes = encodeDiagnostic(value)
      break
  }
  if (bytes.length > def.max) throw new RangeError(`PI ${code} (${def.name}): ${bytes.length} bytes, at most ${def.max}`)
  if (def.exact !== undefined && bytes.length !== def.exact) throw new RangeError(`PI ${code} (${def.name}): exactly ${def.exact} bytes`)
  return bytes
}

function decodeValue (code: number, bytes: Uint8Array): PiValue | undefined {
  const def = PI_DEFINITIONS.get(code)
  if (def === undefined) throw new ProtocolError(`unknown PI ${code}`, DIAG.BAD_PARAMETER)
  if (bytes.length > def.max) throw new ProtocolError(`PI ${code} (${def.name}): ${bytes.length} bytes, at most ${def.max}`, DIAG.BAD_PARAMETER)
  if (def.exact !== undefined && bytes.length !== def.exact) {
    throw new ProtocolError(`PI ${code} (${def.name}): ${bytes.length} bytes, expected ${def.exact}`, DIAG.BAD_PARAMETER)
  }
  switch (def.kind) {
    case 'C':
    case 'D': {
      // Trailing blanks are not significant; an all-blank value means "absent" (C:X pads PI 99 with blanks).
      const s = latin1.decode(bytes).replace(/ +$/, '')
      return s === '' ? undefined : s
    }
    case 'N':
    case 'S':
    case 'M': {
      // Non-minimal forms are legal (C:X sends PI 13 as 00 24 C9).
      let v = 0
      for (const b of bytes) v = v * 256 + b
      if (!Number.isSafeInteger(v)) throw new ProtocolError(`PI ${code} (${def.name}): value beyond 2^53`, DIAG.BAD_PARAMETER)
      return v
    }
    case 'A':
      // A copy: the FPDU's bytes are a view into the channel's read buffer, reused once the next FPDU is read.
      return bytes.slice()
    case 'DIAG': {
      const d = decodeDiagnostic(bytes)
      if (d === undefined) throw new ProtocolError(`PI 2: ${bytes.length} bytes is not a diagnostic`, DIAG.BAD_PARAMETER)
      return d
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Units (code LI value)

function unitHeaderSize (len: number): number {
  return len < 255 ? 2 : 4
}

function writeUnitHeader (out: Uint8Array, off: number, code: number, len: number): number {
  out[off] = code
  if (len < 255) {
    out[off + 1] = len
    return off + 2
  }
  out[off + 1] = 0xff
  out[off + 2] = len >> 8
  out[off + 3] = len & 0xff
  return off + 4
}

interface EncodedUnit { code: number, bytes: Uint8Array[], size: number }

function encodeItems (type: FpduType, items: readonly TemplateItem[], params: Params, where: string): EncodedUnit[] {
  const known = new Set(items.map((i) => i.code))
  for (const k of Object.keys(params)) {
    if (params[Number(k)] !== undefined && !known.has(Number(k))) {
      throw new RangeError(`${fpduDisplayName(type)}: parameter ${k} is not in the template${where}`)
    }
  }
  const out: EncodedUnit[] = []
  for (const item of items) {
    const v = params[item.code]
    if (v === undefined) {
      if (!item.optional) throw new RangeError(`${fpduDisplayName(type)}: mandatory ${item.members !== undefined ? 'PGI' : 'PI'} ${item.code} missing${where}`)
      continue
    }
    if (item.members !== undefined) {
      if (!isParams(v)) throw new TypeError(`PGI ${item.code} needs a group of PIs`)
      const members = encodeItems(type, item.members, v, ` in PGI ${item.code}`)
      const len = members.reduce((a, m) => a + m.size, 0)
      if (len === 0) {
        if (!item.optional) throw new RangeError(`${fpduDisplayName(type)}: PGI ${item.code} is empty`)
        continue
      }
      if (len > 0xffff) throw new RangeError(`PGI ${item.code} too long`)
      const head = new Uint8Array(unitHeaderSize(len))
      writeUnitHeader(head, 0, item.code, len)
      out.push({ code: item.code, bytes: [head, ...members.flatMap((m) => m.bytes)], size: head.length + len })
    } else {
      if (isParams(v)) throw new TypeError(`PI ${item.code} is not a group`)
      const value = encodeValue(item.code, v)
      if (value === undefined) {
        if (!item.optional) throw new RangeError(`${fpduDisplayName(type)}: mandatory PI ${item.code} is empty`)
        continue
      }
      const head = new Uint8Array(unitHeaderSize(value.length))
      writeUnitHeader(head, 0, item.code, value.length)
      out.push({ code: item.code, bytes: [head, value], size: head.length + value.length })
    }
  }
  return out
}

/** Reads one `code LI` header at `off`; returns the value bounds. Throws on truncation or LI = 0. */
function readUnit (buf: Uint8Array, off: number, end: number): { code: number, start: number, end: number } {
  if (off + 2 > end) throw new ProtocolError('truncated parameter unit', DIAG.PROTOCOL_ERROR)
  const code = buf[off]!
  let len = buf[off + 1]!
  let start = off + 2
  if (len === 0xff) {
    if (off + 4 > end) throw new ProtocolError(`parameter ${code}: truncated 3-byte length`, DIAG.PROTOCOL_ERROR)
    len = (buf[off + 2]! << 8) | buf[off + 3]!
    start = off + 4
  }
  if (len === 0) throw new ProtocolError(`parameter ${code}: length 0 is illegal`, DIAG.BAD_PARAMETER)
  if (start + len > end) throw new ProtocolError(`parameter ${code}: length ${len} runs past the FPDU`, DIAG.PROTOCOL_ERROR)
  return { code, start, end: start + len }
}

function decodeItems (type: FpduType, items: readonly TemplateItem[], buf: Uint8Array, off: number, end: number, where: string): Params {
  const byCode = new Map(items.map((i) => [i.code, i]))
  const params: Params = {}
  const seen = new Set<number>()
  while (off < end) {
    const u = readUnit(buf, off, end)
    off = u.end
    if (seen.has(u.code)) throw new ProtocolError(`${fpduDisplayName(type)}: parameter ${u.code} repeated${where}`, DIAG.BAD_PARAMETER)
    seen.add(u.code)
    const item = byCode.get(u.code)
    if (item === undefined) {
      if (TOLERATED_UNUSED_PIS.has(u.code)) continue
      const what = PGI_CODES.has(u.code) ? 'PGI' : 'PI'
      throw new ProtocolError(`${fpduDisplayName(type)}: ${what} ${u.code} not allowed${where}`, DIAG.BAD_PARAMETER)
    }
    if (item.members !== undefined) {
      params[u.code] = decodeItems(type, item.members, buf, u.start, u.end, ` in PGI ${u.code}`)
    } else {
      const v = decodeValue(u.code, buf.subarray(u.start, u.end))
      if (v !== undefined) params[u.code] = v
    }
  }
  const tolerated = where === '' ? TOLERATED_MISSING[type] : undefined
  for (const item of items) {
    if (!item.optional && params[item.code] === undefined && tolerated?.has(item.code) !== true) {
      throw new ProtocolError(`${fpduDisplayName(type)}: mandatory ${item.members !== undefined ? 'PGI' : 'PI'} ${item.code} missing${where}`, DIAG.BAD_PARAMETER)
    }
  }
  return params
}

// ---------------------------------------------------------------------------------------------------------
// FPDUs

export function writeHeader (out: Uint8Array, off: number, length: number, type: FpduType, idDst: number, idSrc: number): void {
  const [phase, code] = FPDU_TYPES[type]
  out[off] = length >> 8
  out[off + 1] = length & 0xff
  out[off + 2] = phase
  out[off + 3] = code
  out[off + 4] = idDst
  out[off + 5] = idSrc
}

function checkId (n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 255) throw new RangeError(`${what} ${n} is not a byte`)
}

/** One FPDU, header included, no entity prefix. Throws RangeError/TypeError on a value the template refuses. */
export function encodeFpdu (fpdu: Fpdu): Uint8Array {
  checkId(fpdu.idDst, 'ID.DST')
  checkId(fpdu.idSrc, 'ID.SRC')
  if (isDataFpdu(fpdu.type)) {
    const data = fpdu.data ?? new Uint8Array(0)
    if (data.length === 0) throw new RangeError(`${fpdu.type}: an empty DTF is forbidden`)
    const len = HEADER_SIZE + data.length
    if (len > MAX_FPDU_SIZE) throw new RangeError(`${fpdu.type}: ${len} bytes exceeds the FPDU maximum`)
    const out = new Uint8Array(len)
    writeHeader(out, 0, len, fpdu.type, fpdu.idDst, fpdu.idSrc)
    out.set(data, HEADER_SIZE)
    return out
  }
  if (fpdu.data !== undefined) throw new RangeError(`${fpdu.type} carries no data`)
  const units = encodeItems(fpdu.type, TEMPLATES[fpdu.type], fpdu.params, '')
  const len = HEADER_SIZE + units.reduce((a, u) => a + u.size, 0)
  if (len > MAX_FPDU_SIZE) throw new RangeError(`${fpdu.type}: ${len} bytes exceeds the FPDU maximum`)
  const out = new Uint8Array(len)
  writeHeader(out, 0, len, fpdu.type, fpdu.idDst, fpdu.idSrc)
  let off = HEADER_SIZE
  for (const u of units) {
    for (const b of u.bytes) {
      out.set(b, off)
      off += b.length
    }
  }
  return out
}

/** Peeks at the type of an FPDU without decoding its parameters (undefined if unknown or too short). */
export function peekFpduType (bytes: Uint8Array): FpduType | undefined {
  if (bytes.length < HEADER_SIZE) return undefined
  return fpduTypeOf(bytes[2]!, bytes[3]!)
}

/**
 * Decodes one FPDU (exactly `bytes`, whose first two bytes must be its length). DTF payloads are views into
 * `bytes`, not copies.
 */
export function decodeFpdu (bytes: Uint8Array): Fpdu {
  if (bytes.length < HEADER_SIZE) throw new ProtocolError(`FPDU of ${bytes.length} bytes is shorter than its header`)
  const len = (bytes[0]! << 8) | bytes[1]!
  if (len !== bytes.length) throw new ProtocolError(`FPDU length field ${len} but ${bytes.length} bytes`)
  const type = fpduTypeOf(bytes[2]!, bytes[3]!)
  if (type === undefined) {
    throw new ProtocolError(`unknown FPDU phase ${bytes[2]!.toString(16).padStart(2, '0')} type ${bytes[3]!.toString(16).padStart(2, '0')}`)
  }
  const idDst = bytes[4]!
  const idSrc = bytes[5]!
  if (isDataFpdu(type)) {
    if (len === HEADER_SIZE) throw new ProtocolError(`empty ${type}`)
    return { type, idDst, idSrc, params: {}, data: bytes.subarray(HEADER_SIZE) }
  }
  // ABORT may carry a bare 3-byte diagnostic instead of PI units (ISO S-ABORT heritage, observed from C:X).
  if (type === 'ABORT' && len === HEADER_SIZE + 3) {
    // `02 01 xx` is PI 2 with a 1-byte value; any other 3-byte body is the bare form.
    const isPiForm = bytes[HEADER_SIZE] === 0x02 && bytes[HEADER_SIZE + 1] === 0x01
    const d = decodeDiagnostic(bytes.subarray(HEADER_SIZE))
    if (d !== undefined && !isPiForm) return { type, idDst, idSrc, params: { 2: d } }
  }
  const params = decodeItems(type, TEMPLATES[type], bytes, HEADER_SIZE, len, '')
  return { type, idDst, idSrc, params }
}

// ---------------------------------------------------------------------------------------------------------
// Entities

/** One entity on the wire: 2-byte prefix (not counting itself) followed by the concatenated FPDUs. */
export function encodeEntity (fpdus: readonly Uint8Array[]): Uint8Array {
  const len = fpdus.reduce((a, f) => a + f.length, 0)
  if (len < HEADER_SIZE) throw new RangeError('an entity holds at least one FPDU')
  if (len > MAX_ENTITY_SIZE) throw new RangeError(`entity of ${len} bytes exceeds ${MAX_ENTITY_SIZE}`)
  const out = new Uint8Array(2 + len)
  out[0] = len >> 8
  out[1] = len & 0xff
  let off = 2
  for (const f of fpdus) {
    out.set(f, off)
    off += f.length
  }
  return out
}

/** Splits an entity body (prefix removed) into its FPDUs: each needs 6 ≤ L ≤ remaining; no leftover. */
export function splitEntity (entity: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = []
  let off = 0
  while (off < entity.length) {
    const rest = entity.length - off
    if (rest < HEADER_SIZE) throw new ProtocolError(`${rest} byte(s) left over in an entity`)
    const len = (entity[off]! << 8) | entity[off + 1]!
    if (len < HEADER_SIZE || len > rest) throw new ProtocolError(`FPDU length ${len} with ${rest} byte(s) left in the entity`)
    out.push(entity.subarray(off, off + len))
    off += len
  }
  if (out.length === 0) throw new ProtocolError('empty entity')
  return out
}

/**
 * Checks the concatenation rule (docs/pesit.md §2.1): several FPDUs in one entity only if they are all DTF*, SYN,
 * DTF.END.
 */
export function checkConcatenation (fpdus: readonly Uint8Array[]): void {
  if (fpdus.length < 2) return
  for (const f of fpdus) {
    const t = peekFpduType(f)
    if (t === undefined) continue // decodeFpdu reports it
    if (!isConcatenable(t)) {
      throw new ProtocolError(`${fpduDisplayName(t)} may not share an entity`)
    }
  }
}

export type Framing = 'prefixed' | 'raw'

export type StreamUnit =
  | { kind: 'entity', body: Uint8Array }
  | { kind: 'preconnection', message: Uint8Array }

/** The reader's buffer starts at this size and grows, by steps of READER_GROWTH, to what the connection needs. */
const READER_INITIAL_BYTES = 96 * 1024
const READER_GROWTH = 64 * 1024

/**
 * Incremental reader for a TCP stream: `push()` chunks as they arrive, then `next()` until undefined. Never
 * assumes one chunk = one entity. `prefixed` framing is the 2-byte entity prefix; `raw` (TLS without
 * TCPIP_HEADER) delimits by each FPDU's own length, one FPDU per unit. A raw 24-byte pre-connection message
 * (starting `D7 C5`, docs/pesit.md §7.1) is recognised only at the very start of the stream.
 *
 * The bytes pushed are copied into one buffer of the reader's own, reused for the whole connection: an entity
 * body is a view into it, valid until the next call of `next()` or `takeRaw()` (copy what must outlive that).
 * Nothing is allocated per chunk or per entity, which matters at hundreds of MiB/s: fresh memory costs page
 * faults, and an entity split across two chunks would otherwise need one of its own.
 *
 * Memory is bounded by the caller: it stops pushing (pauses the socket) while `buffered` is high; an entity
 * larger than `maxEntitySize` is refused from its prefix alone, before it is buffered.
 */
export class EntityReader {
  private buf: Buffer = Buffer.allocUnsafe(READER_INITIAL_BYTES)
  /** the first unread byte */
  private rd = 0
  /** the end of the bytes pushed */
  private wr = 0
  /** a body returned by next() may still be in use: the bytes before `rd` must stay where they are */
  private lent = false
  private atStart = true
  private failed: ProtocolError | undefined

  constructor (public maxEntitySize: number = MAX_ENTITY_SIZE, readonly framing: Framing = 'prefixed') {
    if (!Number.isInteger(maxEntitySize) || maxEntitySize < HEADER_SIZE || maxEntitySize > MAX_ENTITY_SIZE) {
      throw new RangeError(`maxEntitySize ${maxEntitySize} outside ${HEADER_SIZE}..${MAX_ENTITY_SIZE}`)
    }
  }

  get buffered (): number { return this.wr - this.rd }

  /** Copies `chunk` in: the caller may reuse it as soon as this returns. */
  push (chunk: Uint8Array): void {
    if (chunk.length === 0) return
    if (this.wr + chunk.length > this.buf.length) this.makeRoom(chunk.length)
    this.buf.set(chunk, this.wr)
    this.wr += chunk.length
  }

  /** Room for `n` more bytes at the end: the unread bytes moved to the front, or into a larger buffer. */
  private makeRoom (n: number): void {
    const unread = this.wr - this.rd
    if (!this.lent && unread + n <= this.buf.length) {
      this.buf.copyWithin(0, this.rd, this.wr)
    } else {
      // Lent bytes stay where they are (the old buffer lives on with the views into it) or it is too small.
      const next = Buffer.allocUnsafe(Math.max(this.buf.length, Math.ceil((unread + n) / READER_GROWTH) * READER_GROWTH))
      next.set(this.buf.subarray(this.rd, this.wr), 0)
      this.buf = next
      this.lent = false
    }
    this.rd = 0
    this.wr = unread
  }

  /**
   * The previous body is no longer in use: its bytes may be overwritten. The unread bytes move to the front
   * once at least as many were read since, so the moving costs at most one copy of what passes through.
   */
  private release (): void {
    this.lent = false
    if (this.rd > 0 && this.rd >= this.wr - this.rd) {
      this.buf.copyWithin(0, this.rd, this.wr)
      this.wr -= this.rd
      this.rd = 0
    }
  }

  private peekU16 (): number {
    return (this.buf[this.rd]! << 8) | this.buf[this.rd + 1]!
  }

  /** A view of the next `n` bytes (lent until the next release). */
  private take (n: number): Uint8Array {
    const out = this.buf.subarray(this.rd, this.rd + n)
    this.rd += n
    this.lent = true
    return out
  }

  /** `n` raw bytes outside any framing (the 4-byte pre-connection answer), undefined until they are all here. */
  takeRaw (n: number): Uint8Array | undefined {
    this.release()
    if (this.buffered < n) return undefined
    this.atStart = false
    return this.take(n).slice()
  }

  /** The next complete unit, undefined if more bytes are needed. Throws ProtocolError (and stays failed). */
  next (): StreamUnit | undefined {
    if (this.failed !== undefined) throw this.failed
    this.release()
    if (this.buffered < 2) return undefined
    const v = this.peekU16()
    // A TLS ClientHello (record type 22, version 3.x) sent to a plain port: say so at once instead of waiting for a
    // 5 KB "entity" that never completes.
    if (this.atStart && v >> 8 === 0x16 && (v & 0xff) === 0x03) return this.fail('a TLS handshake on a plain PeSIT port (use the server\'s TLS port)')
    if (this.atStart && v === 0xd7c5) {
      if (this.buffered < PRECONNECTION_SIZE) return undefined
      this.atStart = false
      return { kind: 'preconnection', message: this.take(PRECONNECTION_SIZE).slice() }
    }
    if (this.framing === 'raw') {
      if (v < HEADER_SIZE || v > this.maxEntitySize) return this.fail(`FPDU length ${v} outside ${HEADER_SIZE}..${this.maxEntitySize}`)
      if (this.buffered < v) return undefined
      this.atStart = false
      return { kind: 'entity', body: this.take(v) }
    }
    if (v < HEADER_SIZE || v > this.maxEntitySize) return this.fail(`entity length ${v} outside ${HEADER_SIZE}..${this.maxEntitySize}`)
    if (this.buffered < 2 + v) return undefined
    this.atStart = false
    this.rd += 2
    return { kind: 'entity', body: this.take(v) }
  }

  private fail (message: string): never {
    this.failed = new ProtocolError(message)
    throw this.failed
  }
}

// ---------------------------------------------------------------------------------------------------------
// Articles (docs/pesit.md §8.4)

/**
 * Splits a multi-article DTF payload (ID.SRC = n ≥ 1) into its articles, prefixes stripped; exactly n articles
 * must fill the payload. Returns views into `payload`.
 */
export function splitArticles (payload: Uint8Array, n: number): Uint8Array[] {
  const out: Uint8Array[] = []
  let off = 0
  for (let i = 0; i < n; i++) {
    if (off + 2 > payload.length) throw new ProtocolError(`multi-article DTF: article ${i + 1} of ${n} missing`)
    const len = (payload[off]! << 8) | payload[off + 1]!
    off += 2
    if (off + len > payload.length) throw new ProtocolError(`multi-article DTF: article ${i + 1} of ${len} bytes runs past the FPDU`)
    out.push(payload.subarray(off, off + len))
    off += len
  }
  if (off !== payload.length) throw new ProtocolError(`multi-article DTF: ${payload.length - off} byte(s) after ${n} articles`)
  return out
}

/** Builds a multi-article payload (`u16 length + bytes` per article). */
export function packArticles (articles: readonly Uint8Array[]): Uint8Array {
  if (articles.length < 1 || articles.length > MAX_ARTICLES_PER_DTF) throw new RangeError(`1..${MAX_ARTICLES_PER_DTF} articles per DTF`)
  const size = articles.reduce((a, x) => a + 2 + x.length, 0)
  const out = new Uint8Array(size)
  let off = 0
  for (const a of articles) {
    if (a.length > 0xffff) throw new RangeError('article longer than 65535 bytes')
    out[off] = a.length >> 8
    out[off + 1] = a.length & 0xff
    out.set(a, off + 2)
    off += 2 + a.length
  }
  return out
}

// ---------------------------------------------------------------------------------------------------------
// Pre-connection (docs/pesit.md §7.1): 24 EBCDIC bytes "PESIT   " + id(8) + password(8); answer ACK0 / NAK0.

export const PRECONNECTION_SIZE = 24
export const PRECONNECTION_ACK = Uint8Array.of(0xc1, 0xc3, 0xd2, 0xf0)
export const PRECONNECTION_NAK = Uint8Array.of(0xd5, 0xc1, 0xd2, 0xf0)

// EBCDIC code page 037 for the characters an identifier or a password can reasonably hold.
const EBCDIC_PAIRS: Array<[string, number]> = [[' ', 0x40], ['.', 0x4b], ['-', 0x60], ['_', 0x6d], ['/', 0x61], ['*', 0x5c], ['&', 0x50], ['$', 0x5b], ['#', 0x7b], ['@', 0x7c], ['!', 0x5a], ['+', 0x4e], ['=', 0x7e], [':', 0x7a], ['%', 0x6c], ['?', 0x6f]]
for (let i = 0; i < 9; i++) {
  EBCDIC_PAIRS.push([String.fromCharCode(65 + i), 0xc1 + i], [String.fromCharCode(74 + i), 0xd1 + i], [String.fromCharCode(97 + i), 0x81 + i], [String.fromCharCode(106 + i), 0x91 + i])
}
for (let i = 0; i < 8; i++) EBCDIC_PAIRS.push([String.fromCharCode(83 + i), 0xe2 + i], [String.fromCharCode(115 + i), 0xa2 + i])
for (let i = 0; i < 10; i++) EBCDIC_PAIRS.push([String.fromCharCode(48 + i), 0xf0 + i])
const TO_EBCDIC = new Map(EBCDIC_PAIRS)
const FROM_EBCDIC = new Map(EBCDIC_PAIRS.map(([c, b]) => [b, c]))

export function toEbcdic (s: string): Uint8Array {
  return Uint8Array.from([...s].map((c) => {
    const b = TO_EBCDIC.get(c)
    if (b === undefined) throw new RangeError(`character ${JSON.stringify(c)} has no EBCDIC mapping here`)
    return b
  }))
}

export function fromEbcdic (bytes: Uint8Array): string {
  let s = ''
  for (const b of bytes) s += FROM_EBCDIC.get(b) ?? '?'
  return s
}

export interface Preconnection { identifier: string, password: string }

export function encodePreconnection (p: Preconnection): Uint8Array {
  if (p.identifier.length < 1 || p.identifier.length > 8) throw new RangeError('pre-connection identifier: 1..8 characters')
  if (p.password.length > 8) throw new RangeError('pre-connection password: at most 8 characters')
  return toEbcdic('PESIT   ' + p.identifier.padEnd(8, ' ') + p.password.padEnd(8, ' '))
}

const PRECONNECTION_MAGIC = Uint8Array.of(0xd7, 0xc5, 0xe2, 0xc9, 0xe3, 0x40, 0x40, 0x40)

export function isPreconnection (bytes: Uint8Array): boolean {
  return bytes.length === PRECONNECTION_SIZE && PRECONNECTION_MAGIC.every((b, i) => bytes[i] === b)
}

export function decodePreconnection (bytes: Uint8Array): Preconnection {
  if (!isPreconnection(bytes)) throw new ProtocolError('malformed pre-connection message')
  return {
    identifier: fromEbcdic(bytes.subarray(8, 16)).replace(/ +$/, ''),
    password: fromEbcdic(bytes.subarray(16, 24)).replace(/ +$/, '')
  }
}

// ---------------------------------------------------------------------------------------------------------
// Typed access to decoded parameters

export function getNumber (p: Params | undefined, code: number): number | undefined {
  const v = p?.[code]
  return typeof v === 'number' ? v : undefined
}

export function getString (p: Params | undefined, code: number): string | undefined {
  const v = p?.[code]
  return typeof v === 'string' ? v : undefined
}

export function getBytes (p: Params | undefined, code: number): Uint8Array | undefined {
  const v = p?.[code]
  return v instanceof Uint8Array ? v : undefined
}

export function getGroup (p: Params | undefined, code: number): Params | undefined {
  const v = p?.[code]
  return isParams(v) ? v : undefined
}

export function getDiagnostic (p: Params | undefined): Diagnostic | undefined {
  const v = p?.[2]
  return typeof v === 'object' && v !== null && 'reason' in v ? v : undefined
}

/** PI 7: interval in KB (0 = none, 0xFFFF = undefined) and acknowledgement window. */
export interface SyncOption { intervalKb: number, window: number }

export function encodeSyncOption (s: SyncOption): Uint8Array {
  if (!Number.isInteger(s.intervalKb) || s.intervalKb < 0 || s.intervalKb > 0xffff) throw new RangeError('sync interval 0..65535 KB')
  if (!Number.isInteger(s.window) || s.window < 0 || s.window > 255) throw new RangeError('sync window 0..255')
  return Uint8Array.of(s.intervalKb >> 8, s.intervalKb & 0xff, s.window)
}

export function decodeSyncOption (b: Uint8Array | undefined): SyncOption | undefined {
  if (b === undefined || b.length !== 3) return undefined
  return { intervalKb: (b[0]! << 8) | b[1]!, window: b[2]! }
}

/** PI 5: bytes 1-8 password, 9-16 new password; each blank-trimmed. */
export function decodeAccessControl (b: Uint8Array | undefined): { password: string, newPassword?: string } | undefined {
  if (b === undefined) return undefined
  const password = latin1.decode(b.subarray(0, 8)).replace(/ +$/, '')
  if (b.length <= 8) return { password }
  const newPassword = latin1.decode(b.subarray(8, 16)).replace(/ +$/, '')
  return newPassword === '' ? { password } : { password, newPassword }
}

export function encodeAccessControl (password: string, newPassword?: string): Uint8Array {
  if (password.length > 8 || (newPassword?.length ?? 0) > 8) throw new RangeError('PeSIT passwords are at most 8 characters')
  const s = newPassword === undefined ? password.padEnd(8, ' ') : password.padEnd(8, ' ') + newPassword.padEnd(8, ' ')
  return encodeString(s, 5)
}

/** `YYMMDDhhmmss` (UTC) for PI 51. */
export function pesitDate (d: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0')
  return two(d.getUTCFullYear() % 100) + two(d.getUTCMonth() + 1) + two(d.getUTCDate()) +
    two(d.getUTCHours()) + two(d.getUTCMinutes()) + two(d.getUTCSeconds())
}
