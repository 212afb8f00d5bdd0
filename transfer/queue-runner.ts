/**
 * The leader's runner of the transfer queue (docs/design.md §5.8): while this member leads, it starts the queued
 * transfers whose time has come, urgent first, at most `maxConnections` at a time per partner, as a PeSIT requester
 * (push.ts for a send; pull.ts for a fetch), and records each attempt's fate in the journal:
 *
 * - completed: the partner confirmed the file (ACK(TRANS.END));
 * - back in the queue with a back-off (1 s doubling up to 60 s, ±20 % jitter) on a connection error, an interruption,
 *   or a diagnostic that means "try later" (resources, D2-207 file busy: a paused ex-leader may still hold the
 *   partner's session, congestion, network);
 * - failed, with its diagnostic and no retry, on one that means "refused" (authentication, access, unknown file or
 *   partner, bad parameters);
 * - unconfirmed when a restart is answered D2-204 (the partner has a file of that name): it may have completed the
 *   transfer whose end this cluster never saw; resending blindly could store it twice.
 *
 * Every attempt uses the row's PI 13; once the partner acknowledged a sync point (each is journaled), the next
 * attempt is a PeSIT restart from it with the spacing those sync points show: a new leader continues its
 * predecessor's transfers, and a partner never stores a file twice because of a failover. A partner that cannot
 * restart (D2-214, D2-228, D2-233: it lost its context) gets the file again from the start.
 *
 * Leadership: the runner starts attempts only while `isLeader()` holds right before; demoted, it aborts its attempts
 * (the connection is cut: the partner keeps its restart point) and a new leader requeues the attempts its predecessor
 * left in progress. Journal writes are lease-checked too (Journal.setLeaderCheck).
 */
import { createHash } from 'node:crypto'
import { createReadStream, readFileSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import type { Logger } from '../common/logger.js'
import type { Startable } from '../common/lifecycle.js'
import { whileLeader, type Leadership } from '../cluster/leadership-api.js'
import type { TransferRecord } from '../store/journal-records.js'
import { basename, dirname, join } from 'node:path'
import type { DurableFs } from '../store/durable-fs.js'
import { directoryFor, finalFileName, type PartnerOutbound, type PesitFileConfig, type PesitPartnerConfig } from './config-types.js'
import { DIAG, formatDiagnostic, type Diagnostic } from './diagnostics.js'
import type { TransferProgressPort } from './ports.js'
import { PeerRefusalError, PesitConfigError, PesitError } from './errors.js'
import { partialPathOf, pullFile, type PullCheckpoint } from './pull.js'
import { pushFile, PushInterruptedError } from './push.js'
import { QUEUED_ARTICLE_SIZE, QUEUED_ARTICLES_PER_SYNC } from './queued-send.js'
import { tlsConnector, type RequesterOptions } from './requester-session.js'
import { applyAfterSend, identityOf, identityString } from './send-source.js'

/** What the runner needs of the journal and its queue (store/journal.ts, store/transfer-queue.ts). */
export interface QueueJournal {
  due(nowMs: number, limit: number, skipPartners?: readonly string[]): TransferRecord[]
  nextDueAt(skipPartners?: readonly string[]): number | undefined
  running(): TransferRecord[]
  get(id: string): TransferRecord | undefined
  start(id: string, a: { member: string, epoch: number, source?: string, filePath?: string }): TransferRecord
  retryLater(id: string, why: { diagnostic: string, at: number }): TransferRecord
  unconfirmed(id: string, diagnostic: string): TransferRecord
  recordSyncPoint(id: string, u: { syncPoint: number, offset: number }): TransferRecord
  agreed(id: string, articlesPerSync: number): TransferRecord
  forgetRestart(id: string): TransferRecord
  complete(id: string, r: { bytes: number, sha256: string }): TransferRecord
  fail(id: string, diagnostic: string): TransferRecord
}

export interface QueueRunnerComponents {
  logger: Logger
  leadership: Pick<Leadership, 'isLeader' | 'currentEpoch' | 'events'>
  /** resolves once a new leader may write its journal (VECTIS_REPLICATION=sync: caught up from the members) */
  leaderReady?: () => Promise<void>
  journal: () => QueueJournal
  partners: ReadonlyMap<string, PesitPartnerConfig>
  /** local virtual files: where a fetch lands, the after-send action of a scheduled send */
  files: ReadonlyMap<string, PesitFileConfig>
  fs: DurableFs
  /**
   * Resolves once the journal up to `seq` is on a majority of the members (rejects after a while): a row is started,
   * and a scheduled send's file moved or deleted, only once what led to it cannot be lost with this leader.
   */
  durable?: (seq: number) => Promise<void>
  /** live progress of the attempts, for the consoles (the daemon's ProgressCollector) */
  progress?: TransferProgressPort
  /** after each attempt ends (metrics): its direction and outcome */
  onAttempt?: (direction: 'send' | 'receive', outcome: QueueOutcome) => void
}

export interface QueueRunnerInit {
  member: string
  /** back-off of retries: first delay, cap (ms) */
  retryBaseMs?: number
  retryMaxMs?: number
  /** the watchdog of each PeSIT answer */
  timeoutMs?: number
  /** wall-clock ms (tests) */
  now?: () => number
}

/** How long a cancelled send's partner has to answer its IDT before the connection is cut. */
const CANCEL_GRACE_MS = 30_000

/** How an attempt of a queued transfer ended: `retry` is back in the queue. */
export const QUEUE_OUTCOMES = ['completed', 'retry', 'failed', 'unconfirmed', 'cancelled'] as const
export type QueueOutcome = typeof QUEUE_OUTCOMES[number]

/** Diagnostics that mean "refused": no retry can succeed without an operator. */
const REFUSALS = new Set(['2-200', '2-205', '2-210', '2-226', '3-301', '3-304', '3-305', '3-307', '3-308', '3-318'])
/** Diagnostics of a partner that cannot restart: restart negotiation, unknown sync point, no restart context. */
const RESTART_REFUSALS = new Set(['2-214', '2-228', '2-233'])
const key = (d: Diagnostic): string => `${d.type}-${d.reason}`

export class QueueRunner implements Startable {
  private readonly log: Logger
  private readonly attempts = new Set<Promise<void>>()
  /** Attempts running here: `abort` cuts the connection, `cancel` stops a send with IDT first. */
  private readonly running = new Map<string, { partner: string, abort: AbortController, cancel: AbortController }>()
  private readonly offs: Array<() => void> = []
  private timer: ReturnType<typeof setTimeout> | undefined
  private active = false
  private stopped = true
  private readonly now: () => number

  constructor (private readonly c: QueueRunnerComponents, private readonly init: QueueRunnerInit) {
    this.log = c.logger.child({ component: 'transfer:queue' })
    this.now = init.now ?? Date.now
  }

  async start (): Promise<void> {
    this.stopped = false
    this.offs.push(whileLeader(this.c.leadership, { elected: () => { this.activate() }, demoted: () => { this.deactivate('no longer the leader') } }))
  }

  async stop (): Promise<void> {
    this.stopped = true
    for (const off of this.offs.splice(0)) off()
    this.deactivate('stopping')
    // The aborted attempts unwind before the store they write to closes.
    await Promise.allSettled([...this.attempts])
  }

  /** Something was queued or cancelled: look at the queue now rather than at the next timer. */
  wake (): void {
    if (this.active) this.schedule(0)
  }

  /**
   * An operator cancelled `id` (already final in the journal): its attempt, if one runs here, stops. A send or a
   * fetch in its data phase ends with IDT (cancelled by the requester) and a clean close, a send before it with
   * RELEASE; an attempt whose partner does not answer within CANCEL_GRACE_MS has its connection cut.
   */
  cancelled (id: string): void {
    const r = this.running.get(id)
    if (r === undefined) return
    r.cancel.abort(new Error('cancelled'))
    setTimeout(() => { r.abort.abort(new Error('cancelled')) }, CANCEL_GRACE_MS).unref()
  }

  private activate (): void {
    if (this.stopped || this.active) return
    this.active = true
    void (this.c.leaderReady?.() ?? Promise.resolve()).then(() => { this.resume() }, (err: unknown) => {
      this.log.warn({ err }, 'the journal did not settle: the queue waits for the next leadership')
    })
  }

  /** The attempts a previous leader left running go back to the queue; then the queue runs. */
  private resume (): void {
    if (!this.active) return
    // Their connections died with that leader, or are about to be cut by the partner: each restarts from its last
    // acknowledged sync point.
    try {
      const j = this.c.journal()
      for (const r of j.running()) {
        if (this.running.has(r.id)) continue
        j.retryLater(r.id, { diagnostic: `${formatDiagnostic(DIAG.NETWORK_INCIDENT)}: the member that ran it (${r.member}) no longer does`, at: this.now() })
      }
    } catch (err) {
      this.log.warn({ err }, 'could not requeue the attempts left running; retrying')
    }
    this.log.info('running the transfer queue')
    this.schedule(0)
  }

  private deactivate (why: string): void {
    if (!this.active) return
    this.active = false
    clearTimeout(this.timer)
    this.timer = undefined
    for (const r of this.running.values()) r.abort.abort(new Error(why))
    this.log.info({ reason: why, interrupted: this.running.size }, 'stopped running the transfer queue')
  }

  private schedule (delayMs: number): void {
    if (!this.active) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { this.timer = undefined; this.pump() }, Math.max(0, Math.min(delayMs, 60_000)))
    this.timer.unref?.()
  }

  /**
   * Starts what is due and may run now; sets the timer for the next. Rows of partners whose connections are all in
   * use are not read (the end of one of their attempts wakes the queue), so one busy partner does not hold up the
   * others, and due rows that must wait do not make the timer fire at once again.
   */
  private pump (): void {
    if (!this.active) return
    if (!this.c.leadership.isLeader()) {
      // A lease being renewed: the demotion, if it comes, stops the queue.
      this.schedule(1000)
      return
    }
    let j: QueueJournal
    try {
      j = this.c.journal()
    } catch {
      this.schedule(1000)
      return
    }
    const now = this.now()
    const busy = (): string[] => [...this.c.partners.values()].filter((p) => p.outbound !== undefined && this.busyWith(p.id) >= p.outbound.maxConnections).map((p) => p.id)
    let full = busy()
    for (const row of j.due(now, 200, full)) {
      if (this.running.has(row.id) || full.includes(row.partner)) continue
      const partner = this.c.partners.get(row.partner)
      if (partner?.outbound === undefined) {
        this.settle(row, () => j.fail(row.id, `${formatDiagnostic(DIAG.CALLED_UNKNOWN)}: partner ${row.partner} is not configured with a host to call`), 'failed')
        continue
      }
      this.launch(j, row, partner.outbound)
      if (this.busyWith(row.partner) >= partner.outbound.maxConnections) full = busy()
    }
    const next = j.nextDueAt(full)
    if (next !== undefined) this.schedule(Math.max(next - this.now(), 50))
  }

  private busyWith (partner: string): number {
    let n = 0
    for (const r of this.running.values()) if (r.partner === partner) n++
    return n
  }

  private launch (j: QueueJournal, row: TransferRecord, out: PartnerOutbound): void {
    const abort = new AbortController()
    const cancel = new AbortController()
    this.running.set(row.id, { partner: row.partner, abort, cancel })
    const done = this.attempt(j, row, out, abort.signal, cancel.signal)
      .catch((err: unknown) => { this.log.error({ err, transfer: row.id }, 'a queued transfer\'s attempt failed unexpectedly') })
      .finally(() => {
        this.running.delete(row.id)
        this.attempts.delete(done)
        this.unsettled(row.id)
        this.wake()
      })
    this.attempts.add(done)
  }

  /**
   * An attempt that ended without recording its end (its write failed, or its leadership wavered and came back):
   * while this member leads, the row goes back to the queue rather than stay in progress with nothing running it.
   */
  private unsettled (id: string): void {
    if (!this.active || this.stopped || !this.c.leadership.isLeader()) return
    try {
      const j = this.c.journal()
      if (j.get(id)?.status !== 'in-progress') return
      j.retryLater(id, { diagnostic: `${formatDiagnostic(DIAG.NETWORK_INCIDENT)}: the attempt ended without a result`, at: this.now() + 1000 })
    } catch (err) {
      this.log.warn({ err, transfer: id }, 'could not requeue an attempt that ended without a result')
    }
  }

  private async attempt (j: QueueJournal, row: TransferRecord, out: PartnerOutbound, signal: AbortSignal, cancel: AbortSignal): Promise<void> {
    const log = this.log.child({ transfer: row.id, partner: row.partner, file: row.virtualFile })
    try {
      await this.c.durable?.(row.seq)
    } catch (err) {
      // Not on a majority yet (a schedule's row just written, members slow): the next pump tries again.
      log.debug({ err }, 'the row is not yet on a majority of the members: not started')
      return
    }
    if (cancel.aborted) return
    if (row.direction === 'send') await this.send(j, row, out, signal, cancel, log)
    else await this.fetch(j, row, out, signal, cancel, log)
  }

  /** The PeSIT options every attempt to `out` shares. */
  private requester (out: PartnerOutbound, file: string, signal: AbortSignal, log: Logger): RequesterOptions {
    return {
      host: out.host,
      port: out.port,
      partner: out.localId,
      password: out.password,
      server: out.serverId,
      file,
      timeoutMs: this.init.timeoutMs ?? 30_000,
      signal,
      logger: log,
      ...(out.tls !== undefined ? { connect: tlsConnector(out, readTls(out.tls)) } : {})
    }
  }

  private async send (j: QueueJournal, row: TransferRecord, out: PartnerOutbound, signal: AbortSignal, cancel: AbortSignal, log: Logger): Promise<void> {
    const epoch = this.c.leadership.currentEpoch()?.number ?? 0
    const path = row.filePath!
    let source: string
    try {
      source = identityString(identityOf({ ...(await stat(path)), isFile: true }))
    } catch (err) {
      this.settle(row, () => j.fail(row.id, `${formatDiagnostic(DIAG.FILE_NOT_FOUND)}: cannot read ${path}: ${(err as Error).message}`), 'failed')
      return
    }
    if (!this.c.leadership.isLeader() || signal.aborted) return
    const articleSize = row.request?.articleSize ?? 4096
    // Once an attempt agreed a sync spacing with the partner, every later one is a restart with it, and the partner's
    // restart point decides where it resumes (it may have made sync points durable from bytes still in flight when
    // the attempt died, acknowledgements this cluster never saw; 0 when it has nothing). The acknowledged sync
    // points show the spacing too. Before any agreement, the same PI 13 from the start.
    const articlesPerSync = row.syncPoint > 0 ? row.syncOffset / (row.syncPoint * articleSize) : row.request?.agreedArticlesPerSync ?? 0
    const restart = row.attempts > 0 && Number.isInteger(articlesPerSync) && articlesPerSync > 0
    try {
      j.start(row.id, { member: this.init.member, epoch, source })
    } catch (err) {
      // Its source changed since an attempt started: never sent mixed.
      if ((err as Error).message.includes('source changed')) this.settle(row, () => j.fail(row.id, `${formatDiagnostic(DIAG.FILE_MODIFIED)}: ${path} changed since the first attempt`), 'failed')
      else log.warn({ err }, 'could not start the attempt')
      return
    }
    log.info({ attempt: row.attempts + 1, restart, fromSyncPoint: row.syncPoint }, 'sending a queued file')
    let acknowledged = row.syncPoint
    try {
      const r = await pushFile({
        ...this.requester(out, row.virtualFile, signal, log),
        source: path,
        transferId: row.transferId,
        articleSize,
        syncIntervalKb: Math.ceil((row.request?.articlesPerSync ?? 0) * articleSize / 1024),
        ...(restart ? { restart: { articlesPerSync } } : {}),
        cancel,
        onAgreed: (agreed) => {
          if (!this.c.leadership.isLeader()) throw new Error('no longer the leader')
          j.agreed(row.id, agreed)
        },
        onProgress: (p) => {
          // What the partner acknowledged, for the consoles (what was written may still sit in the sockets' buffers).
          this.c.progress?.update(row.id, { bytes: Math.max(p.acknowledgedBytes, row.syncOffset), expectedBytes: p.total })
          // Cancelled: the row is final already, and the push is stopping with IDT.
          if (p.acknowledgedSyncPoint <= acknowledged || cancel.aborted) return
          acknowledged = p.acknowledgedSyncPoint
          // A demoted leader stops here: the write is lease-checked, and so is this.
          if (!this.c.leadership.isLeader()) throw new Error('no longer the leader')
          j.recordSyncPoint(row.id, { syncPoint: p.acknowledgedSyncPoint, offset: p.acknowledgedBytes })
        }
      })
      const sha256 = await sha256Of(path)
      const done = this.settle(row, () => j.complete(row.id, { bytes: r.bytes, sha256 }), 'completed')
      log.info({ bytes: r.bytes, resumedAt: r.startOffset }, 'queued file sent')
      // Moved or deleted only once the completion is recorded on a majority: a new leader never finds the row in
      // progress with its source gone.
      if (!done) return
      const seq = j.get(row.id)?.seq
      if (seq !== undefined) {
        try {
          await this.c.durable?.(seq)
        } catch (err) {
          log.warn({ err }, 'the completion is not yet on a majority: the after-send action is left to the schedule\'s next run')
          return
        }
      }
    } catch (err) {
      if (restart && err instanceof PesitConfigError) {
        // The partner now agrees another spacing (its configuration changed): the restart cannot map its points.
        log.warn({ err: err.message }, 'the transfer cannot be restarted with the spacing agreed before: the next attempt starts from the beginning')
        this.settle(row, () => { j.forgetRestart(row.id); j.retryLater(row.id, { diagnostic: `${formatDiagnostic(DIAG.RESTART_NEGOTIATION)}: ${err.message}`, at: this.now() }) }, 'retry')
        return
      }
      this.ended(j, row, err, signal, log)
      return
    }
    await this.afterSend(row, path, log)
  }

  /**
   * A scheduled send's local virtual file may say what to do with a file once the partner has it (`afterSend`):
   * done once the row is completed, by the leader. A leader that dies in between leaves it to the schedule's next
   * run, which finds the file sent (docs/contract.md §5.5).
   */
  private async afterSend (row: TransferRecord, path: string, log: Logger): Promise<void> {
    const file = row.request?.localFile === undefined ? undefined : this.c.files.get(row.request.localFile)
    if (file?.afterSend === undefined || file.afterSend.action === 'keep') return
    if (!this.c.leadership.isLeader()) {
      log.warn({ path }, 'after-send action left to the next leader: not leader any more')
      return
    }
    try {
      const to = await applyAfterSend(this.c.fs, file.afterSend, dirname(path), basename(path), row.partner, row.transferId)
      log.info({ path, action: file.afterSend.action, to }, 'after-send action done')
    } catch (err) {
      log.error({ err, path }, 'after-send action failed; the schedule\'s next run retries it')
    }
  }

  /**
   * A fetch lands in the `into` virtual file's directory under its pattern's name (with this row's PI 13), through
   * the pull's hidden partial file. Its restart state (the server's PI 13 and the last checkpoint made durable) is a
   * small file beside it in the shared directory, written before each ACK(SYN), so any member can restart it.
   */
  private async fetch (j: QueueJournal, row: TransferRecord, out: PartnerOutbound, signal: AbortSignal, cancel: AbortSignal, log: Logger): Promise<void> {
    const epoch = this.c.leadership.currentEpoch()?.number ?? 0
    const into = row.request?.into === undefined ? undefined : this.c.files.get(row.request.into)
    if (into === undefined || into.direction === 'send') {
      this.settle(row, () => j.fail(row.id, `${formatDiagnostic(DIAG.CANNOT_OPEN)}: ${row.request?.into ?? '(none)'} is not a local receive virtual file`), 'failed')
      return
    }
    const destination = row.filePath ?? join(directoryFor(into.directory, row.partner), finalFileName(into.filenamePattern, { partner: row.partner, file: into.id, transferId: row.transferId }))
    const statePath = fetchStatePath(destination)
    if (!this.c.leadership.isLeader() || signal.aborted) return
    try {
      j.start(row.id, { member: this.init.member, epoch, filePath: destination })
    } catch (err) {
      log.warn({ err }, 'could not start the attempt')
      return
    }
    const saved = await readFetchState(this.c.fs, statePath)
    if (await this.c.fs.exists(destination)) {
      // Delivered here by an attempt of this row whose end was not recorded (the rename comes before TRANS.END, and
      // its restart state is removed only after the row completed): done. Any other file under that name is not this
      // fetch's: never taken for it, never overwritten.
      if (saved === undefined) {
        this.settle(row, () => j.fail(row.id, `${formatDiagnostic(DIAG.FILE_EXISTS)}: ${destination} exists and is not this fetch's: give the receive virtual file a filenamePattern with \${transferId}`), 'failed')
        return
      }
      const sha256 = await sha256Of(destination)
      const bytes = (await stat(destination)).size
      if (this.settle(row, () => j.complete(row.id, { bytes, sha256 }), 'completed')) {
        await this.c.fs.unlink(statePath).catch(() => {})
        await removeStateTemporaries(this.c.fs, statePath, log)
      }
      log.info({ path: destination }, 'queued fetch found delivered by an earlier attempt')
      return
    }
    log.info({ attempt: row.attempts + 1, restart: saved?.serverTransferId !== undefined, fromSyncPoint: saved?.checkpoint.syncPoint ?? 0 }, 'fetching a queued file')
    try {
      await this.c.fs.mkdirp(dirname(destination))
      const r = await pullFile({
        ...this.requester(out, row.virtualFile, signal, log),
        destination,
        cancel,
        ...(row.request?.remoteName !== undefined ? { name: row.request.remoteName } : {}),
        syncIntervalKb: Math.ceil(QUEUED_ARTICLES_PER_SYNC * QUEUED_ARTICLE_SIZE / 1024),
        ...(saved?.serverTransferId !== undefined ? { restart: { transferId: saved.serverTransferId, checkpoint: saved.checkpoint, path: destination } } : {}),
        onSelected: async (s) => {
          if (!this.c.leadership.isLeader()) throw new Error('no longer the leader')
          await writeFetchState(this.c.fs, statePath, { serverTransferId: s.transferId, checkpoint: saved?.checkpoint ?? { syncPoint: 0, offset: 0, articles: 0 } })
        },
        onProgress: (p) => { this.c.progress?.update(row.id, { bytes: p.bytes, ...(p.announced > 0 ? { expectedBytes: p.announced } : {}) }) },
        onCheckpoint: async (c) => {
          // Cancelled: the row is final already, and the pull is stopping with IDT.
          if (cancel.aborted) return
          if (!this.c.leadership.isLeader()) throw new Error('no longer the leader')
          const current = await readFetchState(this.c.fs, statePath)
          await writeFetchState(this.c.fs, statePath, { serverTransferId: current?.serverTransferId ?? 0, checkpoint: c })
          j.recordSyncPoint(row.id, { syncPoint: c.syncPoint, offset: c.offset })
        }
      })
      this.settle(row, () => j.complete(row.id, { bytes: r.bytes, sha256: r.sha256 }), 'completed')
      await this.c.fs.unlink(statePath).catch(() => {})
      if (row.attempts > 0) await removeStateTemporaries(this.c.fs, statePath, log)
      log.info({ bytes: r.bytes, resumedAt: r.startOffset, path: r.path }, 'queued file fetched')
    } catch (err) {
      // A partner that cannot restart, or a partial file that no longer matches its restart state (gone, shorter):
      // the whole file is asked for again.
      const restartLost = (err instanceof PeerRefusalError && RESTART_REFUSALS.has(key(err.diagnostic))) || err instanceof PesitConfigError
      if (restartLost && saved !== undefined) await this.discardFetch(destination, log)
      this.ended(j, row, err, signal, log)
      // Ended for good (failed, cancelled, unconfirmed): what it left here goes.
      const now = j.get(row.id)?.status
      if (now !== undefined && now !== 'queued' && now !== 'in-progress') await this.discardFetch(destination, log)
    }
  }

  /** A fetch's partial file, restart state and the temporaries of its writes. */
  private async discardFetch (destination: string, log: Logger): Promise<void> {
    const statePath = fetchStatePath(destination)
    for (const p of [partialPathOf(destination), statePath]) await this.c.fs.unlink(p).catch(() => {})
    await removeStateTemporaries(this.c.fs, statePath, log)
  }

  /** Classifies how an attempt failed and records it. */
  private ended (j: QueueJournal, row: TransferRecord, err: unknown, signal: AbortSignal, log: Logger): void {
    if (j.get(row.id)?.status === 'cancelled') {
      this.c.onAttempt?.(row.direction, 'cancelled')
      log.info('attempt stopped: cancelled')
      return
    }
    const diag = err instanceof PesitError ? err.diagnostic : DIAG.NETWORK_INCIDENT
    const text = `${formatDiagnostic(diag)}: ${(err as Error).message}`
    if (signal.aborted || !this.c.leadership.isLeader()) {
      // Demoted or stopping: the next leader requeues it.
      log.info({ reason: String(signal.reason ?? 'not leader') }, 'attempt stopped with the leadership')
      return
    }
    // D2-204 to a transfer attempted before: the partner may have completed it, its end unseen here.
    if (err instanceof PeerRefusalError && key(diag) === '2-204' && row.attempts > 0) {
      this.settle(row, () => j.unconfirmed(row.id, `${text}: the partner may have the whole file from an earlier attempt; check with it before sending again`), 'unconfirmed')
      return
    }
    if (err instanceof PeerRefusalError && !(err instanceof PushInterruptedError) && (REFUSALS.has(key(diag)) || key(diag) === '2-204')) {
      log.warn({ diagnostic: formatDiagnostic(diag), err: (err as Error).message }, 'the partner refused a queued transfer: not retried')
      this.settle(row, () => j.fail(row.id, text), 'failed')
      return
    }
    const current = j.get(row.id)
    if (err instanceof PeerRefusalError && RESTART_REFUSALS.has(key(diag)) && row.direction === 'send' && (current?.syncPoint !== 0 || current.request?.agreedArticlesPerSync !== undefined)) {
      log.warn({ diagnostic: formatDiagnostic(diag) }, 'the partner cannot restart the transfer: the next attempt starts from the beginning')
      this.settle(row, () => { j.forgetRestart(row.id); j.retryLater(row.id, { diagnostic: text, at: this.now() }) }, 'retry')
      return
    }
    const delay = this.backoff(row.attempts + 1)
    log.warn({ diagnostic: formatDiagnostic(diag), err: (err as Error).message, retryInMs: delay }, 'queued transfer failed: retrying later')
    this.settle(row, () => j.retryLater(row.id, { diagnostic: text, at: this.now() + delay }), 'retry')
  }

  /** `attempts` started so far → the delay before the next: 1 s doubling, capped, ±20 %. */
  private backoff (attempts: number): number {
    const base = this.init.retryBaseMs ?? 1000
    const max = this.init.retryMaxMs ?? 60_000
    const d = Math.min(max, base * 2 ** Math.min(30, Math.max(0, attempts - 1)))
    return Math.round(d * (0.8 + 0.4 * Math.random()))
  }

  /** Records how an attempt ended; false when the write failed (the row is requeued by `unsettled`, or cancelled). */
  private settle (row: TransferRecord, write: () => unknown, outcome: QueueOutcome): boolean {
    try {
      write()
      this.c.onAttempt?.(row.direction, outcome)
      return true
    } catch (err) {
      this.log.warn({ err, transfer: row.id }, 'could not record the end of an attempt')
      return false
    }
  }
}

interface FetchState { serverTransferId: number, checkpoint: PullCheckpoint }

/** Beside the pull's partial file: `.<name>.vectis-fetch`. */
function fetchStatePath (destination: string): string {
  return join(dirname(destination), `.${basename(destination)}.vectis-fetch`)
}

async function readFetchState (fs: DurableFs, path: string): Promise<FetchState | undefined> {
  try {
    const s = JSON.parse(Buffer.from(await fs.readFile(path)).toString('utf8')) as Partial<FetchState>
    const c = s.checkpoint
    if (!Number.isSafeInteger(s.serverTransferId) || s.serverTransferId! < 1 || c === undefined || ![c.syncPoint, c.offset, c.articles].every((n) => Number.isSafeInteger(n) && n >= 0)) return undefined
    return s as FetchState
  } catch {
    return undefined
  }
}

async function writeFetchState (fs: DurableFs, path: string, s: FetchState): Promise<void> {
  await fs.writeFileAtomic(path, Buffer.from(JSON.stringify(s)))
}

/**
 * The temporaries of the restart state's atomic writes (`..<name>.vectis-fetch.<12 hex>.tmp`, durable-fs.ts) that an
 * earlier attempt's member left when it was killed in the middle of one: hidden files in the receive directory that
 * nothing else removes (the PeSIT servers' sweep at a leadership's start knows only their own checkpoints). Called
 * once the fetch is done, when nothing writes its state any more (a deposed member's write that loses its temporary
 * only fails), and only after a retried attempt: the directory is listed for those alone.
 */
async function removeStateTemporaries (fs: DurableFs, statePath: string, log: Logger): Promise<void> {
  const dir = dirname(statePath)
  const prefix = `.${basename(statePath)}.`
  const stale = (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n.startsWith(prefix) && /^[0-9a-f]{12}\.tmp$/.test(n.slice(prefix.length)))
  for (const name of stale) await fs.unlink(join(dir, name)).catch(() => {})
  if (stale.length > 0) log.info({ removed: stale }, 'temporaries of an interrupted restart-state write removed')
}

function readTls (t: NonNullable<PartnerOutbound['tls']>): { ca?: Buffer, cert?: Buffer, key?: Buffer } {
  return {
    ...(t.caFile !== undefined ? { ca: readFileSync(t.caFile) } : {}),
    ...(t.certFile !== undefined && t.keyFile !== undefined ? { cert: readFileSync(t.certFile), key: readFileSync(t.keyFile) } : {})
  }
}

async function sha256Of (path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer)
  return h.digest('hex')
}
