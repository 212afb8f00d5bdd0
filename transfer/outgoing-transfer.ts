/**
 * The data phase of a pull on the server (docs/pesit.md §17.3): after ACK(READ) the server emits the file as DTFs,
 * a SYN every `articlesPerSync` articles within the acknowledgement window, then DTF.END. It runs as its own task
 * while the session keeps reading: ACK(SYN), IDT and ABORT arrive at any time (`ack`, `stop`).
 *
 * Order of effects: the restart state for sync point n is durable before SYN n is written (it is written while
 * the data of the interval goes out, so the disk's latency hides behind the network's). Entities go out one per
 * socket write, and a stop is honoured between entities. Before DTF.END the source's identity is checked again:
 * a file changed while it was read ends with DTF.END D2-229, and the requester must not deliver it.
 */
import { createHash, type Hash } from 'node:crypto'
import type { DurableFile, DurableFs } from '../store/durable-fs.js'
import { encodeFpdu } from './codec.js'
import { DIAG, type Diagnostic } from './diagnostics.js'
import { DtfPacker } from './dtf-packer.js'
import { PesitError, ProtocolError } from './errors.js'
import { ReadAhead } from './read-ahead.js'
import type { FpduChannel } from './fpdu-channel.js'
import { identityOf, sameIdentity, writeSendState, type SendState } from './send-source.js'

const READ_CHUNK = 1024 * 1024
/** Sync points one durable write of the restart state covers (written before the first of them is sent). */
const STATE_AHEAD = 16
/** Chunks read ahead per pull (two per transfer): small enough for a hundred pulls at once, large enough to stream. */
const SERVER_READ_CHUNK = 256 * 1024

export interface OutgoingInit {
  fs: DurableFs
  ch: FpduChannel
  /** the requester's connection id (ID.DST) */
  peerId: number
  source: DurableFile
  path: string
  statePath: string
  state: SendState
  /** negotiated PI 25 */
  entity: number
  /** negotiated acknowledgement window (0: SYN unconfirmed) */
  window: number
  /** called with the bytes newly sent, for the metrics, at each sync point and at the end */
  onBytes: (n: number) => void
  /** called with the bytes sent so far from the start of the file, after each chunk read (live progress) */
  onProgress?: (bytes: number) => void
}

/** How the emission ended: DTF.END sent (with its diagnostic), stopped from outside, or cut after a SYN. */
export type EmitEnd = { kind: 'ended', diagnostic: Diagnostic } | { kind: 'stopped' } | { kind: 'interrupt-after-sync', syncPoint: number }

export class OutgoingTransfer {
  /** article bytes (PI 27) and articles (PI 28) sent, counted from the start of the file */
  bytes = 0
  articles = 0
  /** last SYN sent, last ACK(SYN) received */
  syncPoint = 0
  acked = 0
  private reported = 0
  private stopped = false
  private wake: (() => void) | undefined
  private readonly hash: Hash = createHash('sha256')
  /** true while emission waits for an acknowledgement: the session's read watchdog applies only then */
  waitingForAck = false

  constructor (private readonly o: OutgoingInit) {}

  get state (): SendState { return this.o.state }

  /**
   * Positions the source at restart point `p` (READ PI 18). Returns the diagnostic to refuse the READ with, or
   * undefined. The bytes before the point are hashed again, so the SHA-256 recorded at the end is the whole file's.
   */
  async position (p: number): Promise<Diagnostic | undefined> {
    const s = this.o.state
    if (p === 0) return undefined
    if (s.articlesPerSync === 0) return DIAG.RESTART_NEGOTIATION
    const offset = p * s.articlesPerSync * s.articleLength
    if (p > s.syncPoint || offset > s.source.size) return DIAG.UNKNOWN_SYNC_POINT
    await this.hashPrefix(offset)
    this.bytes = offset
    this.articles = p * s.articlesPerSync
    this.syncPoint = p
    this.acked = p
    this.reported = offset
    return undefined
  }

  private async hashPrefix (len: number): Promise<void> {
    const buf = Buffer.allocUnsafe(Math.min(Math.max(len, 1), READ_CHUNK))
    for (let pos = 0; pos < len;) {
      const n = await this.o.source.read(buf.subarray(0, Math.min(buf.length, len - pos)), pos)
      if (n <= 0) throw new PesitError(`${this.o.path} is shorter than its restart point`, DIAG.FILE_MODIFIED)
      this.hash.update(buf.subarray(0, n))
      pos += n
    }
  }

  /** Hex SHA-256 of the file sent; once, at the end. */
  sha256 (): string { return this.hash.digest('hex') }

  /** ACK(SYN) n: every point up to n is acknowledged. */
  ack (n: number): void {
    if (n > this.syncPoint) throw new ProtocolError(`ACK(SYN) ${n} for a sync point not sent (last ${this.syncPoint})`)
    if (n > this.acked) this.acked = n
    this.wakeUp()
  }

  /** Ends the emission before its next entity; `emit()` then resolves `stopped`. */
  stop (): void {
    this.stopped = true
    this.wakeUp()
  }

  private wakeUp (): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  /**
   * Emits from the current position to DTF.END. `interruptAfterSync` is asked after each SYN: true ends the
   * emission there (a hand-over interrupts a transfer right after a sync point). `beforeDtfEnd` runs right before
   * DTF.END is written, so the session is in its end state before the requester can answer it.
   */
  async emit (interruptAfterSync: () => boolean, beforeDtfEnd: () => void): Promise<EmitEnd> {
    const { ch, state, entity } = this.o
    const size = state.source.size
    const k = state.articlesPerSync
    const len = state.articleLength
    const packer = new DtfPacker(ch, entity, this.o.peerId, entity + 2)
    const source = new ReadAhead(async (b, pos) => await this.o.source.read(b, pos), size, len, this.bytes,
      () => new PesitError(`${this.o.path} shrank while being sent`, DIAG.FILE_MODIFIED), SERVER_READ_CHUNK)
    let sinceSync = 0
    // A SYN follows an interval only if data remains after it. A failed write is rethrown where it is awaited.
    // The state is written ahead, for the next STATE_AHEAD points at once (never past the file's last SYN), so
    // one durable write covers that many SYNs; a SYN is sent only once a written state covers it.
    const lastSyn = k === 0 ? 0 : Math.ceil(size / (k * len)) - 1
    const nextSyncDurable = (): Promise<void> | undefined => {
      const next = this.syncPoint + 1
      if (k === 0 || next > lastSyn || next <= this.o.state.syncPoint) return durable
      const p = this.persist(Math.min(lastSyn, this.syncPoint + STATE_AHEAD))
      p.catch(() => {})
      return p
    }
    let durable: Promise<void> | undefined
    durable = nextSyncDurable()
    try {
      for (;;) {
        const buf = await source.next()
        if (buf === undefined) break
        const got = buf.length
        // Hashed a chunk at a time; the hash is used only once every byte was sent.
        this.hash.update(buf)
        for (let a = 0; a < got; a += len) {
          if (this.stopped) return { kind: 'stopped' }
          const art = buf.subarray(a, Math.min(got, a + len))
          await packer.article(art)
          this.bytes += art.length
          this.articles++
          sinceSync++
          if (k > 0 && sinceSync === k && this.bytes < size) {
            await durable
            this.syncPoint++
            sinceSync = 0
            await packer.syn(this.syncPoint)
            this.report()
            if (interruptAfterSync()) return { kind: 'interrupt-after-sync', syncPoint: this.syncPoint }
            durable = nextSyncDurable()
            await this.waitForWindow()
            if (this.stopped) return { kind: 'stopped' }
          }
        }
        this.o.onProgress?.(this.bytes)
      }
      if (this.stopped) return { kind: 'stopped' }
      await packer.flush()
      this.report()
      const now = await this.o.fs.stat(this.o.path)
      const diagnostic = now !== undefined && sameIdentity(identityOf(now), state.source) ? DIAG.OK : DIAG.FILE_MODIFIED
      beforeDtfEnd()
      await ch.sendEntity([encodeFpdu({ type: 'DTF_END', idDst: this.o.peerId, idSrc: 0, params: { 2: diagnostic } })])
      return { kind: 'ended', diagnostic }
    } finally {
      // A durable-state write still running is awaited, so it never lands after the file was released.
      await durable?.catch(() => {})
    }
  }

  private async waitForWindow (): Promise<void> {
    const w = this.o.window
    while (w > 0 && !this.stopped && this.syncPoint - this.acked >= w) {
      this.waitingForAck = true
      await new Promise<void>((resolve) => { this.wake = resolve })
      this.waitingForAck = false
    }
  }

  private async persist (syncPoint: number): Promise<void> {
    this.o.state.syncPoint = syncPoint
    await writeSendState(this.o.fs, this.o.statePath, this.o.state)
  }

  private report (): void {
    const n = this.bytes - this.reported
    if (n > 0) this.o.onBytes(n)
    this.reported = this.bytes
  }
}
