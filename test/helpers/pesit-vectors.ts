/**
 * The recorded Connect:Express push (`test/fixtures/pesit/cx-push-1mb.raw`, described in its README) as test input:
 * the file format parser, and the reconstruction of what the recorder dropped (docs/pesit.md):
 *  - the CREATE's PGIs 9/30/40/50 were recorded empty (LI 0): they get a virtual file id, 1024-byte variable
 *    articles, 1024 KB reservation and a creation date;
 *  - every DTF/DTFDA/DTFFA was recorded without payload: C:X packed per 4 articles `DTF(N=3)`, `DTFDA`, `DTFFA`,
 *    the DTFDA filling its 4096-byte entity exactly, the DTFFA starting the next one. The data is a
 *    deterministic 1 MiB pattern, returned so the stored file can be compared.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { decodeFpdu, encodeFpdu, packArticles, peekFpduType, HEADER_SIZE, type Fpdu } from '../../transfer/codec.js'
import type { FpduType } from '../../transfer/fpdu-types.js'

export type VectorDirection = 'requester' | 'server'

export interface VectorFrame {
  dir: VectorDirection
  /** one FPDU, starting with its own length */
  fpdu: Uint8Array
  type: FpduType
}

const FIXTURES = fileURLToPath(new URL('../fixtures/pesit/', import.meta.url))

export function vectorPath (name: string): string {
  return FIXTURES + name
}

/** `dir(1) len(2 BE) FPDU(len)` records; every FPDU's own length must equal its record length. */
export function parseVectorFile (bytes: Uint8Array): VectorFrame[] {
  const frames: VectorFrame[] = []
  let off = 0
  while (off < bytes.length) {
    if (off + 3 > bytes.length) throw new Error(`vector: truncated record header at ${off}`)
    const dirByte = bytes[off]!
    if (dirByte !== 0 && dirByte !== 1) throw new Error(`vector: direction ${dirByte} at ${off}`)
    const len = (bytes[off + 1]! << 8) | bytes[off + 2]!
    off += 3
    if (len < HEADER_SIZE || off + len > bytes.length) throw new Error(`vector: record of ${len} bytes at ${off}`)
    const fpdu = bytes.subarray(off, off + len)
    off += len
    if (((fpdu[0]! << 8) | fpdu[1]!) !== len) throw new Error(`vector: FPDU length differs from record length at ${off - len}`)
    const type = peekFpduType(fpdu)
    if (type === undefined) throw new Error(`vector: unknown FPDU type at ${off - len}`)
    frames.push({ dir: dirByte === 0 ? 'requester' : 'server', fpdu, type })
  }
  return frames
}

export function loadVector (name: string): VectorFrame[] {
  return parseVectorFile(readFileSync(vectorPath(name)))
}

/** Deterministic pseudo-random bytes (xorshift32), so the expected file is reproducible without storing it. */
export function patternBytes (size: number, seed = 0x9e3779b9): Buffer {
  const out = Buffer.alloc(size)
  let x = seed >>> 0
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

export interface ReconstructOptions {
  /** virtual file id put in PGI 9 PI 12 */
  fileId: string
  articleSize?: number
  entitySize?: number
  creationDate?: string
}

export interface ReconstructedSession {
  frames: VectorFrame[]
  /** the file content the requester frames carry */
  content: Buffer
  articleCount: number
}

/**
 * Fills the gaps of the recorded push. Only requester frames change; server frames are kept byte for byte.
 * Throws if the recording does not have the shape described in docs/pesit.md §14.6 (so a different vector is not
 * silently mis-reconstructed).
 */
export function reconstructPush (frames: readonly VectorFrame[], opts: ReconstructOptions): ReconstructedSession {
  const articleSize = opts.articleSize ?? 1024
  const entitySize = opts.entitySize ?? 4096
  const dtfs = frames.filter((f) => f.dir === 'requester' && (f.type === 'DTF' || f.type === 'DTFDA' || f.type === 'DTFFA' || f.type === 'DTFMA'))
  const multi = dtfs.filter((f) => f.type === 'DTF')
  const articleCount = multi.reduce((a, f) => a + f.fpdu[5]!, 0) + dtfs.filter((f) => f.type === 'DTFDA').length
  const content = patternBytes(articleCount * articleSize)
  let nextArticle = 0
  const article = (): Buffer => content.subarray(nextArticle * articleSize, ++nextArticle * articleSize)

  const out: VectorFrame[] = []
  let used = 0 // bytes of the current entity already filled
  let pendingTail: Buffer | undefined
  for (const f of frames) {
    if (f.dir === 'server') {
      out.push(f)
      continue
    }
    let fpdu: Fpdu | undefined
    switch (f.type) {
      case 'CREATE': {
        // The recorded PGIs have LI = 0: read the simple PIs by hand, then rebuild a complete CREATE.
        const simple = readRecordedCreate(f.fpdu)
        fpdu = {
          type: 'CREATE', idDst: f.fpdu[4]!, idSrc: 0,
          params: {
            9: { 11: 0, 12: opts.fileId }, ...simple,
            30: { 31: 0x80, 32: articleSize },
            40: { 41: 0, 42: Math.ceil(content.length / 1024) },
            50: { 51: opts.creationDate ?? '260119012505' }
          }
        }
        break
      }
      case 'DTF': {
        const n = f.fpdu[5]!
        if (n < 1) throw new Error('vector: mono-article DTF not expected in this recording')
        const arts = Array.from({ length: n }, article)
        fpdu = { type: 'DTF', idDst: f.fpdu[4]!, idSrc: n, params: {}, data: packArticles(arts) }
        used += HEADER_SIZE + fpdu.data!.length
        break
      }
      case 'DTFDA': {
        const a = article()
        const room = entitySize - used - HEADER_SIZE
        if (room <= 0 || room >= a.length) throw new Error(`vector: DTFDA would carry ${room} bytes`)
        fpdu = { type: 'DTFDA', idDst: f.fpdu[4]!, idSrc: 0, params: {}, data: a.subarray(0, room) }
        pendingTail = a.subarray(room)
        used = 0
        break
      }
      case 'DTFFA': {
        if (pendingTail === undefined) throw new Error('vector: DTFFA without DTFDA')
        fpdu = { type: 'DTFFA', idDst: f.fpdu[4]!, idSrc: 0, params: {}, data: pendingTail }
        used += HEADER_SIZE + pendingTail.length
        pendingTail = undefined
        break
      }
      case 'DTFMA':
        throw new Error('vector: DTFMA not expected in this recording')
      case 'SYN':
      case 'DTF_END':
        used = 0 // a sync point ends the entity in this reconstruction
        break
      default:
        break
    }
    out.push(fpdu === undefined ? f : { dir: 'requester', type: f.type, fpdu: encodeFpdu(fpdu) })
  }
  if (nextArticle !== articleCount) throw new Error('vector: article count mismatch')
  return { frames: out, content, articleCount }
}

function readRecordedCreate (bytes: Uint8Array): Record<number, number> {
  const params: Record<number, number> = {}
  let off = HEADER_SIZE
  while (off < bytes.length) {
    const code = bytes[off]!
    const len = bytes[off + 1]!
    const value = bytes.subarray(off + 2, off + 2 + len)
    off += 2 + len
    if (code === 13 || code === 15 || code === 16 || code === 17 || code === 25) {
      let v = 0
      for (const b of value) v = v * 256 + b
      params[code] = v
    }
  }
  return params
}

/** Decodes every frame (after reconstruction all must be valid FPDUs). */
export function decodeFrames (frames: readonly VectorFrame[]): Fpdu[] {
  return frames.map((f) => decodeFpdu(f.fpdu))
}
