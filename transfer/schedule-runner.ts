/**
 * The schedules' runs (docs/contract.md §5.5, docs/design.md §5.8): while this member leads, each schedule of the
 * configuration has a cron job (its expression, in its time zone) whose runs queue sends of the files of a local send
 * virtual file to a partner; the queue's runner (queue-runner.ts) then sends them.
 *
 * A run at scheduled time T lists the schedule's directory (the virtual file's, `${partner}` replaced by the
 * partner), takes the regular files whose names match `pattern` (never hidden or temporary names: `.*`, `*.tmp`,
 * `*.part`), oldest first, and queues a send of each file unless the journal holds a send of that path to the same
 * partner's `remoteFile` that blocks it (`blockingSend`): one that is queued or running (whatever the file's identity
 * then), or a final one (completed, failed, cancelled, unconfirmed) of the same source identity
 * (`<size>:<mtimeMs>:<inode>`). So a file sent is not sent again (`afterSend: keep`), a file that failed for good,
 * was cancelled or ended unconfirmed is not retried by every run, and a file replaced under the same name is sent.
 * Each row records the run, `request.schedule = {id, at: T}`, and the local virtual file (`request.localFile`), whose
 * `afterSend` the runner applies once the partner has the file. A file a run finds sent (a completed send of its
 * identity, none queued or running) still in the directory did not get that action (it failed, or the leader lost its
 * lease or died right after the completion): the run does it then, late, as a partner's pull does (§5.4).
 *
 * A run is identified by (schedule, T), T the cron's time (not the moment the timer fired), so that every member
 * computes the same. A member that becomes leader runs, for each schedule, the latest due time not after now once if
 * the journal records no run of that schedule at or after it (the runs missed while no one led, coalesced into one);
 * if the journal records that very time, the run is completed (a predecessor may have queued part of it before it was
 * lost, or only part of its rows reached this member): only the files modified by T that it did not queue are. Then
 * the cron continues. A run that found nothing to queue leaves no row: a new leader runs it again and finds the same
 * nothing, or files that arrived since, which the next run would have sent.
 *
 * Leadership: jobs exist only while this member leads, once its journal is settled (`leaderReady`); each row is
 * queued only if `isLeader()` holds right before (and the journal's write is lease-checked too).
 */
import { dirname } from 'node:path'
import { Cron } from 'croner'
import type { Logger } from '../common/logger.js'
import type { Startable } from '../common/lifecycle.js'
import { whileLeader, type Leadership } from '../cluster/leadership-api.js'
import { NodeDurableFs, type DurableFs } from '../store/durable-fs.js'
import type { TransferRecord, TransferStatus } from '../store/journal-records.js'
import type { EnqueueInput, SendOfFile } from '../store/transfer-queue.js'
import { directoryFor, type PesitFileConfig, type PesitPartnerConfig, type ScheduleConfig } from './config-types.js'
import { QUEUED_ARTICLE_SIZE, QUEUED_ARTICLES_PER_SYNC } from './queued-send.js'
import { applyAfterSend, identityOf, identityString, offerableFiles } from './send-source.js'

/** What the runs need of the journal's queue (store/transfer-queue.ts). */
export interface ScheduleJournal {
  enqueue(input: EnqueueInput): TransferRecord
  sendsOf(q: { partner: string, remoteFile: string, filePath: string }): SendOfFile[]
  lastScheduledRun(scheduleId: string): string | undefined
}

export interface ScheduleRunnerComponents {
  logger: Logger
  leadership: Pick<Leadership, 'isLeader' | 'currentEpoch' | 'events'>
  /** resolves once a new leader may write its journal (VECTIS_REPLICATION=sync: caught up from the members) */
  leaderReady?: () => Promise<void>
  journal: () => ScheduleJournal
  /** a run queued at least one send: the queue's runner looks at the queue now */
  queued: () => void
  /** the file system the directories are listed with (default: node's) */
  fs?: DurableFs
}

export interface ScheduleRunnerInit {
  member: string
  schedules: readonly ScheduleConfig[]
  files: ReadonlyMap<string, PesitFileConfig>
  partners: ReadonlyMap<string, PesitPartnerConfig>
  /** wall-clock ms (tests) */
  now?: () => number
}

/** What one run did. */
export interface ScheduleRun {
  schedule: string
  /** the scheduled time (RFC 3339) */
  at: string
  /** the files that matched (after the `completing` filter) */
  matched: number
  /** the rows queued, oldest file first */
  queued: TransferRecord[]
  /** files a send in the journal blocks */
  alreadyQueued: number
  /** false when the leadership ended during the run: the rest of its files were not looked at */
  finished: boolean
}

/** A run a new leader owes a schedule: at `at`; `completing`, the journal records that time already. */
export interface CatchUp { at: number, completing: boolean }

/** Rows of these statuses block a new send of their path whatever its identity: one send of a file at a time. */
const LIVE: readonly TransferStatus[] = ['queued', 'in-progress', 'interrupted']

/** `pattern` (`*` any characters, `?` one) as a test of whole file names. */
export function patternMatcher (pattern: string): (name: string) => boolean {
  const body = [...pattern].map((ch) => ch === '*' ? '.*' : ch === '?' ? '.' : ch.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&')).join('')
  const re = new RegExp(`^${body}$`, 'su')
  return (name) => re.test(name)
}

/**
 * The send among `rows` (the journal's sends of one path to one partner's file) that keeps a run from queueing the
 * file whose identity is now `identity`, if any: a live one (queued or running, whatever it was queued with), or a
 * final one (completed, failed, cancelled, unconfirmed) of the same identity.
 */
export function blockingSend<R extends Pick<SendOfFile, 'status' | 'source'>> (rows: readonly R[], identity: string): R | undefined {
  return rows.find((r) => LIVE.includes(r.status) || r.source === identity)
}

/** Whether `rows` hold a completed send of the file as it is now (`identity`) and none queued or running. */
function sentAlready (rows: ReadonlyArray<Pick<SendOfFile, 'status' | 'source'>>, identity: string): boolean {
  return rows.some((r) => r.status === 'completed' && r.source === identity) && !rows.some((r) => LIVE.includes(r.status))
}

/** The latest time of the cron expression not after `nowMs`, if it has one. */
export function latestDue (s: Pick<ScheduleConfig, 'cron' | 'timezone'>, nowMs: number): number | undefined {
  const c = new Cron(s.cron, { timezone: s.timezone, paused: true })
  try {
    // croner includes a run earlier in the reference's second: one millisecond past now includes now itself.
    return c.previousRuns(1, new Date(nowMs + 1))[0]?.getTime()
  } finally {
    c.stop()
  }
}

/**
 * The run a member that becomes leader at `nowMs` owes a schedule whose latest recorded run is `lastRecorded`
 * (RFC 3339; undefined: none in the journal): the latest due time, unless a later one is recorded (a clock behind
 * its predecessor's), completing it when that very time is recorded.
 */
export function catchUpOf (s: Pick<ScheduleConfig, 'cron' | 'timezone'>, nowMs: number, lastRecorded: string | undefined): CatchUp | undefined {
  const at = latestDue(s, nowMs)
  if (at === undefined) return undefined
  const last = lastRecorded === undefined ? undefined : Date.parse(lastRecorded)
  if (last === undefined || Number.isNaN(last) || at > last) return { at, completing: false }
  return at === last ? { at, completing: true } : undefined
}

export class ScheduleRunner implements Startable {
  private readonly log: Logger
  private readonly fs: DurableFs
  private readonly now: () => number
  private readonly offs: Array<() => void> = []
  private readonly jobs: Cron[] = []
  /** per schedule: its runs, one after the other */
  private readonly chains = new Map<string, Promise<unknown>>()
  /** per schedule: the latest scheduled time this leadership ran or is about to run */
  private readonly lastAt = new Map<string, number>()
  private readonly byId: ReadonlyMap<string, ScheduleConfig>
  /** changes with every leadership this runner follows: a run of an earlier one stops */
  private generation = 0
  /** the start of the current leadership's jobs (after `leaderReady`) */
  private activation: Promise<void> = Promise.resolve()
  private active = false
  private stopped = true

  constructor (private readonly c: ScheduleRunnerComponents, private readonly init: ScheduleRunnerInit) {
    this.log = c.logger.child({ component: 'transfer:schedules' })
    this.fs = c.fs ?? new NodeDurableFs()
    this.now = init.now ?? Date.now
    this.byId = new Map(init.schedules.map((s) => [s.id, s]))
  }

  async start (): Promise<void> {
    if (!this.stopped) return
    this.stopped = false
    if (this.init.schedules.length === 0) return
    this.offs.push(whileLeader(this.c.leadership, { elected: () => { this.activate() }, demoted: () => { this.deactivate('no longer the leader') } }))
  }

  async stop (): Promise<void> {
    this.stopped = true
    for (const off of this.offs.splice(0)) off()
    this.deactivate('stopping')
    await Promise.allSettled([...this.chains.values()])
  }

  /** Resolves once the runs started or due so far have ended (tests). */
  async settled (): Promise<void> {
    await this.activation
    while (this.chains.size > 0) await Promise.allSettled([...this.chains.values()])
  }

  /**
   * Runs schedule `id` for its scheduled time `at` (what each cron tick does), after the runs of it already going;
   * undefined when it did not run: not the leader, or this leadership has run that time or a later one already.
   */
  async run (id: string, at: number, opts: { completing?: boolean } = {}): Promise<ScheduleRun | undefined> {
    const s = this.byId.get(id)
    if (s === undefined) throw new RangeError(`no schedule ${id}`)
    const gen = this.generation
    if (!this.leads(gen) || at <= (this.lastAt.get(id) ?? -Infinity)) return undefined
    this.lastAt.set(id, at)
    const run = (this.chains.get(id) ?? Promise.resolve()).then(async () => await this.runOnce(s, at, gen, opts.completing === true))
    const chained = run.catch(() => {})
    this.chains.set(id, chained)
    void chained.finally(() => { if (this.chains.get(id) === chained) this.chains.delete(id) })
    return await run
  }

  private leads (gen: number): boolean {
    return this.active && gen === this.generation && this.c.leadership.isLeader()
  }

  private activate (): void {
    if (this.stopped || this.active) return
    this.active = true
    const gen = ++this.generation
    this.activation = (this.c.leaderReady?.() ?? Promise.resolve()).then(() => { this.schedule(gen) }, (err: unknown) => {
      this.log.warn({ err }, 'the journal did not settle: the schedules wait for the next leadership')
    })
  }

  private deactivate (why: string): void {
    if (!this.active) return
    this.active = false
    this.generation++
    for (const job of this.jobs.splice(0)) job.stop()
    this.lastAt.clear()
    this.log.info({ reason: why }, 'schedules off')
  }

  /** The jobs of this leadership, then the runs it owes. */
  private schedule (gen: number): void {
    if (!this.leads(gen)) return
    for (const s of this.init.schedules) {
      // `protect`: a tick while a run still goes is skipped (the next run takes what it would have).
      this.jobs.push(new Cron(s.cron, { timezone: s.timezone, protect: true, unref: true }, async () => {
        const at = latestDue(s, this.now())
        if (at !== undefined) await this.run(s.id, at)
      }))
    }
    // After the jobs exist: a tick that comes before a catch-up of the same time is skipped by `lastAt`, and none is lost.
    const now = this.now()
    let journal: ScheduleJournal
    try {
      journal = this.c.journal()
    } catch (err) {
      this.log.warn({ err }, 'the journal cannot be read: no missed run is caught up in this leadership')
      return
    }
    for (const [i, s] of this.init.schedules.entries()) {
      let due: CatchUp | undefined
      try {
        due = catchUpOf(s, now, journal.lastScheduledRun(s.id))
      } catch (err) {
        this.log.warn({ err, schedule: s.id }, 'could not read the schedule\'s last run: no missed run caught up')
      }
      this.log.info({ schedule: s.id, next: this.jobs[i]?.nextRun()?.toISOString(), ...(due !== undefined ? { catchUp: new Date(due.at).toISOString() } : {}) }, 'schedule on')
      if (due !== undefined) void this.run(s.id, due.at, { completing: due.completing })
    }
  }

  /** `afterSend` of `file` on `f`, late: PI 13 no longer known (`.0` if the move target has the name already). */
  private async afterSendLate (file: PesitFileConfig, f: { name: string, path: string }, partner: string, log: Logger): Promise<void> {
    try {
      const to = await applyAfterSend(this.fs, file.afterSend, dirname(f.path), f.name, partner, 0)
      log.info({ path: f.path, action: file.afterSend?.action, to, late: true }, 'after-send action done')
    } catch (err) {
      // Gone meanwhile: the queue's runner finishing that very send did it.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !(await this.fs.exists(f.path))) return
      log.error({ err, path: f.path }, 'after-send action failed; the next run retries it')
    }
  }

  private async runOnce (s: ScheduleConfig, atMs: number, gen: number, completing: boolean): Promise<ScheduleRun> {
    const at = new Date(atMs).toISOString()
    const log = this.log.child({ schedule: s.id, at })
    const result: ScheduleRun = { schedule: s.id, at, matched: 0, queued: [], alreadyQueued: 0, finished: false }
    try {
      const file = this.init.files.get(s.file)
      const out = this.init.partners.get(s.partner)?.outbound
      // validatePesitConfig refused both at start.
      if (file === undefined || out === undefined) throw new Error(`schedule ${s.id}: file ${s.file} or partner ${s.partner} is not configured as it needs`)
      const matches = patternMatcher(s.pattern)
      const candidates = (await offerableFiles(this.fs, directoryFor(file.directory, s.partner)))
        .filter((f) => matches(f.name) && (!completing || f.stat.mtimeMs <= atMs))
      result.matched = candidates.length
      if (!this.leads(gen)) return result
      const journal = this.c.journal()
      for (const f of candidates) {
        const source = identityString(identityOf(f.stat))
        const sends = journal.sendsOf({ partner: s.partner, remoteFile: s.remoteFile, filePath: f.path })
        if (blockingSend(sends, source) !== undefined) {
          result.alreadyQueued++
          // Sent, yet still here: the after-send action the queue's runner did not do (it failed, or its member lost
          // the lease or died between the completion and the action) is done now, as a partner's pull does it late.
          if (file.afterSend !== undefined && file.afterSend.action !== 'keep' && sentAlready(sends, source) && this.leads(gen)) await this.afterSendLate(file, f, s.partner, log)
          continue
        }
        if (!this.leads(gen)) return result
        result.queued.push(journal.enqueue({
          epoch: this.c.leadership.currentEpoch()?.number ?? 0,
          member: this.init.member,
          direction: 'send',
          partner: s.partner,
          serverId: out.serverId,
          remoteFile: s.remoteFile,
          filePath: f.path,
          source,
          request: { priority: 1, articleSize: QUEUED_ARTICLE_SIZE, articlesPerSync: QUEUED_ARTICLES_PER_SYNC, schedule: { id: s.id, at }, localFile: s.file }
        }))
      }
      result.finished = true
      return result
    } catch (err) {
      if (this.leads(gen)) log.warn({ err }, 'schedule run failed; the next run looks again')
      else log.info({ err: (err as Error).message }, 'schedule run stopped with the leadership')
      return result
    } finally {
      if (result.queued.length > 0) this.c.queued()
      log.info({ matched: result.matched, queued: result.queued.length, alreadyQueued: result.alreadyQueued, finished: result.finished, ...(completing ? { completing } : {}) }, 'schedule ran')
    }
  }
}
