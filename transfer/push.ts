/**
 * The requester side of a push (docs/pesit.md §11; §8 is the server's side): CONNECT, CREATE, ORF, WRITE, the file
 * as articles in multi-article DTFs (segmented with DTFDA/DTFMA/DTFFA when an article does not fit an entity), SYN
 * every interval within the acknowledgement window, DTF.END, TRANS.END, CRF, DESELECT, RELEASE.
 *
 * Restart: the receiver fixes the restart point (ACK(WRITE) PI 18). Sync points are placed deterministically,
 * every `articlesPerSync` articles, so point p is byte `p × articlesPerSync × articleSize` of the source: a
 * restart needs only the transfer id and `articlesPerSync` of the first attempt (`PushResult` and
 * `PushInterruptedError` carry them; the CLI keeps them in a small state file).
 *
 * NOT guaranteed: that the source file did not change between attempts (the CLI compares size and mtime).
 */
import { open, type FileHandle } from 'node:fs/promises'
import { randomInt } from 'node:crypto'
import type { Logger } from '../common/logger.js'
import { silentLogger } from '../common/logger.js'
import { encodeFpdu, getDiagnostic, getNumber, pesitDate, type Fpdu, type Params } from './codec.js'
import { DIAG, describeDiagnostic, isSuccess, type Diagnostic } from './diagnostics.js'
import { PeerRefusalError, PesitConfigError, PesitError, ProtocolError, UnexpectedFpduError } from './errors.js'
import { DtfPacker } from './dtf-packer.js'
import { fpduDisplayName } from './fpdu-types.js'
import { ReadAhead } from './read-ahead.js'
import { RequesterSession, checkRequesterOptions, withChannel, type RequesterOptions } from './requester-session.js'

export interface PushProgress {
  /** bytes of the file sent so far (from the start of the file) */
  bytes: number
  total: number
  /** last sync point acknowledged by the server */
  acknowledgedSyncPoint: number
  /** file offset that sync point stands for */
  acknowledgedBytes: number
}

export interface PushOptions extends RequesterOptions {
  /** path of the file to send */
  source: string
  /** PI 13: required for a restart, random for a new transfer */
  transferId?: number
  /** resume: CREATE with PI 15 = 1; needs the `articlesPerSync` of the first attempt */
  restart?: { articlesPerSync: number }
  /** article length (PI 32), variable format. Default 4096 */
  articleSize?: number
  onProgress?: (p: PushProgress) => void
  /**
   * A new transfer (not a restart), once the sync spacing is agreed and before CREATE: the articles between two sync
   * points (0: none). A caller that keeps it can restart the transfer even before the server acknowledged a sync
   * point, since the server may have made one durable from bytes still in flight when the attempt died.
   */
  onAgreed?: (articlesPerSync: number) => Promise<void> | void
  /**
   * Cancels the transfer cleanly once it is in its data phase: at the next article the push sends IDT (PI 19 = 16,
   * cancelled by the requester, D2-216), waits for ACK(IDT), closes the file and the connection (CRF, DESELECT,
   * RELEASE) and throws PushCancelledError; the server records the transfer failed. (`signal` cuts the connection.)
   */
  cancel?: AbortSignal
}

/** The push was cancelled with `cancel`: IDT sent and acknowledged, the connection closed. */
export class PushCancelledError extends PesitError {
  override name = 'PushCancelledError'
}

export interface PushResult {
  transferId: number
  bytes: number
  articles: number
  syncPoints: number
  /** restart point granted by the server (0 for a new transfer) */
  restartPoint: number
  /** file offset this attempt started from */
  startOffset: number
  articlesPerSync: number
  /**
   * Set when the server confirmed the file (ACK(TRANS.END) with matching counts) but the closing exchange (CRF,
   * DESELECT, RELEASE) failed: the transfer succeeded, the connection did not end cleanly.
   */
  closeWarning?: string
}

/** The transfer stopped in a restartable way (IDT, ABORT, lost connection after WRITE). */
export class PushInterruptedError extends PesitError {
  override name = 'PushInterruptedError'
  constructor (message: string, diagnostic: Diagnostic, readonly transferId: number, readonly articlesPerSync: number, readonly acknowledgedBytes: number, options?: ErrorOptions) {
    super(message, diagnostic, options)
  }
}


export async function pushFile (o: PushOptions): Promise<PushResult> {
  const log = (o.logger ?? silentLogger()).child({ component: 'transfer:push' })
  checkRequesterOptions(o)
  const articleSize = o.articleSize ?? 4096
  if (!Number.isInteger(articleSize) || articleSize < 1 || articleSize > 65535) throw new PesitConfigError('article size: 1..65535')
  if (o.restart !== undefined && o.transferId === undefined) throw new PesitConfigError('a restart needs the transfer id of the first attempt')
  const transferId = o.transferId ?? randomInt(1, 0x1000000)
  if (!Number.isInteger(transferId) || transferId < 1 || transferId > 0xffffff) throw new PesitConfigError('transfer id: 1..16777215')

  const fh = await open(o.source, 'r')
  try {
    const size = (await fh.stat()).size
    let s: PushSession | undefined
    try {
      return await withChannel(o, async (ch) => {
        s = new PushSession(ch, o, log, transferId)
        return await s.run(fh, size, articleSize)
      })
    } catch (err) {
      // Anything that stops the transfer once WRITE was acknowledged leaves a restartable transfer behind.
      if (s?.inDataPhase === true && !(err instanceof PushInterruptedError) && (err instanceof PesitError || (err as Error).name === 'Error')) {
        const e = err as Error
        throw new PushInterruptedError(`${e.message}; resume with --restart`, err instanceof PesitError ? err.diagnostic : DIAG.NETWORK_INCIDENT,
          transferId, s.articlesPerSyncUsed, s.acknowledged, { cause: err })
      }
      throw err
    }
  } finally {
    await fh.close()
  }
}

class PushSession extends RequesterSession {
  private lastAcked = 0
  private articlesPerSync = 0
  private articleSize = 0
  private acknowledgedBytes = 0
  inDataPhase = false

  constructor (ch: ConstructorParameters<typeof RequesterSession>[0], private readonly push: PushOptions, log: Logger, private readonly transferId: number) {
    super(ch, push, log)
  }

  get articlesPerSyncUsed (): number { return this.articlesPerSync }
  get acknowledged (): number { return this.acknowledgedBytes }

  async run (fh: FileHandle, size: number, articleSize: number): Promise<PushResult> {
    const o = this.push
    const proposedEntity = o.maxEntitySize ?? 65535
    this.articleSize = articleSize
    const { intervalKb, window } = await this.connect(0)
    // Sync points every k whole articles: k × articleSize ≤ interval (one article per point at least).
    const fresh = intervalKb === 0 ? 0 : Math.max(1, Math.floor(intervalKb * 1024 / articleSize))
    if (o.restart !== undefined) {
      if (o.restart.articlesPerSync !== fresh && (fresh === 0 || o.restart.articlesPerSync * articleSize > Math.max(intervalKb * 1024, articleSize))) {
        await this.release()
        throw new PesitConfigError(`cannot resume: sync spacing of the first attempt (${o.restart.articlesPerSync} articles) does not fit the interval now negotiated (${intervalKb} KB)`)
      }
      this.articlesPerSync = o.restart.articlesPerSync
    } else {
      this.articlesPerSync = fresh
      await o.onAgreed?.(fresh)
    }
    if (o.cancel?.aborted === true) {
      // Before any transfer exists at the server: the connection ends as it should, and nothing is left to interrupt.
      await this.release()
      throw new PushCancelledError('transfer cancelled before it started', DIAG.VOLUNTARY_STOP)
    }
    // --- CREATE, ORF, WRITE
    const createParams: Params = {
      9: { 11: 0, 12: o.file }, 13: this.transferId, 16: 2, 17: 0, 25: proposedEntity,
      30: { 31: 0x80, 32: articleSize }, 40: { 41: 0, 42: Math.ceil(size / 1024) }, 50: { 51: pesitDate(new Date()) }
    }
    if (o.restart !== undefined) createParams[15] = 1
    const ackCreate = await this.request('CREATE', createParams, 'SF01', 'ACK_CREATE')
    const entity = Math.min(getNumber(ackCreate.params, 25) ?? proposedEntity, proposedEntity)
    if (entity < 16) throw new PeerRefusalError(`entity size ${entity} too small`, DIAG.BAD_PARAMETER)
    this.state = 'SF03'
    await this.request('ORF', { 21: Uint8Array.of(0, 0) }, 'OF01', 'ACK_ORF')
    this.state = 'OF02'
    const ackWrite = await this.request('WRITE', {}, 'TDE01', 'ACK_WRITE')
    const restartPoint = getNumber(ackWrite.params, 18) ?? 0
    if (restartPoint > 0 && this.articlesPerSync === 0) throw new PeerRefusalError(`restart point ${restartPoint} without sync points`, DIAG.RESTART_NEGOTIATION)
    const startArticles = restartPoint * this.articlesPerSync
    const startOffset = Math.min(size, startArticles * articleSize)
    if (startArticles * articleSize > size) {
      await this.abort(DIAG.RESTART_NEGOTIATION)
      throw new PeerRefusalError(`restart point ${restartPoint} lies beyond the end of the file`, DIAG.RESTART_NEGOTIATION)
    }
    this.state = 'TDE02'
    this.inDataPhase = true
    this.lastAcked = restartPoint
    this.acknowledgedBytes = startOffset
    this.log.debug({ transferId: this.transferId, restartPoint, startOffset, entity, intervalKb, window }, 'data phase')
    const counts = await this.sendData(fh, size, startOffset, startArticles, restartPoint, entity, window)
    // --- end of transfer
    await this.ch.sendEntity([encodeFpdu({ type: 'DTF_END', idDst: this.y, idSrc: 0, params: { 2: DIAG.OK } })])
    this.state = 'TDE07'
    await this.send('TRANS_END', { 27: counts.bytes, 28: counts.articles })
    this.state = 'TDE08'
    let ackEnd: Fpdu
    for (;;) {
      const f = await this.receive()
      if (f.type === 'ACK_SYN') continue // late acknowledgement
      // The server's hand-over IDT crossed our TRANS.END: it has priority, the file was not committed.
      if (f.type === 'IDT') return await this.interrupted(f)
      const d = getDiagnostic(f.params) ?? DIAG.OK
      if (!isSuccess(d)) throw new PeerRefusalError('TRANS.END refused', d)
      ackEnd = f
      break
    }
    this.inDataPhase = false
    const rb = getNumber(ackEnd.params, 27)
    const ra = getNumber(ackEnd.params, 28)
    if ((rb !== undefined && rb !== counts.bytes) || (ra !== undefined && ra !== counts.articles)) {
      throw new PeerRefusalError(`server counted ${rb} bytes / ${ra} articles, sent ${counts.bytes} / ${counts.articles}`, DIAG.BAD_COUNT)
    }
    this.state = 'OF02'
    const result: PushResult = { transferId: this.transferId, bytes: counts.bytes, articles: counts.articles, syncPoints: counts.syncPoints, restartPoint, startOffset, articlesPerSync: this.articlesPerSync }
    // The server confirmed the file: a failure from here on does not undo the transfer.
    try {
      await this.closeFile()
    } catch (err) {
      result.closeWarning = `the file was confirmed by the server, but the connection did not close cleanly: ${(err as Error).message}`
    }
    return result
  }

  /** Handles what the server sends during the data phase; returns false while the window is full. */
  private handleDataPhaseFpdu (f: Fpdu): void {
    if (f.type === 'ACK_SYN') {
      const n = getNumber(f.params, 20) ?? 0
      if (n > this.lastAcked) {
        this.lastAcked = n
        this.acknowledgedBytes = n * this.articlesPerSync * this.articleSize
      }
      return
    }
    if (f.type === 'IDT') throw new InterruptSignal(f)
    throw new UnexpectedFpduError(fpduDisplayName(f.type), this.state)
  }

  private async drainIncoming (): Promise<void> {
    for (;;) {
      let ev
      try {
        ev = this.ch.poll()
      } catch (err) {
        if (err instanceof ProtocolError) await this.abort(err.diagnostic)
        throw err
      }
      if (ev === undefined) return
      this.handleDataPhaseFpdu(await this.accept(ev))
    }
  }

  private async sendData (fh: FileHandle, size: number, startOffset: number, startArticles: number, startSync: number, entity: number, window: number): Promise<{ bytes: number, articles: number, syncPoints: number }> {
    const o = this.push
    const packer = new DtfPacker(this.ch, entity, this.y)
    let offset = startOffset
    let articles = startArticles
    let syncPoint = startSync
    let sinceSync = 0
    const source = new ReadAhead(async (b, pos) => (await fh.read(b, 0, b.length, pos)).bytesRead, size, this.articleSize, offset,
      () => new PesitError(`source ${o.source} shrank while being sent`, DIAG.IO_ERROR))
    const progress = (): void => o.onProgress?.({ bytes: offset, total: size, acknowledgedSyncPoint: this.lastAcked, acknowledgedBytes: this.acknowledgedBytes })
    try {
      for (;;) {
        // Whole articles only (the last one may be short); the packer copies them, the next chunk is being read.
        const buf = await source.next()
        if (buf === undefined) break
        const got = buf.length
        for (let a = 0; a < got; a += this.articleSize) {
          const art = buf.subarray(a, Math.min(got, a + this.articleSize))
          await packer.article(art)
          articles++
          offset += art.length
          sinceSync++
          if (this.cancelRequested()) return await this.cancelled(packer)
          if (this.articlesPerSync > 0 && sinceSync === this.articlesPerSync && offset < size) {
            syncPoint++
            sinceSync = 0
            await packer.syn(syncPoint)
            await this.drainIncoming()
            while (window > 0 && syncPoint - this.lastAcked >= window) {
              this.handleDataPhaseFpdu(await this.receive())
            }
            progress()
          } else if (packer.flushedSinceCheck) {
            packer.flushedSinceCheck = false
            await this.drainIncoming()
            progress()
          }
        }
      }
      // A cancel that came after the last article (an empty file has none) still stops it before DTF.END.
      if (this.cancelRequested()) return await this.cancelled(packer)
      await packer.flush()
      await this.drainIncoming()
      progress()
      // Most of the file may still be in the sockets' buffers: the server acknowledges its sync points as it gets
      // there. Waiting for those acknowledgements before DTF.END reports each one as it comes (a caller that
      // records them, such as the cluster's queue, can restart from the last one if this attempt dies now).
      while (window > 0 && this.lastAcked < syncPoint) {
        if (this.cancelRequested()) return await this.cancelled(packer)
        this.handleDataPhaseFpdu(await this.receive())
        progress()
      }
      return { bytes: offset, articles, syncPoints: syncPoint }
    } catch (err) {
      if (err instanceof InterruptSignal) return await this.interrupted(err.fpdu)
      throw err
    }
  }

  private cancelRequested (): boolean { return this.push.cancel?.aborted === true }

  /** Our IDT (code 16, cancelled by the requester), its ACK, then CRF, DESELECT, RELEASE. */
  private async cancelled (packer: DtfPacker): Promise<never> {
    await packer.flush()
    await this.send('IDT', { 2: DIAG.VOLUNTARY_STOP, 19: 16 })
    this.state = 'TDX05'
    for (;;) {
      const f = await this.receive()
      // Acknowledgements of sync points in flight come first; a server IDT that crossed ours answers it too, and is
      // acknowledged in turn.
      if (f.type === 'ACK_IDT') break
      if (f.type === 'IDT') {
        await this.send('ACK_IDT', {})
        break
      }
      if (f.type !== 'ACK_SYN') throw new UnexpectedFpduError(fpduDisplayName(f.type), this.state)
    }
    this.inDataPhase = false
    this.state = 'OF02'
    try {
      await this.closeFile()
    } catch (e) {
      this.log.debug({ err: e }, 'closing after our IDT failed')
    }
    throw new PushCancelledError('transfer cancelled (IDT code 16 sent and acknowledged)', DIAG.VOLUNTARY_STOP)
  }

  /** The server's IDT: ACK(IDT), then a clean CRF, DESELECT, RELEASE; the push ends restartable. */
  private async interrupted (f: Fpdu): Promise<never> {
    const d = getDiagnostic(f.params) ?? DIAG.OTHER
    const code = getNumber(f.params, 19) ?? 4
    await this.send('ACK_IDT', {})
    this.state = 'OF02'
    try {
      await this.closeFile()
    } catch (e) {
      this.log.debug({ err: e }, 'closing after IDT failed')
    }
    throw new PushInterruptedError(`transfer interrupted by the server (IDT code ${code}, ${describeDiagnostic(d)}); resume with --restart`, d, this.transferId, this.articlesPerSync, this.acknowledgedBytes)
  }
}

class InterruptSignal extends Error {
  constructor (readonly fpdu: Fpdu) { super('IDT') }
}


