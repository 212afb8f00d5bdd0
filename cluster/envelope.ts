/**
 * The wire format of cluster requests: length-prefixed JSON frames on a long-lived stream per connection, a
 * reply carrying the id of its request.
 *
 *   frame    = uint32 big-endian byte length, then that many bytes of UTF-8 JSON (bounded by `maxFrameBytes`)
 *   envelope = { v: version, c: cluster name, k: 'req' | 'rep' | 'err', i?: request id, f?: sender's advertised
 *                "ip:port", p?: payload, e?: { code, message, versions? } }
 *
 * Versioning: the outer fields above are frozen for every version, so any member can read any frame's version and
 * cluster name and answer with an error it understands. `v` names the schema of everything else (new optional
 * fields, payload shapes). A member speaks versions `[minVersion, version]`: it answers a request in the request's
 * version, and when a peer refuses our version it tells us the range it speaks in `e.versions`, so the requester
 * retries once in the highest version both know. Version N keeps reading N-1: that is what a rolling upgrade needs.
 */
import { TransportError } from './errors.js'

/** The version this build speaks by default. */
export const PROTOCOL_VERSION = 1
/** The oldest version this build still understands (the previous one once there is a v2). */
export const MIN_PROTOCOL_VERSION = 1
/** Upper bound of one frame; cluster messages are small (views of at most a few dozen members). */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
const HEADER_BYTES = 4

export type EnvelopeKind = 'req' | 'rep' | 'err'

export interface EnvelopeError {
  code: 'denied' | 'invalid'
  message: string
  /** On a version refusal: the versions the refusing member speaks. */
  versions?: [number, number]
}

export interface Envelope {
  v: number
  c: string
  k: EnvelopeKind
  /** Request id, echoed by the reply (unique per stream). */
  i?: number
  f?: string
  p?: unknown
  e?: EnvelopeError
}

export function encodeFrame (env: Envelope, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): Uint8Array {
  let json: string
  try {
    json = JSON.stringify(env)
  } catch (err) {
    throw new TransportError('invalid', 'payload is not JSON-serialisable', { cause: err })
  }
  const body = Buffer.from(json, 'utf8')
  if (body.byteLength > maxFrameBytes) {
    throw new TransportError('invalid', `frame of ${body.byteLength} bytes exceeds the limit of ${maxFrameBytes}`)
  }
  const out = Buffer.allocUnsafe(HEADER_BYTES + body.byteLength)
  out.writeUInt32BE(body.byteLength, 0)
  body.copy(out, HEADER_BYTES)
  return out
}

/**
 * Splits a byte stream into frame bodies. Rejects a frame announced larger than the limit as soon as its header
 * arrives, before buffering it.
 */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0)
  constructor (private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** Adds bytes; returns the frame bodies completed by them (often none or one). */
  push (chunk: Uint8Array): Buffer[] {
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    this.buf = this.buf.length === 0 ? bytes : Buffer.concat([this.buf, bytes])
    const frames: Buffer[] = []
    while (this.buf.length >= HEADER_BYTES) {
      const size = this.buf.readUInt32BE(0)
      if (size > this.maxFrameBytes) {
        throw new TransportError('invalid', `frame of ${size} bytes exceeds the limit of ${this.maxFrameBytes}`)
      }
      if (this.buf.length < HEADER_BYTES + size) break
      frames.push(this.buf.subarray(HEADER_BYTES, HEADER_BYTES + size))
      this.buf = this.buf.subarray(HEADER_BYTES + size)
    }
    return frames
  }

  /** Bytes of an incomplete frame waiting for the rest. */
  get buffered (): number { return this.buf.length }
}

/** Parses a frame body into an envelope, checking only the frozen outer fields. */
export function decodeEnvelope (body: Uint8Array): Envelope {
  let obj: unknown
  try {
    obj = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'))
  } catch (err) {
    throw new TransportError('invalid', 'frame is not valid JSON', { cause: err })
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new TransportError('invalid', 'frame is not a JSON object')
  const o = obj as Record<string, unknown>
  if (typeof o.v !== 'number' || !Number.isInteger(o.v) || o.v < 1) throw new TransportError('invalid', 'frame has no valid version')
  if (typeof o.c !== 'string') throw new TransportError('invalid', 'frame has no cluster name')
  if (o.k !== 'req' && o.k !== 'rep' && o.k !== 'err') throw new TransportError('invalid', 'frame has an unknown kind')
  if (o.f !== undefined && typeof o.f !== 'string') throw new TransportError('invalid', 'frame has a malformed sender address')
  if (o.i !== undefined && (typeof o.i !== 'number' || !Number.isSafeInteger(o.i) || o.i < 0)) throw new TransportError('invalid', 'frame has a malformed request id')
  const env: Envelope = { v: o.v, c: o.c, k: o.k }
  if (o.i !== undefined) env.i = o.i
  if (o.f !== undefined) env.f = o.f
  if ('p' in o) env.p = o.p
  if (o.k === 'err') env.e = decodeError(o.e)
  return env
}

function decodeError (e: unknown): EnvelopeError {
  if (typeof e !== 'object' || e === null) return { code: 'invalid', message: 'malformed error frame' }
  const o = e as Record<string, unknown>
  const code = o.code === 'denied' ? 'denied' : 'invalid'
  const message = typeof o.message === 'string' ? o.message.slice(0, 500) : 'no reason given'
  const out: EnvelopeError = { code, message }
  const v = o.versions
  if (Array.isArray(v) && v.length === 2 && v.every((x) => Number.isInteger(x))) out.versions = [v[0] as number, v[1] as number]
  return out
}

export interface VersionRange { min: number, max: number }

/** The highest version both ranges share, or undefined. */
export function commonVersion (mine: VersionRange, theirs: VersionRange): number | undefined {
  const v = Math.min(mine.max, theirs.max)
  return v >= Math.max(mine.min, theirs.min) ? v : undefined
}
