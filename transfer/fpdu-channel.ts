/**
 * One PeSIT connection over a byte stream (a TCP or TLS socket): reads entities and FPDUs on demand, writes
 * entities with back-pressure. Shared by server sessions and the requester.
 *
 * Memory is bounded: bytes are decoded only when the session asks for the next FPDU, and the socket is paused
 * while more than `highWaterBytes` sit undecoded, so a fast sender cannot grow the buffer without limit.
 *
 * The `data` of a DTF* FPDU is a view into the channel's read buffer: valid until the next `poll()` or `next()`,
 * so whoever keeps it copies it (the receiving sides copy it into their write buffer at once). Everything else an
 * FPDU carries is the FPDU's own.
 */
import type { Duplex } from 'node:stream'
import { TLSSocket } from 'node:tls'
import {
  EntityReader, checkConcatenation, decodeFpdu, encodeEntity, encodeFpdu, splitEntity, MAX_ENTITY_SIZE,
  type Framing, type Fpdu
} from './codec.js'
import { ConnectionLostError, PesitTimeoutError, ProtocolError } from './errors.js'

/**
 * Reads into one buffer reused for the whole connection instead of a new one per read (Node's `onread`), for the
 * sockets a requester opens (`net.connect`/`tls.connect` accept it; a server's accepted sockets do not): pass
 * `options` to the connect call, then the reads to the channel, which copies each one before the next.
 */
export class StaticReads {
  private sink: ((chunk: Buffer) => boolean) | undefined
  private early: Buffer[] = []
  readonly options: { buffer: Buffer, callback: (n: number, buf: Buffer) => boolean }

  constructor (bytes = 256 * 1024) {
    this.options = {
      buffer: Buffer.allocUnsafe(bytes),
      callback: (n, buf) => {
        const chunk = buf.subarray(0, n)
        if (this.sink !== undefined) return this.sink(chunk)
        this.early.push(Buffer.from(chunk)) // before the channel exists: kept as a copy
        return true
      }
    }
  }

  /** `sink` copies the chunk and says whether to keep reading. */
  attach (sink: (chunk: Buffer) => boolean): void {
    this.sink = sink
    for (const c of this.early.splice(0)) sink(c)
  }
}

export type ChannelEvent =
  | { kind: 'fpdu', fpdu: Fpdu }
  /** the 24-byte pre-connection message; `framed` when it came inside an entity */
  | { kind: 'preconnection', message: Uint8Array, framed: boolean }
  /** the peer closed the stream */
  | { kind: 'end' }

export interface FpduChannelInit {
  maxEntitySize?: number
  framing?: Framing
  highWaterBytes?: number
  /**
   * How long a write may wait for the peer to read (socket drain) before the connection is dropped: a peer that
   * sends but never reads must not hold a session forever. Default 30 s.
   */
  writeTimeoutMs?: number
  /** the socket was connected with these `onread` options: its bytes arrive through them, not 'data' */
  reads?: StaticReads
}

const PRECONNECTION_MAGIC = [0xd7, 0xc5, 0xe2, 0xc9, 0xe3]

export class FpduChannel {
  private readonly reader: EntityReader
  private pending: Uint8Array[] = []
  private waiter: (() => void) | undefined
  private ended = false
  private error: Error | undefined
  private readonly highWater: number
  private readonly writeTimeoutMs: number
  private paused = false
  private closed = false
  private discarding = false
  /** bytes received and sent, for metrics */
  bytesIn = 0
  bytesOut = 0

  constructor (private readonly socket: Duplex, init: FpduChannelInit = {}) {
    this.reader = new EntityReader(init.maxEntitySize ?? MAX_ENTITY_SIZE, init.framing ?? 'prefixed')
    this.highWater = init.highWaterBytes ?? 128 * 1024
    this.writeTimeoutMs = init.writeTimeoutMs ?? 30_000
    // With `reads` no 'data' comes, but the listener keeps the stream flowing, so that 'end' is emitted.
    socket.on('data', (chunk: Buffer) => { this.received(chunk) })
    init.reads?.attach((chunk) => this.received(chunk))
    socket.on('end', () => { this.ended = true; this.wake() })
    socket.on('close', () => { this.ended = true; this.closed = true; this.wake() })
    socket.on('error', (err) => { this.error ??= err; this.wake() })
  }

  /** Takes a chunk read from the socket (copied: the caller may reuse it); false once the socket is paused. */
  private received (chunk: Buffer): boolean {
    this.bytesIn += chunk.length
    if (this.discarding) return true
    this.reader.push(chunk)
    if (this.reader.buffered > this.highWater && !this.paused) {
      this.paused = true
      this.socket.pause()
    }
    this.wake()
    return !this.paused
  }

  /**
   * The PI 25 agreed for the file (undefined: none). Entities above it but within the channel's bound are still
   * read (tolerated) and reported to `onOversizeEntity`; only the bound itself is enforced.
   */
  negotiatedEntitySize: number | undefined
  onOversizeEntity: ((size: number) => void) | undefined

  get isClosed (): boolean { return this.closed || this.socket.destroyed }

  private wake (): void {
    const w = this.waiter
    this.waiter = undefined
    w?.()
  }

  /** The next event without waiting, or undefined if no complete FPDU is buffered. Throws on malformed input. */
  poll (): ChannelEvent | undefined {
    for (;;) {
      const raw = this.pending.shift()
      if (raw !== undefined) return { kind: 'fpdu', fpdu: decodeFpdu(raw) }
      const unit = this.reader.next()
      if (this.paused && this.reader.buffered <= this.highWater / 2) {
        this.paused = false
        this.socket.resume()
      }
      if (unit === undefined) {
        if (this.ended || this.error !== undefined) return { kind: 'end' }
        return undefined
      }
      if (unit.kind === 'preconnection') return { kind: 'preconnection', message: unit.message, framed: false }
      const body = unit.body
      if (this.negotiatedEntitySize !== undefined && body.length > this.negotiatedEntitySize) this.onOversizeEntity?.(body.length)
      if (body.length === 24 && PRECONNECTION_MAGIC.every((b, i) => body[i] === b)) {
        return { kind: 'preconnection', message: body, framed: true }
      }
      const fpdus = splitEntity(body)
      checkConcatenation(fpdus)
      this.pending = fpdus
    }
  }

  /**
   * Waits for the next event. Rejects with ProtocolError on malformed input, PesitTimeoutError when nothing
   * complete arrives within `timeoutMs`.
   */
  async next (timeoutMs?: number): Promise<ChannelEvent> {
    const now = this.poll()
    if (now !== undefined) return now
    return await new Promise<ChannelEvent>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const check = (): void => {
        try {
          const ev = this.poll()
          if (ev === undefined) {
            this.waiter = check
            return
          }
          if (timer !== undefined) clearTimeout(timer)
          resolve(ev)
        } catch (err) {
          if (timer !== undefined) clearTimeout(timer)
          reject(err instanceof Error ? err : new Error(String(err)))
        }
      }
      if (timeoutMs !== undefined && timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          if (this.waiter === check) this.waiter = undefined
          reject(new PesitTimeoutError(`no FPDU within ${timeoutMs} ms`))
        }, timeoutMs)
      }
      this.waiter = check
    })
  }

  /** `n` raw bytes before any framing (the requester reading the pre-connection answer). */
  async nextRaw (n: number, timeoutMs: number): Promise<Uint8Array> {
    const deadline = Date.now() + timeoutMs
    for (let i = 0; i < 1000; i++) {
      const b = this.reader.takeRaw(n)
      if (b !== undefined) return b
      if (this.ended || this.error !== undefined) throw new ConnectionLostError('connection closed during the pre-connection')
      const left = deadline - Date.now()
      if (left <= 0) break
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => { this.waiter = undefined; resolve() }, left)
        this.waiter = () => { clearTimeout(t); resolve() }
      })
    }
    throw new PesitTimeoutError(`no pre-connection answer within ${timeoutMs} ms`)
  }

  /** Sends FPDUs, each in its own entity, except runs of concatenable ones the caller groups with sendEntity. */
  async send (...fpdus: Fpdu[]): Promise<void> {
    for (const f of fpdus) await this.sendEntity([encodeFpdu(f)])
  }

  /** One entity made of already-encoded FPDUs. */
  async sendEntity (fpdus: readonly Uint8Array[]): Promise<void> {
    await this.write(encodeEntity(fpdus))
  }

  /**
   * Bytes as they are (the pre-connection answer, or a pre-built entity stream). `released`, if given, is called
   * once the socket no longer holds `bytes` (handed to the kernel, or dropped with the connection): from then on
   * the caller may reuse the buffer.
   */
  async write (bytes: Uint8Array, released?: () => void): Promise<void> {
    if (this.isClosed || this.discarding) throw new ConnectionLostError('write after close')
    this.bytesOut += bytes.length
    if (released === undefined ? this.socket.write(bytes) : this.socket.write(bytes, released)) return
    await new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer)
        this.socket.off('drain', done)
        this.socket.off('close', closed)
      }
      const done = (): void => { cleanup(); resolve() }
      const closed = (): void => { cleanup(); reject(new ConnectionLostError('connection closed while writing')) }
      const timer = setTimeout(() => {
        cleanup()
        this.socket.destroy()
        reject(new ConnectionLostError(`the peer did not read for ${this.writeTimeoutMs} ms`))
      }, this.writeTimeoutMs)
      this.socket.on('drain', done)
      this.socket.on('close', closed)
    })
  }

  /** Half-closes, then destroys after `graceMs` if the peer has not closed (PeSIT: the requester disconnects). */
  async close (graceMs = 1000): Promise<void> {
    if (this.socket.destroyed) return
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => { this.socket.destroy(); resolve() }, graceMs)
      t.unref?.()
      this.socket.once('close', () => { clearTimeout(t); resolve() })
      this.discarding = true
      this.socket.end()
      // Keep reading (and discarding) so the peer's FIN is seen.
      if (this.paused) this.socket.resume()
    })
  }

  destroy (): void {
    this.socket.destroy()
    this.wake()
  }

  /** Whether the byte stream is a TLS connection (for explaining how it ended). */
  get overTls (): boolean {
    return this.socket instanceof TLSSocket
  }

  /** The socket error, if any: a ProtocolError is never stored here. */
  get socketError (): Error | undefined {
    return this.error instanceof ProtocolError ? undefined : this.error
  }
}
