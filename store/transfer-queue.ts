/**
 * The queue of transfers the cluster initiates (docs/design.md §5.8): rows of the transfer journal with the
 * initiator `cluster`, so that they are replicated, backed up and pruned with the rest, and a new leader finds the
 * queue where the old one left it.
 *
 * A row's life: `queued` (waiting for its next attempt, not before `nextAttemptAt`) → `in-progress` (an attempt
 * runs on the leader: `start`) → back to `queued` for a retry (`retryLater`: its sync point is kept, the next
 * attempt restarts from it with the same PI 13) or to a final state: `completed`, `failed` (refused for good),
 * `cancelled`, `unconfirmed` (the partner answered a restart as if it had the file already).
 *
 * Every change is a leader-only journal write (the lease check of Journal.setLeaderCheck applies).
 */
import type { Database, Statement } from 'better-sqlite3'
import type { Clock } from '../common/clock.js'
import { InvalidTransferError } from './errors.js'
import { checkCount, checkText, iso, newTransfer, toRecord, type InitiatedRequest, type TransferDirection, type TransferRecord, type TransferRow, type TransferStatus } from './journal-records.js'
import { COLUMNS } from './journal-statements.js'
import type { AllocatedTransferId } from './transfer-id.js'

export interface EnqueueInput {
  /** epoch of the leadership queueing it: its key and PI 13 derive from it */
  epoch: number
  member: string
  /** `send`: the cluster sends `filePath`; `receive`: it fetches the partner's file */
  direction: TransferDirection
  partner: string
  /** the partner's PeSIT server id (PI 4) */
  serverId: string
  /** the partner's virtual file (PI 12 on their side) */
  remoteFile: string
  /** send: the local source file */
  filePath?: string
  /**
   * send: the identity (`<size>:<mtimeMs>:<inode>`) the file had when it was queued (a schedule's sends), kept as the
   * row's `source`: an attempt that finds another identity fails instead of sending a changed file
   */
  source?: string
  request: InitiatedRequest
  /** wall-clock ms before which it does not start (default: now) */
  notBefore?: number
}

/** What the journal lends the queue: its clock and epoch, and its two kinds of committed, announced writes. */
export interface QueueContext {
  db: Database
  clock: Clock
  currentEpoch: () => number
  /** inserts the row `build` makes from a freshly allocated key and PI 13 (leader only) */
  insert: (epoch: number, build: (a: AllocatedTransferId, now: string) => TransferRecord) => TransferRecord
  /** changes a row that is not final, and in one of `allowed` if given (leader only) */
  change: (id: string, fn: (r: TransferRecord) => TransferRecord, allowed?: readonly TransferStatus[]) => TransferRecord
}

/** What `sendsOf` tells of one row: its status and the identity of the source it was queued or sent with. */
export interface SendOfFile {
  id: string
  status: TransferStatus
  source: string | null
}

/** The statuses a cancellation may stop. */
const CANCELLABLE: readonly TransferStatus[] = ['queued', 'in-progress', 'interrupted']

export class TransferQueue {
  private readonly s: {
    due: Statement<[number, string, number], TransferRow>
    nextDue: Statement<[string], { at: number | null }>
    depth: Statement<[], { n: number }>
    running: Statement<[], TransferRow>
    sendsOf: Statement<[string, string, string, string, string, string], SendOfFile>
    lastScheduled: Statement<[string], { at: string | null }>
  }

  constructor (private readonly c: QueueContext) {
    this.s = {
      // Urgent first (PI 17); within a priority, transfers already started before new ones (an interrupted one
      // resumes at once: the partner holds its partial file), then the longest waiting.
      due: c.db.prepare(`SELECT ${COLUMNS} FROM transfers WHERE status = 'queued' AND next_attempt_at <= ? ` +
        'AND partner NOT IN (SELECT value FROM json_each(?)) ' +
        "ORDER BY json_extract(request, '$.priority'), attempts = 0, next_attempt_at, created_at, rowid LIMIT ?"),
      nextDue: c.db.prepare("SELECT min(next_attempt_at) AS at FROM transfers WHERE status = 'queued' AND partner NOT IN (SELECT value FROM json_each(?))"),
      depth: c.db.prepare("SELECT count(*) AS n FROM transfers WHERE initiator = 'cluster' AND status IN ('queued', 'in-progress')"),
      running: c.db.prepare(`SELECT ${COLUMNS} FROM transfers WHERE initiator = 'cluster' AND status = 'in-progress' ORDER BY created_at, rowid`),
      // Completed rows through the index of completed sends, the others (few: final failures and live rows) through
      // the status index; not the partner's index, which would read every row of the partner.
      sendsOf: c.db.prepare('SELECT id, status, source, created_at, rowid AS r FROM transfers INDEXED BY transfers_sent ' +
        "WHERE partner = ? AND virtual_file = ? AND file_path = ? AND direction = 'send' AND status = 'completed' AND initiator = 'cluster' " +
        'UNION ALL SELECT id, status, source, created_at, rowid AS r FROM transfers INDEXED BY transfers_status_created ' +
        "WHERE partner = ? AND virtual_file = ? AND file_path = ? AND direction = 'send' AND initiator = 'cluster' " +
        "AND status IN ('queued', 'in-progress', 'interrupted', 'failed', 'cancelled', 'unconfirmed') ORDER BY created_at, r"),
      lastScheduled: c.db.prepare("SELECT max(json_extract(request, '$.schedule.at')) AS at FROM transfers " +
        "WHERE initiator = 'cluster' AND json_extract(request, '$.schedule.id') = ?")
    }
  }

  /** Queues a transfer; committed (on this member) on return. */
  enqueue (input: EnqueueInput): TransferRecord {
    checkText('partner', input.partner)
    checkText('serverId', input.serverId)
    checkText('remoteFile', input.remoteFile)
    checkText('member', input.member)
    if (input.direction !== 'send' && input.direction !== 'receive') throw new InvalidTransferError(`direction must be send or receive, got ${String(input.direction)}`)
    if (input.direction === 'send') checkText('filePath', input.filePath)
    if (input.source !== undefined) {
      if (input.direction !== 'send') throw new InvalidTransferError('source is the identity of a file to send: a fetch has none')
      checkText('source', input.source)
    }
    if (![0, 1, 2].includes(input.request.priority)) throw new InvalidTransferError(`priority must be 0, 1 or 2, got ${String(input.request.priority)}`)
    return this.c.insert(input.epoch, (a, now) => newTransfer({
      id: a.key,
      transferId: a.transferId,
      server: input.serverId,
      partner: input.partner,
      virtualFile: input.remoteFile,
      direction: input.direction,
      status: 'queued',
      filePath: input.filePath ?? null,
      source: input.source ?? null,
      member: input.member,
      epoch: Math.max(input.epoch, this.c.currentEpoch()),
      createdAt: now,
      initiator: 'cluster',
      request: input.request,
      nextAttemptAt: iso(input.notBefore ?? Date.parse(now))
    }))
  }

  /**
   * An attempt starts on `member`: in progress, one more attempt. `source` (a send: the identity of the file read)
   * and `filePath` (a fetch: where it lands) are recorded at the first attempt and must not change after.
   */
  start (id: string, a: { member: string, epoch: number, source?: string, filePath?: string }): TransferRecord {
    checkText('member', a.member)
    return this.c.change(id, (r) => {
      if (a.source !== undefined && r.source !== null && r.source !== a.source) throw new InvalidTransferError(`transfer ${id}: its source changed since the first attempt`)
      return { ...r, status: 'in-progress', member: a.member, epoch: a.epoch, attempts: r.attempts + 1, nextAttemptAt: null, source: a.source ?? r.source, filePath: a.filePath ?? r.filePath }
    }, ['queued'])
  }

  /** A send's first attempt agreed its sync spacing with the partner (0: no sync points): later ones restart with it. */
  agreed (id: string, articlesPerSync: number): TransferRecord {
    checkCount('articlesPerSync', articlesPerSync)
    return this.c.change(id, (r) => ({ ...r, request: { ...(r.request ?? { priority: 1 }), agreedArticlesPerSync: articlesPerSync } }), ['in-progress'])
  }

  /** The partner cannot restart the transfer (it lost its context): the next attempt starts it from the beginning. */
  forgetRestart (id: string): TransferRecord {
    return this.c.change(id, (r) => {
      const { agreedArticlesPerSync: _, ...request } = r.request ?? { priority: 1 }
      return { ...r, syncPoint: 0, syncOffset: 0, bytes: 0, request }
    }, ['in-progress'])
  }

  /** The attempt ended without the transfer: back in the queue until `at` (wall-clock ms), with why. */
  retryLater (id: string, why: { diagnostic: string, at: number }): TransferRecord {
    checkText('diagnostic', why.diagnostic)
    return this.c.change(id, (r) => ({ ...r, status: 'queued', diagnostic: why.diagnostic, nextAttemptAt: iso(why.at) }), ['in-progress', 'interrupted'])
  }

  /** Cancelled by an operator: final. A running attempt is stopped by its runner, which sees the status. */
  cancel (id: string, reason: string): TransferRecord {
    checkText('reason', reason)
    return this.c.change(id, (r) => ({ ...r, status: 'cancelled', diagnostic: reason, nextAttemptAt: null, finishedAt: iso(this.c.clock.wallNow()) }), CANCELLABLE)
  }

  /** The partner answered a restart as if the transfer were complete there: final, for an operator to check. */
  unconfirmed (id: string, diagnostic: string): TransferRecord {
    checkText('diagnostic', diagnostic)
    return this.c.change(id, (r) => ({ ...r, status: 'unconfirmed', diagnostic, nextAttemptAt: null, finishedAt: iso(this.c.clock.wallNow()) }), ['in-progress'])
  }

  /** Queued rows whose time has come (at `nowMs`), urgent first, at most `limit`, except those of `skipPartners`. */
  due (nowMs: number, limit: number, skipPartners: readonly string[] = []): TransferRecord[] {
    return this.s.due.all(nowMs, JSON.stringify(skipPartners), limit).map(toRecord)
  }

  /** When the earliest queued row (not of `skipPartners`) may start (wall-clock ms), if any is queued. */
  nextDueAt (skipPartners: readonly string[] = []): number | undefined {
    return this.s.nextDue.get(JSON.stringify(skipPartners))?.at ?? undefined
  }

  /** Initiated transfers queued or running: `vectis_transfer_queue_depth`. */
  depth (): number {
    return this.s.depth.get()?.n ?? 0
  }

  /** Initiated rows in progress: on a new leader, the attempts its predecessor left running. */
  running (): TransferRecord[] {
    return this.s.running.all().map(toRecord)
  }

  /**
   * The sends the cluster queued of `filePath` to `partner`'s virtual file `remoteFile`, oldest first, whatever
   * their status (pruned rows are gone): what a schedule's run checks before queueing a file again.
   */
  sendsOf (q: { partner: string, remoteFile: string, filePath: string }): SendOfFile[] {
    const args = [q.partner, q.remoteFile, q.filePath] as const
    return this.s.sendsOf.all(...args, ...args).map((r) => ({ id: r.id, status: r.status, source: r.source }))
  }

  /** The latest scheduled time (RFC 3339) of the rows schedule `scheduleId` queued still in the journal, if any. */
  lastScheduledRun (scheduleId: string): string | undefined {
    return this.s.lastScheduled.get(scheduleId)?.at ?? undefined
  }
}
