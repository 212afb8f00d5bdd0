/**
 * The requesting end of one long-lived stream: requests go out as frames with an id, replies come back in any
 * order and are matched by id. One stream per connection instead of one per request spares the stream opening,
 * protocol negotiation and closing frames (each a small encrypted write) on the heartbeat path.
 *
 * When the stream closes or resets, every pending request fails with 'closed' and the channel is dead; the
 * transport opens a new one for the next request.
 */
import type { Stream } from '@libp2p/interface'
import { TransportError } from './errors.js'
import { FrameDecoder, decodeEnvelope, encodeFrame, type Envelope } from './envelope.js'

interface Pending {
  resolve: (env: Envelope) => void
  reject: (err: unknown) => void
}

export class RequestChannel {
  private readonly pending = new Map<number, Pending>()
  private readonly decoder: FrameDecoder
  private nextId = 1
  private deadReason: TransportError | undefined

  constructor (readonly stream: Stream, private readonly maxFrameBytes: number, private readonly onDead: (ch: RequestChannel) => void) {
    this.decoder = new FrameDecoder(maxFrameBytes)
    stream.addEventListener('message', (evt) => {
      if (this.deadReason !== undefined) return
      const data = evt.data instanceof Uint8Array ? evt.data : evt.data.subarray()
      let bodies: Buffer[]
      try {
        bodies = this.decoder.push(data)
      } catch (err) {
        this.fail(err instanceof TransportError ? err : new TransportError('invalid', 'undecodable reply stream', { cause: err }))
        return
      }
      for (const body of bodies) {
        let env: Envelope
        try {
          env = decodeEnvelope(body)
        } catch (err) {
          this.fail(err instanceof TransportError ? err : new TransportError('invalid', 'malformed reply', { cause: err }))
          return
        }
        const p = env.i !== undefined ? this.pending.get(env.i) : undefined
        if (p === undefined) continue // the reply of a request that timed out, or gibberish without an id
        this.pending.delete(env.i!)
        p.resolve(env)
      }
    })
    stream.addEventListener('close', (evt) => {
      this.fail(new TransportError('closed', 'the stream closed before the reply', { cause: evt.error }))
    })
    // The responder never closes its side first unless it is going away.
    stream.addEventListener('remoteCloseWrite', () => {
      this.fail(new TransportError('closed', 'the peer closed the stream before the reply'))
    })
  }

  get alive (): boolean { return this.deadReason === undefined && this.stream.status === 'open' && this.stream.writeStatus === 'writable' }
  get inFlight (): number { return this.pending.size }

  /** Sends `env` (its id is set here) and resolves with the reply envelope. */
  async call (env: Envelope, signal: AbortSignal): Promise<Envelope> {
    if (this.deadReason !== undefined) throw this.deadReason
    const id = this.nextId++
    const frame = encodeFrame({ ...env, i: id }, this.maxFrameBytes)
    let onAbort: (() => void) | undefined
    const reply = new Promise<Envelope>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      onAbort = () => {
        this.pending.delete(id)
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'))
      }
      if (signal.aborted) onAbort()
      else signal.addEventListener('abort', onAbort, { once: true })
    })
    reply.catch(() => {}) // observed below; this only stops an early rejection from counting as unhandled
    try {
      if (this.stream.writableNeedsDrain) await this.stream.onDrain({ signal })
      this.stream.send(frame)
      return await reply
    } catch (err) {
      this.pending.delete(id)
      throw err
    } finally {
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
    }
  }

  /** Fails every pending request and closes the stream; the transport forgets the channel. */
  fail (reason: TransportError): void {
    if (this.deadReason !== undefined) return
    this.deadReason = reason
    for (const p of this.pending.values()) p.reject(reason)
    this.pending.clear()
    this.onDead(this)
    if (this.stream.status === 'open') this.stream.abort(reason)
  }

  /** Graceful end (no request in flight is failed: they are failed by the closing stream if still pending). */
  async close (): Promise<void> {
    await this.stream.close().catch(() => {})
  }
}
