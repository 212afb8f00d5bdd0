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
import { connect as netConnect } from 'node:net'
import { open } from 'node:fs/promises'
import { randomInt } from 'node:crypto'
import type { Duplex } from 'node:stream'
import type { Logger } from '../common/logger.js'
import { silentLogger } from '../common/logger.js'
import {
  HEADER_SIZE, MAX_ARTICLES_PER_DTF, decodeSyncOption, encodeAccessControl, encodeEntity, encodeFpdu,
  encodePreconnection, encodeSyncOption, getBytes, getDiagnostic, getNumber, pesitDate, writeHeader,
  PRECONNECTION_ACK, type Fpdu, type Params
} from './codec.js'
import { DIAG, describeDiagnostic, isSuccess, type Diagnostic } from './diagnostics.js'
import { ConnectionLostError, PeerRefusalError, PesitConfigError, PesitError, ProtocolError, UnexpectedFpduError } from './errors.js'
import { FpduChannel } from './fpdu-channel.js'
import { fpduDisplayName, type FpduType } from './fpdu-types.js'
import { transition, type SessionState } from './session-table.js'

export interface PushProgress {
  /** bytes of the file sent so far (from the start of the file) */
  bytes: number
  total: number
  /** last sync point acknowledged by the server */
  acknowledgedSyncPoint: number
  /** file offset that sync point stands for */
  acknowledgedBytes: number
}

export interface PushOptions {
  host: string
  port: number
  partner: string
  password: string
  /** PeSIT server id (PI 4) */
  server: string
  /** virtual file id (PI 12) */
  file: string
  /** path of the file to send */
  source: string
  /** PI 13: required for a restart, random for a new transfer */
  transferId?: number
  /** resume: CREATE with PI 15 = 1; needs the `articlesPerSync` of the first attempt */
  restart?: { articlesPerSync: number }
  /** proposed sync interval (KB); 0 = no sync points. Default 1024 */
  syncIntervalKb?: number
  /** proposed acknowledgement window. Default 4 */
  syncWindow?: number
  /** article length (PI 32), variable format. Default 4096 */
  articleSize?: number
  /** proposed PI 25. Default 65535 */
  maxEntitySize?: number
  /** watchdog for each answer. Default 30 s */
  timeoutMs?: number
  /** send the 24-byte pre-connection message first (partners of type T/O) */
  preconnection?: boolean
  onProgress?: (p: PushProgress) => void
  signal?: AbortSignal
  logger?: Logger
  /** opens the byte stream (TLS, tests); plain TCP to host:port by default */
  connect?: () => Promise<Duplex>
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
}

/** The transfer stopped in a restartable way (IDT, ABORT, lost connection after WRITE). */
export class PushInterruptedError extends PesitError {
  override name = 'PushInterruptedError'
  constructor (message: string, diagnostic: Diagnostic, readonly transferId: number, readonly articlesPerSync: number, readonly acknowledgedBytes: number, options?: ErrorOptions) {
    super(message, diagnostic, options)
  }
}

const READ_CHUNK = 1024 * 1024
const BATCH = 256 * 1024

export async function pushFile (o: PushOptions): Promise<PushResult> {
  const log = (o.logger ?? silentLogger()).child({ component: 'transfer:requester' })
  const articleSize = o.articleSize ?? 4096
  const proposedEntity = o.maxEntitySize ?? 65535
  const syncKb = o.syncIntervalKb ?? 1024
  if (!Number.isInteger(articleSize) || articleSize < 1 || articleSize > 65535) throw new PesitConfigError('article size: 1..65535')
  if (!Number.isInteger(proposedEntity) || proposedEntity < 64 || proposedEntity > 65535) throw new PesitConfigError('entity size: 64..65535')
  if (!Number.isInteger(syncKb) || syncKb < 0 || syncKb > 0xfffe) throw new PesitConfigError('sync interval: 0..65534 KB')
  if (o.restart !== undefined && o.transferId === undefined) throw new PesitConfigError('a restart needs the transfer id of the first attempt')
  const transferId = o.transferId ?? randomInt(1, 0x1000000)
  if (!Number.isInteger(transferId) || transferId < 1 || transferId > 0xffffff) throw new PesitConfigError('transfer id: 1..16777215')
  const timeoutMs = o.timeoutMs ?? 30_000

  const fh = await open(o.source, 'r')
  try {
    const size = (await fh.stat()).size
    const socket = o.connect !== undefined ? await o.connect() : await tcpConnect(o.host, o.port, timeoutMs)
    const ch = new FpduChannel(socket, { writeTimeoutMs: timeoutMs })
    const onAbort = (): void => { socket.destroy(new Error('cancelled')) }
    o.signal?.addEventListener('abort', onAbort, { once: true })
    const s = new PushSession(ch, o, log, transferId, timeoutMs)
    try {
      return await s.run(fh, size, articleSize, proposedEntity, syncKb)
    } catch (caught) {
      // A write that failed because the server aborted and closed: report the server's reason, not the socket's.
      const err = caught instanceof ConnectionLostError ? bufferedAbort(ch) ?? caught : caught
      // Anything that stops the transfer once WRITE was acknowledged leaves a restartable transfer behind.
      if (s.inDataPhase && !(err instanceof PushInterruptedError) && (err instanceof PesitError || (err as Error).name === 'Error')) {
        const e = err as Error
        throw new PushInterruptedError(`${e.message}; resume with --restart`, err instanceof PesitError ? err.diagnostic : DIAG.NETWORK_INCIDENT,
          transferId, s.articlesPerSyncUsed, s.acknowledged, { cause: err })
      }
      throw err
    } finally {
      o.signal?.removeEventListener('abort', onAbort)
      socket.destroy()
    }
  } finally {
    await fh.close()
  }
}

function bufferedAbort (ch: FpduChannel): PeerRefusalError | undefined {
  try {
    for (let i = 0; i < 10_000; i++) {
      const ev = ch.poll()
      if (ev === undefined || ev.kind !== 'fpdu') return undefined
      if (ev.fpdu.type === 'ABORT') return new PeerRefusalError('aborted by the server', getDiagnostic(ev.fpdu.params) ?? DIAG.OTHER)
    }
  } catch {
    // malformed leftovers: nothing to report
  }
  return undefined
}

async function tcpConnect (host: string, port: number, timeoutMs: number): Promise<Duplex> {
  return await new Promise((resolve, reject) => {
    const s = netConnect({ host, port, noDelay: true })
    const t = setTimeout(() => { s.destroy(); reject(new ConnectionLostError(`connect to ${host}:${port} timed out`)) }, timeoutMs)
    s.once('connect', () => { clearTimeout(t); s.off('error', onErr); resolve(s) })
    const onErr = (err: Error): void => { clearTimeout(t); reject(new ConnectionLostError(`cannot connect to ${host}:${port}: ${err.message}`, { cause: err })) }
    s.once('error', onErr)
  })
}

class PushSession {
  private state: SessionState = 'CN01'
  private readonly x = randomInt(1, 256)
  private y = 0
  private lastAcked = 0
  private articlesPerSync = 0
  private articleSize = 0
  private acknowledgedBytes = 0
  inDataPhase = false

  constructor (private readonly ch: FpduChannel, private readonly o: PushOptions, private readonly log: Logger, private readonly transferId: number, private readonly timeoutMs: number) {}

  get articlesPerSyncUsed (): number { return this.articlesPerSync }
  get acknowledged (): number { return this.acknowledgedBytes }

  private async send (type: FpduType, params: Params, idSrc = 0): Promise<void> {
    await this.ch.send({ type, idDst: this.y, idSrc, params })
  }

  /** Waits for the next FPDU valid in the current state; ABORT and unexpected FPDUs end the session. */
  private async receive (): Promise<Fpdu> {
    let ev
    try {
      ev = await this.ch.next(this.timeoutMs)
    } catch (err) {
      if (err instanceof ProtocolError) await this.abort(err.diagnostic)
      throw err
    }
    return await this.accept(ev)
  }

  private async accept (ev: Awaited<ReturnType<FpduChannel['next']>>): Promise<Fpdu> {
    if (ev.kind === 'end') throw new ConnectionLostError('the server closed the connection')
    if (ev.kind === 'preconnection') {
      await this.abort(DIAG.PROTOCOL_ERROR)
      throw new ProtocolError('pre-connection message from the server')
    }
    const f = ev.fpdu
    if (f.type === 'ABORT') throw new PeerRefusalError('aborted by the server', getDiagnostic(f.params) ?? DIAG.OTHER)
    const next = transition('requester', this.state, f.type)
    if (next === undefined) {
      await this.abort(DIAG.PROTOCOL_ERROR)
      throw new UnexpectedFpduError(fpduDisplayName(f.type), this.state)
    }
    return f
  }

  private async abort (diag: Diagnostic): Promise<void> {
    await this.ch.send({ type: 'ABORT', idDst: this.y, idSrc: this.x, params: { 2: diag } }).catch(() => {})
  }

  /** Sends `type`, waits for `ack`, throws PeerRefusalError on a negative answer. */
  private async request (type: FpduType, params: Params, waiting: SessionState, ack: FpduType): Promise<Fpdu> {
    await this.send(type, params)
    this.state = waiting
    for (;;) {
      const f = await this.receive()
      if (f.type === 'ACK_SYN') continue // late acknowledgement, valid and meaningless now
      if (f.type !== ack) throw new UnexpectedFpduError(fpduDisplayName(f.type), this.state)
      const d = getDiagnostic(f.params) ?? DIAG.OK
      if (!isSuccess(d)) throw new PeerRefusalError(`${fpduDisplayName(type)} refused`, d)
      return f
    }
  }

  async run (fh: import('node:fs/promises').FileHandle, size: number, articleSize: number, proposedEntity: number, syncKb: number): Promise<PushResult> {
    const o = this.o
    this.articleSize = articleSize
    if (o.preconnection === true) {
      await this.ch.write(encodePreconnection({ identifier: o.partner, password: o.password }))
      const answer = await this.readRaw(4)
      if (!Buffer.from(answer).equals(PRECONNECTION_ACK)) throw new PeerRefusalError('pre-connection refused', DIAG.REQUESTER_NOT_AUTHORISED)
    }
    // --- CONNECT
    await this.ch.send({
      type: 'CONNECT', idDst: 0, idSrc: this.x,
      params: { 3: o.partner, 4: o.server, 5: encodeAccessControl(o.password), 6: 2, 7: encodeSyncOption({ intervalKb: syncKb, window: syncKb === 0 ? 0 : o.syncWindow ?? 4 }), 22: 0 }
    })
    this.state = 'CN02'
    const ac = await this.receive()
    if (ac.type === 'RCONNECT') throw new PeerRefusalError('connection refused', getDiagnostic(ac.params) ?? DIAG.OTHER)
    this.y = ac.idSrc
    if (getNumber(ac.params, 6) !== 2) {
      await this.abort(DIAG.VERSION_NOT_SUPPORTED)
      throw new PeerRefusalError('server answered another PeSIT version', DIAG.VERSION_NOT_SUPPORTED)
    }
    const sync = decodeSyncOption(getBytes(ac.params, 7)) ?? { intervalKb: 0, window: 0 }
    const intervalKb = syncKb === 0 || sync.intervalKb === 0 || sync.intervalKb === 0xffff ? (syncKb === 0 || sync.intervalKb === 0 ? 0 : syncKb) : Math.min(sync.intervalKb, syncKb)
    const window = intervalKb === 0 ? 0 : sync.window
    this.state = 'CN03'
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
    log(this.log, { transferId: this.transferId, restartPoint, startOffset, entity, intervalKb, window }, 'data phase')
    const counts = await this.sendData(fh, size, startOffset, startArticles, restartPoint, entity, window)
    // --- end of transfer
    await this.ch.sendEntity([encodeFpdu({ type: 'DTF_END', idDst: this.y, idSrc: 0, params: { 2: DIAG.OK } })])
    this.state = 'TDE07'
    const ackEnd = await this.request('TRANS_END', { 27: counts.bytes, 28: counts.articles }, 'TDE08', 'ACK_TRANS_END')
    this.inDataPhase = false
    const rb = getNumber(ackEnd.params, 27)
    const ra = getNumber(ackEnd.params, 28)
    if ((rb !== undefined && rb !== counts.bytes) || (ra !== undefined && ra !== counts.articles)) {
      throw new PeerRefusalError(`server counted ${rb} bytes / ${ra} articles, sent ${counts.bytes} / ${counts.articles}`, DIAG.BAD_COUNT)
    }
    this.state = 'OF02'
    await this.request('CRF', { 2: DIAG.OK }, 'OF03', 'ACK_CRF')
    this.state = 'SF03'
    await this.request('DESELECT', { 2: DIAG.OK }, 'SF04', 'ACK_DESELECT')
    this.state = 'CN03'
    await this.release()
    return { transferId: this.transferId, bytes: counts.bytes, articles: counts.articles, syncPoints: counts.syncPoints, restartPoint, startOffset, articlesPerSync: this.articlesPerSync }
  }

  private async release (): Promise<void> {
    await this.ch.send({ type: 'RELEASE', idDst: this.y, idSrc: this.x, params: { 2: DIAG.OK } })
    this.state = 'CN04'
    await this.receive()
    this.state = 'CN01'
    await this.ch.close(1000)
  }

  private async readRaw (n: number): Promise<Uint8Array> {
    // The answer to a raw pre-connection is 4 raw bytes, outside the entity framing.
    return await this.ch.nextRaw(n, this.timeoutMs)
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

  private async sendData (fh: import('node:fs/promises').FileHandle, size: number, startOffset: number, startArticles: number, startSync: number, entity: number, window: number): Promise<{ bytes: number, articles: number, syncPoints: number }> {
    const o = this.o
    const packer = new DtfPacker(this.ch, entity, this.y)
    let offset = startOffset
    let articles = startArticles
    let syncPoint = startSync
    let sinceSync = 0
    const buf = Buffer.allocUnsafe(Math.max(READ_CHUNK, this.articleSize))
    const progress = (): void => o.onProgress?.({ bytes: offset, total: size, acknowledgedSyncPoint: this.lastAcked, acknowledgedBytes: this.acknowledgedBytes })
    try {
      while (offset < size) {
        // Read whole articles only (the last one may be short).
        const want = Math.min(size - offset, Math.floor(buf.length / this.articleSize) * this.articleSize)
        let got = 0
        while (got < want) {
          const { bytesRead } = await fh.read(buf, got, want - got, offset + got)
          if (bytesRead === 0) throw new PesitError(`source ${o.source} shrank while being sent`, DIAG.IO_ERROR)
          got += bytesRead
        }
        // The chunk is handed to the socket by reference: it must not be reused while queued.
        const chunk = Buffer.from(buf.subarray(0, got))
        for (let a = 0; a < got; a += this.articleSize) {
          const art = chunk.subarray(a, Math.min(got, a + this.articleSize))
          await packer.article(art)
          articles++
          offset += art.length
          sinceSync++
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
      await packer.flush()
      await this.drainIncoming()
      progress()
      return { bytes: offset, articles, syncPoints: syncPoint }
    } catch (err) {
      if (err instanceof InterruptSignal) {
        const d = getDiagnostic(err.fpdu.params) ?? DIAG.OTHER
        const code = getNumber(err.fpdu.params, 19) ?? 4
        await this.send('ACK_IDT', {})
        this.state = 'OF02'
        // A clean end after an interruption: CRF, DESELECT, RELEASE (never just a socket close).
        try {
          await this.request('CRF', { 2: DIAG.OK }, 'OF03', 'ACK_CRF')
          this.state = 'SF03'
          await this.request('DESELECT', { 2: DIAG.OK }, 'SF04', 'ACK_DESELECT')
          this.state = 'CN03'
          await this.release()
        } catch (e) {
          this.log.debug({ err: e }, 'closing after IDT failed')
        }
        throw new PushInterruptedError(`transfer interrupted by the server (IDT code ${code}, ${describeDiagnostic(d)}); resume with --restart`, d, this.transferId, this.articlesPerSync, this.acknowledgedBytes)
      }
      throw err
    }
  }
}

class InterruptSignal extends Error {
  constructor (readonly fpdu: Fpdu) { super('IDT') }
}

function log (l: Logger, obj: Record<string, unknown>, msg: string): void {
  l.debug(obj, msg)
}

/**
 * Packs articles into entities (docs/pesit.md §11, "Packing"): as many whole articles as fit in one multi-article
 * DTF, a lone article as a mono-article DTF, an article longer than the entity cut into DTFDA/DTFMA/DTFFA.
 * Entities are batched into large socket writes.
 */
class DtfPacker {
  private batch = Buffer.allocUnsafe(BATCH)
  private used = 0
  /** start of the open DTF entity in `batch` (its 2-byte prefix), -1 when none */
  private open = -1
  private count = 0
  flushedSinceCheck = false

  constructor (private readonly ch: FpduChannel, private readonly entity: number, private readonly y: number) {}

  private async ensure (n: number): Promise<void> {
    if (BATCH - this.used >= n) return
    this.closeDtf()
    await this.flush()
  }

  async article (a: Uint8Array): Promise<void> {
    if (HEADER_SIZE + 2 + a.length > this.entity) return await this.segmented(a)
    if (this.open >= 0) {
      const entityLen = this.used - this.open - 2
      if (entityLen + 2 + a.length > this.entity || this.count === MAX_ARTICLES_PER_DTF) this.closeDtf()
    }
    if (this.open < 0) {
      await this.ensure(2 + this.entity)
      this.open = this.used
      this.used += 2 + HEADER_SIZE
      this.count = 0
    }
    this.batch[this.used] = a.length >> 8
    this.batch[this.used + 1] = a.length & 0xff
    this.batch.set(a, this.used + 2)
    this.used += 2 + a.length
    this.count++
  }

  private closeDtf (): void {
    if (this.open < 0) return
    const start = this.open
    this.open = -1
    if (this.count === 1) {
      // One article: mono-article form (ID.SRC 0, no prefix), the most widely understood.
      this.batch.copyWithin(start + 2 + HEADER_SIZE, start + 2 + HEADER_SIZE + 2, this.used)
      this.used -= 2
    }
    const fpduLen = this.used - start - 2
    this.batch[start] = fpduLen >> 8
    this.batch[start + 1] = fpduLen & 0xff
    writeHeader(this.batch, start + 2, fpduLen, 'DTF', this.y, this.count === 1 ? 0 : this.count)
  }

  private async segmented (a: Uint8Array): Promise<void> {
    this.closeDtf()
    const room = this.entity - HEADER_SIZE
    for (let off = 0; off < a.length; off += room) {
      const piece = a.subarray(off, Math.min(a.length, off + room))
      const type = off === 0 ? 'DTFDA' : off + room >= a.length ? 'DTFFA' : 'DTFMA'
      await this.ensure(2 + HEADER_SIZE + piece.length)
      const len = HEADER_SIZE + piece.length
      this.batch[this.used] = len >> 8
      this.batch[this.used + 1] = len & 0xff
      writeHeader(this.batch, this.used + 2, len, type, this.y, 0)
      this.batch.set(piece, this.used + 2 + HEADER_SIZE)
      this.used += 2 + len
    }
  }

  async syn (n: number): Promise<void> {
    this.closeDtf()
    const syn = encodeEntity([encodeFpdu({ type: 'SYN', idDst: this.y, idSrc: 0, params: { 20: n } })])
    await this.ensure(syn.length)
    this.batch.set(syn, this.used)
    this.used += syn.length
    await this.flush()
  }

  async flush (): Promise<void> {
    this.closeDtf()
    if (this.used === 0) return
    const out = this.batch.subarray(0, this.used)
    this.batch = Buffer.allocUnsafe(BATCH)
    this.used = 0
    this.flushedSinceCheck = true
    await this.ch.write(out)
  }
}
