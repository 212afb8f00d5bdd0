/**
 * The receive direction of a server session (docs/pesit.md §8–§9): a partner pushes. CREATE opens the partial
 * file (or resumes it from its checkpoint), WRITE fixes the restart point, the data is stored as articles arrive,
 * each SYN is made durable and acknowledged, and TRANS.END commits the file under its final name.
 *
 * Leader-only effects (ACK(SYN), the rename of a completed file, ACK(TRANS.END)) check the lease synchronously
 * right before they happen.
 */
import { getDiagnostic, getGroup, getNumber, getString, splitArticles, type Fpdu, type Params } from './codec.js'
import { directoryFor, finalFileName, transferStem, type PesitFileConfig } from './config-types.js'
import { DIAG, describeDiagnostic, diagnosticLabel, isSuccess, type Diagnostic } from './diagnostics.js'
import { ConnectionLostError, NotLeaderError, PesitError, ProtocolError, UnexpectedFpduError } from './errors.js'
import type { TransferOutcome } from './ports.js'
import { IncomingFile, writeBufferFor, type ReceivedData } from './receive-store.js'
import { ReplayedFile } from './receive-replay.js'
import { killHere, PAUSED_CHECKPOINT, pauseHere, pauseOnce } from './fault-injection.js'
import type { SessionHost } from './session-host.js'

interface Transfer {
  journalId: string
  key: string
  transferId: number
  file: PesitFileConfig
  finalName: string
  incoming: ReceivedData
  /** a restart of a transfer already delivered (receive-replay.ts): compared, not stored, not journaled again */
  replay: boolean
  articleFormat: number
  articleLength: number
  /** PI 42 in KB (PI 41 = 0), 0 = not announced */
  announcedKb: number
  written: boolean
  done: boolean
  dtfEndDiag?: Diagnostic
  reportedBytes: number
  /** performance.now() at its CREATE */
  startedAt: number
}

export class ReceiveSide {
  private transfer: Transfer | undefined
  /** PI 25 agreed in ACK(CREATE) */
  entitySize: number
  /** bytes of the article being reassembled from DTFDA/DTFMA, undefined when none is open */
  private segment: number | undefined
  /** last SYN number received (its checkpoint may still be in flight) */
  private synReceived = 0
  private pendingCheckpoint: Promise<void> = Promise.resolve()
  /** sync points received whose checkpoint is not made yet, in order */
  private syncQueue: Array<{ n: number, offset: number, articles: number }> = []
  private checkpointError: unknown
  private checkpointInFlight = false
  private bytesSinceSync = 0

  constructor (private readonly host: SessionHost) {
    this.entitySize = host.ctx.server.maxEntitySize
  }

  get active (): boolean { return this.transfer !== undefined }
  /** a checkpoint is being made: the requester may rightly be silent, waiting for its ACK(SYN) */
  get checkpointRunning (): boolean { return this.checkpointInFlight }
  /** resolves when the checkpoints in flight are done, whatever their outcome */
  async checkpointsDone (): Promise<void> { await this.pendingCheckpoint }

  /** An IDT ends the data phase: an article being reassembled is dropped. */
  dropSegment (): void { this.segment = undefined }

  async onCreate (f: Fpdu): Promise<void> {
    const p = f.params
    const pgi9 = getGroup(p, 9)
    const transferId = getNumber(p, 13) ?? 0
    const proposedEntity = getNumber(p, 25) ?? 0
    const refuse = async (diag: Diagnostic, why: string): Promise<void> => {
      this.host.log.warn({ diagnostic: describeDiagnostic(diag), why, transferId }, 'CREATE refused')
      await this.host.send('ACK_CREATE', { 2: diag, 25: Math.max(6, Math.min(proposedEntity, this.host.ctx.server.maxEntitySize)) })
      this.host.setState('CN03')
    }
    const partner = this.host.partner()
    const requester = getString(pgi9, 3)
    if (requester !== undefined && requester !== partner.id) return await refuse(DIAG.TRANSFER_REFUSED, `PGI 9 names requester ${requester}`)
    const serverId = getString(pgi9, 4)
    if (serverId !== undefined && serverId.toUpperCase() !== this.host.ctx.server.id.toUpperCase()) return await refuse(DIAG.TRANSFER_REFUSED, `PGI 9 names server ${serverId}`)
    if (this.host.accessType() === 1 || partner.access === 'read') return await refuse(DIAG.TRANSFER_REFUSED, 'partner may not write')
    const fileId = getString(pgi9, 12) ?? ''
    const file = this.host.ctx.files.get(fileId)
    if (file === undefined) return await refuse(DIAG.FILE_NOT_FOUND, `unknown virtual file ${fileId}`)
    if (file.direction === 'send') return await refuse(DIAG.TRANSFER_REFUSED, `virtual file ${fileId} is send-only`)
    if (transferId === 0) return await refuse(DIAG.BAD_PARAMETER, 'transfer id 0')
    if (proposedEntity < 64) return await refuse(DIAG.BAD_PARAMETER, `entity size ${proposedEntity}`)
    const pgi30 = getGroup(p, 30)
    const articleFormat = getNumber(pgi30, 31) ?? 0x80
    const articleLength = getNumber(pgi30, 32) ?? 0
    if (articleFormat !== 0x00 && articleFormat !== 0x80) return await refuse(DIAG.FILE_CHARACTERISTICS, `article format ${articleFormat}`)
    if (articleLength < 1) return await refuse(DIAG.FILE_CHARACTERISTICS, 'article length 0')
    const pgi40 = getGroup(p, 40)
    const announcedKb = (getNumber(pgi40, 41) ?? 0) === 0 ? getNumber(pgi40, 42) ?? 0 : 0
    const restart = getNumber(p, 15) === 1
    const key = `${partner.id}\u0000${file.id}\u0000${transferId}`
    if (this.host.ctx.activeTransfers.has(key)) return await refuse(DIAG.FILE_BUSY, 'the same transfer is in progress on another connection')
    const finalName = finalFileName(file.filenamePattern, { partner: partner.id, file: file.id, transferId })
    // `${partner}` in the directory: each partner's files in a directory of its own.
    const directory = directoryFor(file.directory, partner.id)
    const stem = transferStem({ partner: partner.id, file: file.id, transferId })
    this.host.ctx.activeTransfers.add(key)
    let incoming: ReceivedData
    let replay = false
    try {
      const incomingKey = { directory, stem, partner: partner.id, server: this.host.ctx.server.id, file: file.id, transferId, articleFormat, articleLength, epoch: this.host.ctx.epoch?.() ?? 0 }
      const replayed = restart ? await ReplayedFile.open(this.host.ctx.fs, incomingKey, finalName, announcedKb) : undefined
      if (replayed !== undefined) {
        incoming = replayed
        replay = true
      } else if (await this.host.ctx.fs.exists(`${directory}/${finalName}`)) {
        this.host.ctx.activeTransfers.delete(key)
        return await refuse(DIAG.FILE_EXISTS, `${finalName} already exists`)
      } else {
        incoming = await IncomingFile.open(this.host.ctx.fs, incomingKey, restart, writeBufferFor(this.host.ctx.activeTransfers.size))
      }
    } catch (err) {
      this.host.ctx.activeTransfers.delete(key)
      this.host.log.error({ err }, 'cannot open the partial file')
      return await refuse(err instanceof PesitError ? err.diagnostic : DIAG.CANNOT_OPEN, 'storage')
    }
    let journalId = ''
    if (!replay) try {
      const started = await this.host.ctx.journal.begin({
        pesitTransferId: transferId, direction: 'receive', server: this.host.ctx.server.id, partner: partner.id, file: file.id,
        path: `${directory}/${finalName}`, restart: incoming.resumed, startSyncPoint: incoming.syncPoint, startOffset: incoming.bytes
      })
      journalId = started.id
    } catch (err) {
      this.host.log.error({ err }, 'the transfer journal refused the new transfer')
      await incoming.closeHandle()
      this.host.ctx.activeTransfers.delete(key)
      return await refuse(DIAG.SYSTEM_RESOURCES, 'journal')
    }
    this.entitySize = Math.min(proposedEntity, this.host.ctx.server.maxEntitySize)
    this.transfer = {
      journalId, key, transferId, file, finalName, incoming, replay, articleFormat, articleLength,
      announcedKb, written: false, done: false, reportedBytes: incoming.bytes, startedAt: performance.now()
    }
    this.host.setInterrupted(false)
    await this.host.send('ACK_CREATE', { 2: DIAG.OK, 25: this.entitySize })
    // Bounded by the server's maximum, not by the size just agreed: a larger entity is tolerated and counted.
    this.host.ch.negotiatedEntitySize = this.entitySize
    this.host.setState('SF03')
    this.host.log.info({ transferId, file: file.id, restart, resumedAt: incoming.resumed ? incoming.syncPoint : undefined, entitySize: this.entitySize, replay }, replay ? 'restart of a transfer already delivered: the bytes resent are compared, not stored' : 'file created')
  }

  async onWrite (): Promise<void> {
    const t = this.transfer
    if (t === undefined || t.written || this.host.interrupted()) {
      await this.host.send('ACK_WRITE', { 2: DIAG.IO_ERROR, 18: 0 })
      return
    }
    t.written = true
    this.synReceived = t.incoming.syncPoint
    this.segment = undefined
    this.bytesSinceSync = 0
    await this.host.send('ACK_WRITE', { 2: DIAG.OK, 18: t.incoming.syncPoint })
    this.host.setState('TDE02')
  }

  async onData (f: Fpdu): Promise<void> {
    const t = this.transfer!
    await this.store(t, f)
    if (!t.replay) this.host.ctx.progress?.update(t.journalId, { bytes: t.incoming.bytes, ...(t.announcedKb > 0 ? { expectedBytes: t.announcedKb * 1024 } : {}) })
  }

  private async store (t: Transfer, f: Fpdu): Promise<void> {
    const data = f.data!
    switch (f.type) {
      case 'DTF':
        if (this.segment !== undefined) throw new ProtocolError('DTF while a segmented article is open')
        if (f.idSrc === 0) {
          await this.article(t, data)
        } else {
          for (const a of splitArticles(data, f.idSrc)) await this.article(t, a)
        }
        return
      case 'DTFDA':
        if (this.segment !== undefined) throw new ProtocolError('DTFDA while a segmented article is open')
        this.segment = 0
        return await this.piece(t, data, false)
      case 'DTFMA':
        if (this.segment === undefined) throw new ProtocolError('DTFMA without DTFDA')
        return await this.piece(t, data, false)
      case 'DTFFA':
        if (this.segment === undefined) throw new ProtocolError('DTFFA without DTFDA')
        return await this.piece(t, data, true)
      default:
        throw new UnexpectedFpduError(f.type, this.host.state())
    }
  }

  /**
   * A variable-format article longer than PI 32 costs nothing to store: tolerated and counted. A fixed-format one
   * means the records are not what was announced: D2-220.
   */
  private checkArticleLength (t: Transfer, len: number): void {
    if (len <= t.articleLength) return
    if (t.articleFormat === 0) throw new PesitError(`article of ${len} bytes, fixed length ${t.articleLength}`, DIAG.ARTICLE_TOO_LONG)
    this.host.deviation('article-over-announced-length', { length: len, announced: t.articleLength })
  }

  private checkVolume (t: Transfer, n: number): void {
    this.bytesSinceSync += n
    // A little tolerance over the negotiated interval: one entity, as senders cut at article boundaries.
    if (this.host.sync().intervalKb > 0 && this.bytesSinceSync > this.host.sync().intervalKb * 1024 + this.entitySize) {
      throw new PesitError(`${this.bytesSinceSync} bytes without a sync point`, DIAG.TOO_MUCH_DATA_WITHOUT_SYNC)
    }
    if (t.announcedKb > 0 && t.incoming.bytes + n > t.announcedKb * 1024) {
      throw new PesitError(`file larger than the ${t.announcedKb} KB announced`, DIAG.FILE_LARGER_THAN_ANNOUNCED)
    }
  }

  private async article (t: Transfer, a: Uint8Array): Promise<void> {
    this.checkArticleLength(t, a.length)
    if (t.articleFormat === 0 && a.length !== t.articleLength) throw new PesitError(`fixed article of ${a.length} bytes, expected ${t.articleLength}`, DIAG.ARTICLE_TOO_LONG)
    this.checkVolume(t, a.length)
    await t.incoming.append(a)
    t.incoming.countArticle()
  }

  private async piece (t: Transfer, data: Uint8Array, last: boolean): Promise<void> {
    const len = this.segment! + data.length
    this.checkArticleLength(t, len)
    if (last && t.articleFormat === 0 && len !== t.articleLength) throw new PesitError(`fixed article of ${len} bytes, expected ${t.articleLength}`, DIAG.ARTICLE_TOO_LONG)
    this.checkVolume(t, data.length)
    await t.incoming.append(data)
    if (last) {
      t.incoming.countArticle()
      this.segment = undefined
    } else {
      this.segment = len
    }
  }

  /**
   * SYN: the data up to here is handed to the file at once and the sync point queued; the queue is made durable by
   * one task, a group at a time (one data fsync and one checkpoint for all the points queued meanwhile, the last
   * one's), then each point of the group is acknowledged. Reading goes on while the disk works, so the window the
   * requester sees is bounded by the disk's throughput, not by its latency, and nothing is acknowledged before it
   * is durable.
   */
  async onSyn (f: Fpdu): Promise<void> {
    const t = this.transfer!
    const n = getNumber(f.params, 20)!
    if (this.host.sync().intervalKb === 0) throw new ProtocolError('SYN without negotiated sync points', DIAG.SYNC_NEGOTIATION)
    if (this.segment !== undefined) throw new ProtocolError('SYN inside a segmented article')
    if (n !== this.lastSyn(t) + 1) throw new ProtocolError(`SYN ${n} after ${this.lastSyn(t)}`)
    if (this.checkpointError !== undefined) await this.settleCheckpoint()
    if (this.interruptPending()) return
    this.synReceived = n
    const at = await t.incoming.handOff()
    this.bytesSinceSync = 0
    this.syncQueue.push({ n, offset: at.offset, articles: at.articles })
    if (this.checkpointInFlight) return
    this.checkpointInFlight = true
    this.pendingCheckpoint = this.drainSyncQueue(t).catch((err: unknown) => {
      this.checkpointError ??= err
      // The main loop may be waiting for the requester (who waits for an ACK): end the session from here.
      if (!this.host.isFinished()) void this.host.fail(err)
    })
  }

  private async drainSyncQueue (t: Transfer): Promise<void> {
    try {
      while (this.syncQueue.length > 0 && !this.interruptPending()) {
        const group = this.syncQueue.splice(0)
        await this.completeSyns(t, group.map((g) => g.n), group.at(-1)!)
      }
      // Points that arrived behind our hand-over IDT are never acknowledged: the requester restarts before them.
      this.syncQueue = []
    } finally {
      // Cleared in the same turn as the last look at the queue: a SYN queued after it starts a new task.
      this.checkpointInFlight = false
    }
  }

  /**
   * True when our hand-over IDT went out while this FPDU waited for the checkpoint in flight: the IDT has priority
   * (docs/pesit.md §9.4), so what crossed it is discarded.
   */
  private interruptPending (): boolean {
    return this.host.state() === 'TDX05'
  }

  private lastSyn (t: Transfer): number {
    return Math.max(this.synReceived, t.incoming.syncPoint)
  }

  /** Makes `last` durable (data fsync, checkpoint, journal), then acknowledges every point of `ns`, in order. */
  private async completeSyns (t: Transfer, ns: number[], last: { n: number, offset: number, articles: number }): Promise<void> {
    await t.incoming.checkpointAt(last.n, last.offset, last.articles, () => {
      if (!this.host.ctx.leadership.isLeader()) throw new NotLeaderError('write a checkpoint')
      if (last.n >= PAUSED_CHECKPOINT && !t.incoming.resumed && this.host.ctx.faults?.has('pause-before-checkpoint') === true) pauseOnce('pause-before-checkpoint')
    })
    this.reportBytes(t, last.offset)
    // A journal that refuses the sync point (lease lost, replication failed) stops the ACK and the session.
    if (!t.replay) {
      try {
        await this.host.ctx.journal.syncPoint(t.journalId, { syncPoint: last.n, offset: last.offset, articles: last.articles })
      } catch (err) {
        throw new PesitError(`the transfer journal refused sync point ${last.n}`, DIAG.SYSTEM_ERROR, { cause: err })
      }
    }
    if (this.host.stopping() === 'abort' || this.host.isFinished()) throw new ConnectionLostError('session stopping')
    if (this.host.sync().window > 0) {
      if (!this.host.ctx.leadership.isLeader()) throw new NotLeaderError('acknowledge a sync point')
      // Acknowledgements are cumulative; each point still gets its own, for peers that count them.
      for (const n of ns) await this.host.send('ACK_SYN', { 20: n })
    }
    if (this.host.stopping() === 'handover' && this.host.state() === 'TDE02') {
      // Restartable interruption right after a durable sync point: the requester resumes from it elsewhere.
      this.host.log.info({ syncPoint: last.n }, 'hand-over: interrupting the transfer')
      this.host.setState('TDX05')
      await this.host.send('IDT', { 2: DIAG.VOLUNTARY_STOP, 19: 4 })
    }
  }

  /** Waits until every queued sync point is durable and acknowledged, rethrowing a failure. */
  async settleCheckpoint (): Promise<void> {
    await this.pendingCheckpoint
    if (this.checkpointError !== undefined) {
      const e = this.checkpointError
      this.checkpointError = undefined
      throw e instanceof Error ? e : new Error('checkpoint failed', { cause: e })
    }
  }

  async onDtfEnd (f: Fpdu): Promise<void> {
    if (this.segment !== undefined) throw new ProtocolError('DTF.END inside a segmented article')
    await this.settleCheckpoint()
    if (this.interruptPending()) return
    const diag = getDiagnostic(f.params) ?? DIAG.OK
    if (!isSuccess(diag)) this.transfer!.dtfEndDiag = diag
    this.host.setState('TDE07')
  }

  async onTransEnd (f: Fpdu): Promise<void> {
    await this.settleCheckpoint()
    if (this.interruptPending()) return
    const t = this.transfer!
    const inc = t.incoming
    const counts: Params = { 27: inc.bytes, 28: inc.articles }
    const bytes = getNumber(f.params, 27)
    const articles = getNumber(f.params, 28)
    this.host.setState('OF02')
    if (t.dtfEndDiag !== undefined) {
      // The sender reported a failure in DTF.END: keep the restart context, do not deliver.
      await inc.syncData().catch(() => {})
      await this.host.send('ACK_TRANS_END', { 2: DIAG.ABNORMAL_END, ...counts })
      await this.release('failed', t.dtfEndDiag, 'sender reported a failure in DTF.END')
      return
    }
    if ((bytes !== undefined && bytes !== inc.bytes) || (articles !== undefined && articles !== inc.articles)) {
      this.host.log.warn({ announced: { bytes, articles }, received: { bytes: inc.bytes, articles: inc.articles } }, 'byte or article count mismatch')
      await this.host.send('ACK_TRANS_END', { 2: DIAG.BAD_COUNT, ...counts })
      await inc.discard()
      await this.release('failed', DIAG.BAD_COUNT, 'byte or article count mismatch')
      return
    }
    let path: string
    try {
      path = await inc.commit(t.finalName, () => {
        if (!this.host.ctx.leadership.isLeader()) throw new NotLeaderError('rename a received file')
        if (!t.replay && this.host.ctx.faults?.has('pause-before-rename') === true) pauseHere('pause-before-rename')
      }, t.announcedKb)
    } catch (err) {
      if (!t.replay || !(err instanceof PesitError)) throw err
      await this.host.send('ACK_TRANS_END', { 2: err.diagnostic, ...counts })
      await this.release('failed', err.diagnostic, err.message)
      return
    }
    t.done = true
    if (!t.replay && this.host.ctx.faults?.has('kill-after-rename') === true) killHere('kill-after-rename')
    if (t.replay) {
      // The row of the delivery, left unfinished by a leader that died before completing it, is completed now.
      const partner = this.host.partner().id
      await this.host.journal(async (j) => await j.deliveredAgain({
        pesitTransferId: t.transferId, direction: 'receive', server: this.host.ctx.server.id, partner, file: t.file.id, path,
        restart: true, startSyncPoint: 0, startOffset: 0
      }, { bytes: inc.bytes, sha256: inc.sha256(), path }))
    }
    if (!t.replay) {
      // Journaled before the acknowledgement: with VECTIS_REPLICATION=sync the ACK waits for a majority to hold the
      // row. Any other journal failure is logged only: the file and its completion record are durable.
      await this.host.journal(async (j) => await j.end(t.journalId, { status: 'completed', bytes: inc.bytes, articles: inc.articles, path, sha256: inc.sha256() }))
    }
    if (!this.host.ctx.leadership.isLeader()) throw new NotLeaderError('acknowledge TRANS.END')
    await this.host.send('ACK_TRANS_END', { 2: DIAG.OK, ...counts })
    this.reportBytes(t)
    if (t.replay) {
      this.host.log.info({ transferId: t.transferId, path, bytes: inc.bytes, articles: inc.articles }, 'delivery confirmed again to a requester that restarted a transfer already received')
    } else {
      this.host.log.info({ transferId: t.transferId, path, bytes: inc.bytes, articles: inc.articles }, 'file received')
      this.host.ctx.metrics.transferEnded?.('receive', 'completed', { durationSeconds: secondsSince(t.startedAt) })
    }
    this.host.ctx.activeTransfers.delete(t.key)
    this.transfer = undefined
  }

  private reportBytes (t: Transfer, upTo = t.incoming.bytes): void {
    if (t.replay) return // compared, not stored
    const delta = upTo - t.reportedBytes
    if (delta > 0) this.host.ctx.metrics.transferBytes?.('receive', delta)
    t.reportedBytes = Math.max(t.reportedBytes, upTo)
  }

  /** Closes an unfinished transfer, keeping its partial file and checkpoint for a restart. */
  async release (status: TransferOutcome, diag: Diagnostic, message: string): Promise<void> {
    const t = this.transfer
    if (t === undefined) return
    this.transfer = undefined
    await this.pendingCheckpoint
    this.host.ctx.activeTransfers.delete(t.key)
    await t.incoming.closeHandle()
    if (t.done || t.replay) return
    this.reportBytes(t)
    await this.host.journal(async (j) => await j.end(t.journalId, {
      status, bytes: t.incoming.bytes, articles: t.incoming.articles, diagnostic: describeDiagnostic(diag), message
    }))
    this.host.ctx.metrics.transferEnded?.('receive', status, { durationSeconds: secondsSince(t.startedAt), diagnostic: diagnosticLabel(diag) })
  }
}

function secondsSince (t: number): number { return (performance.now() - t) / 1000 }
