/**
 * The send direction of a server session (docs/pesit.md §17): a partner pulls. SELECT picks the physical file and
 * answers its attributes, READ positions it at the restart point the requester asks for, then the emission
 * (outgoing-transfer.ts) runs while the session keeps reading ACK(SYN), IDT and ABORT; TRANS.END from the requester
 * is compared with what was sent, acknowledged, recorded, and only then is the after-send action applied.
 *
 * Leader-only effects check the lease synchronously right before they happen: serving a SELECT, ACK(TRANS.END)
 * and the after-send action. The journal records the completed send before ACK(TRANS.END) goes out, so an
 * after-send action that could not run (the lease was lost, a crash right after ACK(TRANS.END)) runs when the file
 * is next listed: the journal knows the file was sent.
 */
import { join } from 'node:path'
import type { DurableFile } from '../store/durable-fs.js'
import { getGroup, getNumber, getString, pesitDate, type Fpdu, type Params } from './codec.js'
import { directoryFor, type PesitFileConfig } from './config-types.js'
import { DIAG, describeDiagnostic, diagnosticLabel, isSuccess, type Diagnostic } from './diagnostics.js'
import { NotLeaderError, PesitError } from './errors.js'
import { OutgoingTransfer } from './outgoing-transfer.js'
import type { TransferOutcome } from './ports.js'
import {
  SEND_STATE_VERSION, applyAfterSend, identityOf, identityString, offerableFiles, readSendState, resolveFileRequest,
  sameIdentity, sendStatePath, type Candidate, type SendState
} from './send-source.js'
import type { SessionHost } from './session-host.js'

interface Pull {
  journalId: string
  transferId: number
  file: PesitFileConfig
  directory: string
  path: string
  statePath: string
  handle: DurableFile
  out: OutgoingTransfer
  emitting?: Promise<void>
  dtfEnd?: Diagnostic
  done: boolean
  /** performance.now() at its SELECT */
  startedAt: number
}

/** PI 12 carries at most 76 characters of printable ASCII. */
const PI12 = /^[\x20-\x7e]{1,76}$/

export class SendSide {
  private pull: Pull | undefined

  constructor (private readonly host: SessionHost) {}

  get active (): boolean { return this.pull !== undefined }
  /** the emission runs and is not waiting for an acknowledgement: the requester may rightly be silent */
  get streaming (): boolean { return this.pull?.emitting !== undefined && !this.pull.out.waitingForAck }
  /** sync points are placed, so a hand-over can interrupt at the next one */
  get hasSyncPoints (): boolean { return (this.pull?.out.state.articlesPerSync ?? 0) > 0 }

  async onSelect (f: Fpdu): Promise<void> {
    const { ctx, log } = this.host
    const p = f.params
    const pgi9 = getGroup(p, 9)
    const requested = getString(pgi9, 12) ?? ''
    const transferIdIn = getNumber(p, 13) ?? 0
    const restart = getNumber(p, 15) === 1
    const proposedEntity = getNumber(p, 25) ?? 0
    const refuse = async (diag: Diagnostic, why: string): Promise<void> => {
      log.warn({ diagnostic: describeDiagnostic(diag), why, file: requested, transferId: transferIdIn }, 'SELECT refused')
      await this.host.send('ACK_SELECT', {
        2: diag, 9: { 11: getNumber(pgi9, 11) ?? 0, 12: requested === '' ? '?' : requested }, 13: transferIdIn,
        25: Math.max(6, Math.min(proposedEntity, ctx.server.maxEntitySize))
      })
      this.host.setState('CN03')
    }
    const partner = this.host.partner()
    const requester = getString(pgi9, 3)
    if (requester !== undefined && requester !== partner.id) return await refuse(DIAG.TRANSFER_REFUSED, `PGI 9 names requester ${requester}`)
    const serverId = getString(pgi9, 4)
    if (serverId !== undefined && serverId.toUpperCase() !== ctx.server.id.toUpperCase()) return await refuse(DIAG.TRANSFER_REFUSED, `PGI 9 names server ${serverId}`)
    if (this.host.accessType() === 0 || partner.access === 'write') return await refuse(DIAG.TRANSFER_REFUSED, 'partner may not read')
    const req = resolveFileRequest(requested, ctx.files)
    if ('error' in req) return await refuse(DIAG.FILE_NOT_FOUND, req.why)
    const file = req.file
    if (file.direction === 'receive') return await refuse(DIAG.TRANSFER_REFUSED, `virtual file ${file.id} is receive-only`)
    if (proposedEntity < 64) return await refuse(DIAG.BAD_PARAMETER, `entity size ${proposedEntity}`)
    if (restart && transferIdIn === 0) return await refuse(DIAG.BAD_PARAMETER, 'restart without a transfer id')
    const directory = directoryFor(file.directory, partner.id)

    let picked: { name: string, stat: Candidate['stat'], state?: SendState }
    if (restart) {
      const state = await readSendState(ctx.fs, sendStatePath(directory, { partner: partner.id, file: file.id, transferId: transferIdIn }))
      if (state === undefined) return await refuse(DIAG.NO_RESTART_CONTEXT, `no restart state for transfer ${transferIdIn}`)
      if (req.name !== undefined && req.name !== state.name) return await refuse(DIAG.NO_RESTART_CONTEXT, `transfer ${transferIdIn} sent ${state.name}, not ${req.name}`)
      const stat = await ctx.fs.stat(join(directory, state.name))
      if (stat?.isFile !== true) return await refuse(DIAG.FILE_NOT_FOUND, `${state.name} is gone`)
      if (!sameIdentity(identityOf(stat), state.source)) return await refuse(DIAG.FILE_MODIFIED, `${state.name} changed since the interrupted attempt`)
      picked = { name: state.name, stat, state }
    } else if (req.name !== undefined) {
      const stat = await ctx.fs.stat(join(directory, req.name))
      if (stat?.isFile !== true) return await refuse(DIAG.FILE_NOT_FOUND, `no file ${req.name} in ${file.id}`)
      picked = { name: req.name, stat }
    } else {
      const next = await this.oldestUnsent(file, directory, partner.id)
      if (next === 'busy') return await refuse(DIAG.FILE_BUSY, `every file of ${file.id} not yet sent is being sent`)
      if (next === undefined) return await refuse(DIAG.FILE_NOT_FOUND, `no file of ${file.id} left to send`)
      picked = next
    }
    const path = join(directory, picked.name)
    if (ctx.activeSources.has(path)) return await refuse(DIAG.FILE_BUSY, `${picked.name} is being sent`)
    if (!ctx.leadership.isLeader()) throw new NotLeaderError('serve a SELECT')
    // Reserved in the same turn as the check: a SELECT on another connection now finds it busy.
    ctx.activeSources.add(path)
    const unreserve = async (diag: Diagnostic, why: string): Promise<void> => {
      ctx.activeSources.delete(path)
      await refuse(diag, why)
    }

    const entity = Math.min(proposedEntity, ctx.server.maxEntitySize)
    const state = picked.state ?? newState(this.host.sync().intervalKb, entity, {
      transferId: 0, partner: partner.id, server: ctx.server.id, file: file.id, name: picked.name, source: identityOf(picked.stat)
    })
    let handle: DurableFile
    try {
      handle = await ctx.fs.open(path, 'read')
    } catch (err) {
      log.error({ err, path }, 'cannot open the file to send')
      return await unreserve(DIAG.CANNOT_OPEN, `cannot open ${picked.name}`)
    }
    let started
    try {
      started = await ctx.journal.begin({
        ...(restart ? { pesitTransferId: transferIdIn } : {}), direction: 'send', server: ctx.server.id, partner: partner.id,
        file: file.id, path, source: identityString(state.source), restart, startSyncPoint: 0, startOffset: 0
      })
    } catch (err) {
      log.error({ err }, 'the transfer journal refused the new transfer')
      await handle.close().catch(() => {})
      return await unreserve(DIAG.SYSTEM_RESOURCES, 'journal')
    }
    state.transferId = started.transferId
    const statePath = sendStatePath(directory, { partner: partner.id, file: file.id, transferId: started.transferId })
    const out = new OutgoingTransfer({
      fs: ctx.fs, ch: this.host.ch, peerId: this.host.peerId(), source: handle, path, statePath, state, entity,
      window: this.host.sync().window,
      onBytes: (n) => ctx.metrics.transferBytes?.('send', n),
      onProgress: (bytes) => ctx.progress?.update(started.id, { bytes, expectedBytes: state.source.size })
    })
    this.pull = { journalId: started.id, transferId: started.transferId, file, directory, path, statePath, handle, out, done: false, startedAt: performance.now() }
    const echo = `${file.id}/${picked.name}`
    await this.host.send('ACK_SELECT', {
      2: DIAG.OK, 9: { 11: 0, 12: PI12.test(echo) ? echo : file.id }, 13: started.transferId, 16: 2, 25: entity,
      30: { 31: 0x80, 32: state.articleLength }, 40: { 41: 0, 42: Math.ceil(state.source.size / 1024) },
      50: { 51: pesitDate(new Date(state.source.mtimeMs)) }
    })
    this.host.setState('SF03')
    log.info({ transferId: started.transferId, file: file.id, name: picked.name, bytes: state.source.size, restart, entitySize: entity }, 'file selected for sending')
  }

  /**
   * The oldest offerable file not sent completely to this partner and not being sent; 'busy' when the only ones
   * left are being sent. A file the journal says was sent whose after-send action did not happen gets it now.
   */
  private async oldestUnsent (file: PesitFileConfig, directory: string, partner: string): Promise<Candidate | 'busy' | undefined> {
    const { ctx } = this.host
    let busy = false
    for (const c of await offerableFiles(ctx.fs, directory)) {
      if (ctx.activeSources.has(c.path)) {
        busy = true
        continue
      }
      if (await ctx.journal.wasSent({ partner, file: file.id, path: c.path, source: identityString(identityOf(c.stat)) })) {
        if (file.afterSend !== undefined && file.afterSend.action !== 'keep') await this.afterSend(file, directory, c.name, partner, 0, 'late')
        continue
      }
      return c
    }
    return busy ? 'busy' : undefined
  }

  async onRead (f: Fpdu, interrupted: boolean): Promise<void> {
    const pull = this.pull
    const p = getNumber(f.params, 18) ?? 0
    if (pull === undefined || pull.emitting !== undefined || interrupted) {
      await this.host.send('ACK_READ', { 2: DIAG.CANNOT_OPEN })
      return
    }
    const refusal = await pull.out.position(p)
    if (refusal !== undefined) {
      this.host.log.warn({ restartPoint: p, durable: pull.out.state.syncPoint, diagnostic: describeDiagnostic(refusal) }, 'READ refused')
      await this.host.send('ACK_READ', { 2: refusal })
      return
    }
    if (p > 0) {
      const out = pull.out
      await this.host.journal(async (j) => { await j.syncPoint(pull.journalId, { syncPoint: p, offset: out.bytes, articles: out.articles }) })
    }
    await this.host.send('ACK_READ', { 2: DIAG.OK })
    this.host.setState('TDL02')
    this.host.log.info({ transferId: pull.transferId, restartPoint: p, offset: pull.out.bytes }, 'sending')
    pull.emitting = pull.out.emit(() => this.host.handingOver(), () => { this.host.setState('TDL07') }).then(async (end) => {
      if (end.kind === 'ended') {
        pull.dtfEnd = end.diagnostic
      } else if (end.kind === 'interrupt-after-sync') {
        this.host.log.info({ syncPoint: end.syncPoint }, 'hand-over: interrupting the transfer')
        this.host.setState('TDX05')
        await this.host.send('IDT', { 2: DIAG.VOLUNTARY_STOP, 19: 4 })
      }
    }).catch(async (err: unknown) => {
      if (this.pull === pull) await this.host.fail(err)
    })
  }

  onAckSyn (f: Fpdu): void {
    this.pull?.out.ack(getNumber(f.params, 20) ?? 0)
  }

  /** Stops the emission (IDT or ABORT from the requester) and waits until it wrote its last entity. */
  async stopEmitting (): Promise<void> {
    const pull = this.pull
    if (pull === undefined) return
    pull.out.stop()
    await pull.emitting
  }

  /** TRANS.END of a pull: counts compared, the journal, ACK(TRANS.END), then the after-send action. */
  async onTransEnd (f: Fpdu): Promise<void> {
    const { ctx, log } = this.host
    const pull = this.pull!
    const out = pull.out
    await pull.emitting
    this.host.setState('OF02')
    const counts: Params = { 27: out.bytes, 28: out.articles }
    const bytes = getNumber(f.params, 27)
    const articles = getNumber(f.params, 28)
    if (pull.dtfEnd !== undefined && !isSuccess(pull.dtfEnd)) {
      await this.host.send('ACK_TRANS_END', { 2: DIAG.ABNORMAL_END, ...counts })
      return await this.release('failed', pull.dtfEnd, 'the file changed while it was being sent')
    }
    if ((bytes !== undefined && bytes !== out.bytes) || (articles !== undefined && articles !== out.articles)) {
      log.warn({ announced: { bytes, articles }, sent: { bytes: out.bytes, articles: out.articles } }, 'byte or article count mismatch')
      await this.host.send('ACK_TRANS_END', { 2: DIAG.BAD_COUNT, ...counts })
      return await this.release('failed', DIAG.BAD_COUNT, 'byte or article count mismatch')
    }
    if (!ctx.leadership.isLeader()) throw new NotLeaderError('acknowledge TRANS.END')
    // Recorded before it is acknowledged: a send the journal did not know would be offered to the partner again.
    try {
      await ctx.journal.end(pull.journalId, { status: 'completed', bytes: out.bytes, articles: out.articles, path: pull.path, sha256: out.sha256() })
    } catch (err) {
      throw new PesitError('the transfer journal refused the end of the transfer', DIAG.SYSTEM_ERROR, { cause: err })
    }
    pull.done = true
    if (!ctx.leadership.isLeader()) throw new NotLeaderError('acknowledge TRANS.END')
    await this.host.send('ACK_TRANS_END', { 2: DIAG.OK, ...counts })
    log.info({ transferId: pull.transferId, path: pull.path, bytes: out.bytes, articles: out.articles }, 'file sent')
    ctx.metrics.transferEnded?.('send', 'completed', { durationSeconds: (performance.now() - pull.startedAt) / 1000 })
    await ctx.fs.unlink(pull.statePath).catch(() => {})
    const name = pull.path.slice(pull.directory.length + 1)
    if (pull.file.afterSend !== undefined && pull.file.afterSend.action !== 'keep') await this.afterSend(pull.file, pull.directory, name, this.host.partner().id, pull.transferId, 'now')
    // Released last: until the after-send action is done, another SELECT finds the file busy.
    await this.release('completed', DIAG.OK, 'sent')
  }

  private async afterSend (file: PesitFileConfig, directory: string, name: string, partner: string, transferId: number, when: 'now' | 'late'): Promise<void> {
    const log = this.host.log
    if (!this.host.ctx.leadership.isLeader()) {
      log.warn({ name }, 'after-send action left to the next leader: not leader any more')
      return
    }
    try {
      const to = await applyAfterSend(this.host.ctx.fs, file.afterSend, directory, name, partner, transferId)
      log.info({ name, action: file.afterSend?.action, to, late: when === 'late' ? true : undefined }, 'after-send action done')
    } catch (err) {
      log.error({ err, name }, 'after-send action failed; it is retried when the file is next listed')
    }
  }

  /** Ends the pull in progress, if any: its restart state stays for a restart unless it failed for good. */
  async release (status: TransferOutcome, diag: Diagnostic, message: string): Promise<void> {
    const pull = this.pull
    if (pull === undefined) return
    this.pull = undefined
    pull.out.stop()
    await pull.emitting
    this.host.ctx.activeSources.delete(pull.path)
    await pull.handle.close().catch(() => {})
    if (pull.done) return
    const out = pull.out
    await this.host.journal(async (j) => await j.end(pull.journalId, {
      status, bytes: out.bytes, articles: out.articles, diagnostic: describeDiagnostic(diag), message
    }))
    this.host.ctx.metrics.transferEnded?.('send', status, { durationSeconds: (performance.now() - pull.startedAt) / 1000, diagnostic: diagnosticLabel(diag) })
    if (status === 'failed') await this.host.ctx.fs.unlink(pull.statePath).catch(() => {})
  }
}

/**
 * The restart state of a new pull: articles of the entity size less the FPDU header (one mono-article DTF each),
 * at most the sync interval, and a sync point every whole number of articles that fits the interval.
 */
function newState (intervalKb: number, entity: number, base: Omit<SendState, 'version' | 'articleLength' | 'articlesPerSync' | 'syncPoint' | 'updatedAt'>): SendState {
  const interval = intervalKb * 1024
  const articleLength = intervalKb > 0 ? Math.min(entity - 6, interval) : entity - 6
  const articlesPerSync = intervalKb > 0 ? Math.max(1, Math.floor(interval / articleLength)) : 0
  return { version: SEND_STATE_VERSION, ...base, articleLength, articlesPerSync, syncPoint: 0, updatedAt: '' }
}
