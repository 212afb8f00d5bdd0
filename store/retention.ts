/**
 * Background pruning of the journal: final transfers (completed, failed) that finished more than `retentionDays`
 * ago, on the leader only (where the daemon installed its lease check and it holds; each batch is a replicated
 * prune entry), and log entries and cluster events older than that on every member (see Journal.pruneBatch). Runs on a jittered timer, first after a random
 * delay, in bounded batches with a yield to the event loop between them, so one run never holds the database (and
 * the PeSIT hot path waiting on it) for long.
 *
 * NOT pruned: in-progress and interrupted transfers, whatever their age: they hold what a restart needs.
 */
import type { Clock } from '../common/clock.js'
import { jitter } from '../common/clock.js'
import type { Startable } from '../common/lifecycle.js'
import type { Logger } from '../common/logger.js'
import { StoreConfigError } from './errors.js'
import type { Journal, PruneResult } from './journal.js'
import { MAX_PRUNE_IDS } from './journal-records.js'

export const DEFAULT_RETENTION_DAYS = 30
/** Hourly is plenty for a day-granular retention; the jitter keeps members from pruning in lockstep. */
export const DEFAULT_PRUNE_INTERVAL_MS = 60 * 60 * 1000
/** Rows per transaction: a few milliseconds of work, short enough not to delay a sync-point commit noticeably. */
export const DEFAULT_PRUNE_BATCH = 500
/** Batches per run; what is left is pruned at the next run. */
export const DEFAULT_PRUNE_MAX_BATCHES = 200
const DAY_MS = 24 * 60 * 60 * 1000

export interface RetentionComponents {
  logger: Logger
  clock: Clock
  journal: Pick<Journal, 'pruneBatch'>
}

export interface RetentionInit {
  retentionDays?: number
  intervalMs?: number
  batchSize?: number
  maxBatches?: number
}

export class JournalRetention implements Startable {
  readonly retentionDays: number
  private readonly intervalMs: number
  private readonly batchSize: number
  private readonly maxBatches: number
  private readonly log: Logger
  private timer: NodeJS.Timeout | undefined
  private running: Promise<PruneResult> | undefined
  private started = false
  private stopRequested = false

  constructor (private readonly components: RetentionComponents, init: RetentionInit = {}) {
    this.retentionDays = init.retentionDays ?? DEFAULT_RETENTION_DAYS
    checkRetentionDays(this.retentionDays)
    this.intervalMs = init.intervalMs ?? DEFAULT_PRUNE_INTERVAL_MS
    this.batchSize = init.batchSize ?? DEFAULT_PRUNE_BATCH
    this.maxBatches = init.maxBatches ?? DEFAULT_PRUNE_MAX_BATCHES
    for (const [k, v] of [['intervalMs', this.intervalMs], ['batchSize', this.batchSize], ['maxBatches', this.maxBatches]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new StoreConfigError(k, `must be a positive integer, got ${v}`)
    }
    // A batch's rows are one prune entry: members refuse an entry naming more.
    if (this.batchSize > MAX_PRUNE_IDS) throw new StoreConfigError('batchSize', `must be at most ${MAX_PRUNE_IDS}, got ${this.batchSize}`)
    this.log = components.logger.child({ component: 'store:retention' })
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.stopRequested = false
    // First run after a random fraction of the interval: members started together do not prune together.
    this.schedule(Math.random() * this.intervalMs)
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.stopRequested = true
    clearTimeout(this.timer)
    this.timer = undefined
    // A run in progress stops at its next batch boundary; wait so the caller can close the database after us.
    await this.running?.catch(() => {})
  }

  /** One pruning run (what the timer does), for tests and for an operator-triggered prune. */
  async runOnce (): Promise<PruneResult> {
    if (this.running !== undefined) return this.running
    this.running = this.prune().finally(() => { this.running = undefined })
    return this.running
  }

  private schedule (delayMs: number): void {
    this.timer = setTimeout(() => {
      this.runOnce()
        .catch((err: unknown) => { this.log.error({ err }, 'journal pruning failed; retrying at the next run') })
        .finally(() => { if (this.started) this.schedule(jitter(this.intervalMs, 0.2)) })
    }, delayMs)
    this.timer.unref()
  }

  private async prune (): Promise<PruneResult> {
    const cutoff = this.components.clock.wallNow() - this.retentionDays * DAY_MS
    const total: PruneResult = { transfers: 0, logEntries: 0, events: 0 }
    for (let i = 0; i < this.maxBatches; i++) {
      const r = this.components.journal.pruneBatch(cutoff, this.batchSize)
      total.transfers += r.transfers
      total.logEntries += r.logEntries
      total.events += r.events
      if (r.transfers < this.batchSize && r.logEntries < this.batchSize && r.events < this.batchSize) break
      // Let sync-point commits and HTTP requests in between batches.
      await new Promise<void>((resolve) => setImmediate(resolve))
      if (this.stopRequested) break
    }
    if (total.transfers > 0 || total.logEntries > 0 || total.events > 0) {
      this.log.info({ ...total, retentionDays: this.retentionDays, cutoff: new Date(cutoff).toISOString() }, 'journal pruned')
    }
    return total
  }
}

export function checkRetentionDays (days: number): void {
  if (typeof days !== 'number' || !Number.isFinite(days) || days <= 0) {
    throw new StoreConfigError('VECTIS_JOURNAL_RETENTION_DAYS', `must be a positive number of days, got ${String(days)}`)
  }
}
