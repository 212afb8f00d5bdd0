/**
 * The transfer journal: one row per transfer, and an ordered log in which every change is appended with a
 * sequence number, so the log can be shipped to the other members (`changesSince` and `onAppended` on the leader,
 * `applyRun` on the others).
 *
 * A transfer change is logged as a full snapshot of the row after the change, stamped with the writer's epoch.
 * Applying entries is therefore idempotent and order-tolerant: a row takes a snapshot only if it is newer by
 * (epoch, seq), so skipped, repeated or pruned entries never make a row go back.
 *
 * Durability: every mutating call is one SQLite transaction, committed (WAL fsynced, `synchronous = FULL`, see
 * database.ts) before the call returns. `recordSyncPoint` is the PeSIT hot path: the server sends ACK(SYN) only
 * after it returned, so an acknowledged sync point is never lost with the machine.
 *
 * The log holds only what is replicated: the leader's transfer changes. What a member sees of the cluster (views,
 * elections, suspicions) is its own, in a table beside the log (`appendEvent`, `events`), and never shipped.
 *
 * Retention: the leader prunes final rows past the retention and logs which (a `prune` entry), so every member
 * removes the same rows when it applies the entry; log entries and cluster events past the retention are each
 * member's own to prune. The highest prune entry a member pruned from its log is its horizon: a member whose
 * position is below the leader's horizon may have missed a prune entry and must compare its whole log with the
 * leader's (docs/design.md §5.6).
 *
 * NOT guaranteed here: that the caller is the leader (the transfer part checks `Leadership.isLeader()` right
 * before calling); that the log is the same on every member (only what was shipped and applied is).
 */
import type { Database, Statement } from 'better-sqlite3'
import type { Clock } from '../common/clock.js'
import { InvalidTransferError, NotLeaderError, TransferNotFoundError } from './errors.js'
import { JournalReplica, type LeaderRun, type RunResult } from './journal-replica.js'
import { COLUMNS, prepareJournalStatements, type JournalStatements } from './journal-statements.js'
import { TransferQueue } from './transfer-queue.js'
import { MAX_TRANSFER_ID, type TransferIds } from './transfer-id.js'
import {
  FINAL_STATUSES, TRANSFER_STATUSES, checkCount, checkText, iso, newTransfer, toEntry, toRecord, toRow, withoutSeq,
  type ClusterEvent, type ClusterEventEntry, type LogEntry, type TransferDirection, type TransferRecord, type TransferRow,
  type TransferStatus, type PruneEntry
} from './journal-records.js'

export type { LeaderRun, RunResult } from './journal-replica.js'
export {
  TRANSFER_STATUSES, FINAL_STATUSES, type TransferDirection, type TransferStatus, type TransferRecord, type ClusterEventType,
  type ClusterEvent, type LogEntry, type TransferEntry, type PruneEntry, type ClusterEventEntry
} from './journal-records.js'

export interface BeginTransfer {
  /** Epoch of the leadership starting the transfer: the key and a server-assigned PI 13 derive from it. */
  epoch: number
  member: string
  server: string
  partner: string
  virtualFile: string
  direction: TransferDirection
  /** PI 13 chosen by the requester (CREATE); omitted: allocated from the epoch (SELECT of a new transfer). */
  transferId?: number
  filePath?: string
  /** A send: the identity of the source file (see TransferRecord.source). */
  source?: string
}

export interface SyncPointUpdate {
  syncPoint: number
  /** File offset of the sync point. */
  offset: number
  /** Bytes transferred; defaults to `offset`. */
  bytes?: number
}

export interface TransferPatch {
  bytes?: number
  filePath?: string | null
  diagnostic?: string | null
}

export interface ListQuery {
  limit: number
  status?: TransferStatus
  partner?: string
  /** Only rows after this one in the list's order (older ones): the cursor of the next page. */
  before?: string
}


export interface PruneResult { transfers: number, logEntries: number, events: number }

/** What `restoreBatch` did with each row of the batch. */
export interface RestoreResult {
  /** Rows the journal did not have, now added (in-progress ones as interrupted). */
  added: number
  /** Rows it already had (the same transfer): kept as they are here, which is the same or later history. */
  kept: number
  /** Rows whose key is another transfer's here (a new cluster reuses epoch numbers): added under `<key>@<backup>`. */
  rekeyed: number
}

export interface JournalComponents {
  db: Database
  clock: Clock
  transferIds: TransferIds
  /** Highest epoch this member has seen: every change is stamped with at least it. */
  currentEpoch: () => number
}

const SHA256 = /^[0-9a-f]{64}$/

export class Journal {
  private readonly db: Database
  private readonly clock: Clock
  private readonly ids: TransferIds
  private readonly currentEpoch: () => number
  private readonly s: JournalStatements
  private readonly replica: JournalReplica

  private readonly listStatements = new Map<string, Statement>()
  private readonly appendListeners = new Set<(e: LogEntry) => void>()
  private readonly mutateTx: (id: string, change: (r: TransferRecord) => TransferRecord, requireInProgress?: boolean) => TransferRecord
  /** Transfers the cluster initiates (store/transfer-queue.ts): rows of this journal, replicated with it. */
  readonly queue: TransferQueue
  private leaderCheck: (() => boolean) | undefined

  constructor (components: JournalComponents) {
    this.db = components.db
    this.clock = components.clock
    this.ids = components.transferIds
    this.currentEpoch = components.currentEpoch
    const db = this.db
    this.s = prepareJournalStatements(db)
    this.replica = new JournalReplica(db, this.s)
    const mutate = db.transaction((id: string, change: (r: TransferRecord) => TransferRecord,
      allowed: readonly TransferStatus[] | undefined) => {
      const row = this.s.get.get(id)
      if (row === undefined) throw new TransferNotFoundError(id)
      const before = toRecord(row)
      if (FINAL_STATUSES.includes(before.status)) {
        throw new InvalidTransferError(`transfer ${id} is ${before.status} and cannot change any more`)
      }
      if (allowed !== undefined && !allowed.includes(before.status)) {
        throw new InvalidTransferError(before.status === 'interrupted' && allowed.includes('in-progress')
          ? `transfer ${id} is interrupted: resume it first`
          : `transfer ${id} is ${before.status}, not ${allowed.join(' or ')}`)
      }
      const next = change({ ...before })
      next.epoch = Math.max(next.epoch, before.epoch, this.currentEpoch())
      next.updatedAt = iso(this.clock.wallNow())
      return this.write(next)
    })
    const change = (id: string, fn: (r: TransferRecord) => TransferRecord, allowed?: readonly TransferStatus[]): TransferRecord => {
      this.checkLeader()
      return this.appended(mutate.immediate(id, fn, allowed))
    }
    this.mutateTx = (id, fn, requireInProgress = false) => change(id, fn, requireInProgress ? ['in-progress'] : undefined)
    this.queue = new TransferQueue({
      db,
      clock: this.clock,
      currentEpoch: this.currentEpoch,
      insert: (epoch, build) => {
        this.checkLeader()
        return this.appended(db.transaction(() => {
          const a = this.ids.allocate(epoch)
          return this.write(build(a, iso(this.clock.wallNow())))
        }).immediate())
      },
      change
    })
  }

  /**
   * Installs the lease check every transfer change runs synchronously right before its transaction
   * (docs/design.md §3.6: a journal append is a leader-only effect): with it, a member whose lease has expired,
   * even one whose timers have not fired yet, gets NotLeaderError instead of writing. Cluster events and
   * replicated entries are not leader-only and are not checked. `undefined` removes it (standalone daemons may not
   * install one).
   */
  setLeaderCheck (check: (() => boolean) | undefined): void {
    this.leaderCheck = check
  }

  private checkLeader (): void {
    if (this.leaderCheck !== undefined && !this.leaderCheck()) throw new NotLeaderError()
  }

  /**
   * Calls `listener` with every entry this member appends (begin and every change; not replicated entries), once
   * committed, in order. Returns the unsubscribe function. A listener that throws does not undo the change.
   */
  onAppended (listener: (e: LogEntry) => void): () => void {
    this.appendListeners.add(listener)
    return () => { this.appendListeners.delete(listener) }
  }

  private appended (r: TransferRecord): TransferRecord {
    if (this.appendListeners.size > 0) this.announce({ seq: r.seq, at: r.updatedAt, epoch: r.epoch, kind: 'transfer', data: { ...r } })
    return r
  }

  private announce (e: LogEntry): void {
    for (const l of this.appendListeners) {
      try {
        l(e)
      } catch {
        // the listener's own business (it logs); the change is committed
      }
    }
  }

  /** Records a new transfer (and allocates its key and, unless given, its PI 13), committed on return. */
  begin (input: BeginTransfer): TransferRecord {
    checkText('server', input.server)
    checkText('partner', input.partner)
    checkText('virtualFile', input.virtualFile)
    checkText('member', input.member)
    checkCount('epoch', input.epoch)
    if (input.direction !== 'receive' && input.direction !== 'send') {
      throw new InvalidTransferError(`direction must be receive or send, got ${String(input.direction)}`)
    }
    if (input.transferId !== undefined && (!Number.isInteger(input.transferId) || input.transferId < 1 ||
      input.transferId > MAX_TRANSFER_ID)) {
      throw new InvalidTransferError(`transferId must be 1..${MAX_TRANSFER_ID}, got ${input.transferId}`)
    }
    if (input.filePath !== undefined) checkText('filePath', input.filePath)
    if (input.source !== undefined) checkText('source', input.source)
    this.checkLeader()
    return this.appended(this.db.transaction(() => {
      const a = this.ids.allocate(input.epoch)
      const now = iso(this.clock.wallNow())
      return this.write(newTransfer({
        id: a.key,
        transferId: input.transferId ?? a.transferId,
        server: input.server,
        partner: input.partner,
        virtualFile: input.virtualFile,
        direction: input.direction,
        status: 'in-progress',
        filePath: input.filePath ?? null,
        source: input.source ?? null,
        member: input.member,
        epoch: Math.max(input.epoch, this.currentEpoch()),
        createdAt: now
      }))
    }).immediate())
  }

  /**
   * The PeSIT hot path: one call per acknowledged sync point. Committed and fsynced when it returns, so the
   * caller may send ACK(SYN) (receiving) or count the sync point as acknowledged (sending).
   */
  recordSyncPoint (id: string, u: SyncPointUpdate): TransferRecord {
    checkCount('syncPoint', u.syncPoint)
    checkCount('offset', u.offset)
    if (u.bytes !== undefined) checkCount('bytes', u.bytes)
    return this.mutateTx(id, (r) => {
      r.syncPoint = u.syncPoint
      r.syncOffset = u.offset
      r.bytes = u.bytes ?? u.offset
      return r
    }, true)
  }

  /**
   * A restart (PI 15 = 1) on this member: back in progress under `epoch`, from the restart point agreed in the
   * protocol (which may be below the last acknowledged sync point; 0 means from the beginning).
   */
  resume (id: string, input: { member: string, epoch: number, syncPoint: number, offset: number }): TransferRecord {
    checkText('member', input.member)
    checkCount('epoch', input.epoch)
    checkCount('syncPoint', input.syncPoint)
    checkCount('offset', input.offset)
    return this.mutateTx(id, (r) => {
      r.status = 'in-progress'
      r.member = input.member
      r.epoch = input.epoch
      r.syncPoint = input.syncPoint
      r.syncOffset = input.offset
      r.bytes = input.offset
      r.diagnostic = null
      return r
    })
  }

  /** Interrupted and restartable (IDT, lost connection, hand-over, a leader that died). */
  interrupt (id: string, diagnostic: string): TransferRecord {
    checkText('diagnostic', diagnostic)
    return this.mutateTx(id, (r) => ({ ...r, status: 'interrupted', diagnostic }))
  }

  complete (id: string, input: { bytes: number, sha256: string, filePath?: string }): TransferRecord {
    checkCount('bytes', input.bytes)
    if (!SHA256.test(input.sha256)) throw new InvalidTransferError('sha256 must be 64 lower-case hex digits')
    if (input.filePath !== undefined) checkText('filePath', input.filePath)
    return this.mutateTx(id, (r) => ({
      ...r,
      status: 'completed',
      bytes: input.bytes,
      sha256: input.sha256,
      filePath: input.filePath ?? r.filePath,
      diagnostic: null,
      finishedAt: iso(this.clock.wallNow())
    }), true)
  }

  /** Failed for good: not restartable. */
  fail (id: string, diagnostic: string): TransferRecord {
    checkText('diagnostic', diagnostic)
    return this.mutateTx(id, (r) => ({ ...r, status: 'failed', diagnostic, finishedAt: iso(this.clock.wallNow()) }))
  }

  update (id: string, patch: TransferPatch): TransferRecord {
    if (patch.bytes !== undefined) checkCount('bytes', patch.bytes)
    if (typeof patch.filePath === 'string') checkText('filePath', patch.filePath)
    if (typeof patch.diagnostic === 'string') checkText('diagnostic', patch.diagnostic)
    return this.mutateTx(id, (r) => ({
      ...r,
      bytes: patch.bytes ?? r.bytes,
      filePath: patch.filePath === undefined ? r.filePath : patch.filePath,
      diagnostic: patch.diagnostic === undefined ? r.diagnostic : patch.diagnostic
    }))
  }

  get (id: string): TransferRecord | undefined {
    const row = this.s.get.get(id)
    return row === undefined ? undefined : toRecord(row)
  }

  /** The newest in-progress or interrupted transfer matching a restart request (the key of docs/pesit.md §9.3). */
  findRestartable (key: { server: string, partner: string, virtualFile: string, direction: TransferDirection,
    transferId: number }): TransferRecord | undefined {
    const row = this.s.restartable.get(key.server, key.partner, key.virtualFile, key.direction, key.transferId)
    return row === undefined ? undefined : toRecord(row)
  }

  /**
   * Whether `filePath`, with exactly this source identity, was already sent completely to `partner` under
   * `virtualFile` (a send virtual file then offers it no more). Rows pruned by retention no longer count.
   */
  wasSent (q: { partner: string, virtualFile: string, filePath: string, source: string }): boolean {
    return this.s.sent.get(q.partner, q.virtualFile, q.filePath, q.source) !== undefined
  }

  /** The transfers partners run still in progress, oldest first (the queue has its own: transfer-queue.ts). */
  inProgress (): TransferRecord[] {
    return (this.s.inProgress.all()).map(toRecord)
  }

  /**
   * Newest first (creation time; rows created in the same millisecond in the order this member stored them). With
   * `before`, the rows that follow that row in this order; throws TransferNotFoundError when this member has no
   * such row (pruned by retention, say).
   */
  list (q: ListQuery): TransferRecord[] {
    if (!Number.isInteger(q.limit) || q.limit < 1) throw new InvalidTransferError(`limit must be a positive integer, got ${q.limit}`)
    if (q.status !== undefined && !TRANSFER_STATUSES.includes(q.status)) {
      throw new InvalidTransferError(`status must be one of ${TRANSFER_STATUSES.join(', ')}`)
    }
    const where: string[] = []
    const params: Array<string | number> = []
    if (q.status !== undefined) { where.push('status = ?'); params.push(q.status) }
    if (q.partner !== undefined) { where.push('partner = ?'); params.push(q.partner) }
    if (q.before !== undefined) {
      // The cursor is a place in the order, not an id to compare: ids (`<epoch>-<serial>`, `…@<backup>`) do not sort.
      const place = this.s.listPlace.get(q.before)
      if (place === undefined) throw new TransferNotFoundError(q.before)
      where.push('(created_at < ? OR (created_at = ? AND rowid < ?))')
      params.push(place.created_at, place.created_at, place.rid)
    }
    const sql = `SELECT ${COLUMNS} FROM transfers ${where.length > 0 ? 'WHERE ' + where.join(' AND ') : ''} ` +
      'ORDER BY created_at DESC, rowid DESC LIMIT ?'
    let stmt = this.listStatements.get(sql)
    if (stmt === undefined) {
      stmt = this.db.prepare(sql)
      this.listStatements.set(sql, stmt) // eight shapes at most: with or without each of status, partner, before
    }
    return (stmt.all(...params, q.limit) as TransferRow[]).map(toRecord)
  }

  /** Records a cluster event this member saw (local: not in the replicated log), committed on return. */
  appendEvent (event: ClusterEvent): ClusterEventEntry {
    checkCount('epoch', event.epoch)
    if (typeof event.type !== 'string' || event.type.length === 0) throw new InvalidTransferError('an event needs a type')
    const at = this.clock.wallNow()
    const info = this.s.appendEvent.run(at, event.epoch, JSON.stringify(event))
    return { id: Number(info.lastInsertRowid), at: iso(at), epoch: event.epoch, data: { ...event } }
  }

  /** The highest sequence number ever used here (0 if none), pruned entries included. */
  lastSeq (): number {
    return this.s.lastSeq.get()?.seq ?? 0
  }

  /** Up to `limit` entries with a sequence number above `seq`, in order: what a standby asks the leader for. */
  changesSince (seq: number, limit: number): LogEntry[] {
    if (!Number.isInteger(seq) || seq < 0) throw new RangeError(`seq must be a non-negative integer, got ${seq}`)
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, got ${limit}`)
    return this.s.since.all(seq, limit).map(toEntry)
  }

  /** The cluster events this member recorded, newest first. */
  events (limit: number): ClusterEventEntry[] {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, got ${limit}`)
    return this.s.events.all(limit).map((r) => ({ id: r.id, at: iso(r.at), epoch: r.epoch, data: JSON.parse(r.data) as ClusterEvent }))
  }

  /**
   * One short transaction of retention: on the leader (a lease check is installed and holds: without one, as in a
   * store no daemon runs, no rows are pruned, since no member would receive the prune entry), at most `batch`
   * final transfers that finished before `cutoffMs`, logged as one prune entry that every member applies; on
   * every member, at most `batch` log entries older than it (except the newest entry of each remaining row) and
   * cluster events.
   */
  pruneBatch (cutoffMs: number, batch: number): PruneResult {
    const leading = this.leaderCheck !== undefined && this.leaderCheck()
    let logged: PruneEntry | undefined
    const result = this.db.transaction((): PruneResult => {
      let transfers = 0
      if (leading) {
        const ids = this.s.prunableTransfers.all(cutoffMs, batch).map((r) => r.id)
        for (const id of ids) this.s.deleteTransfer.run(id)
        transfers = ids.length
        if (ids.length > 0) {
          const at = this.clock.wallNow()
          const epoch = this.currentEpoch()
          const info = this.s.appendLog.run(at, epoch, 'prune', null, JSON.stringify({ ids }))
          logged = { seq: Number(info.lastInsertRowid), at: iso(at), epoch, kind: 'prune', data: { ids } }
          this.s.setPosition.run(logged.seq)
        }
      }
      const old = this.s.prunableLog.all(cutoffMs, batch)
      let horizon = 0
      for (const o of old) {
        this.s.deleteLog.run(o.seq)
        if (o.kind === 'prune') horizon = o.seq
      }
      if (horizon > 0) this.s.raiseHorizon.run(horizon)
      return { transfers, logEntries: old.length, events: this.s.pruneEvents.run(cutoffMs, batch).changes }
    }).immediate()
    if (logged !== undefined) this.announce(logged)
    return result
  }

  /** The highest prune entry this member removed from its log (0: none): see the module's comment. */
  prunedThrough (): number {
    return this.s.horizon.get()?.pruned_through ?? 0
  }

  /**
   * Merges rows of a backup taken under `backupId` (docs/design.md §5.7), as new entries of this leadership, in one
   * transaction. A restore adds what is missing and never deletes nor replaces: a row present here is the same or
   * a later state of the same transfer (an audit trail only grows), and a completed send stays completed, so a
   * restore never offers a delivered file again. A row that was in progress when the backup was taken comes back
   * interrupted: restartable by its partner, never resumed by itself. Applying the same batch twice changes nothing
   * the second time. Leader only (NotLeaderError).
   */
  restoreBatch (rows: readonly TransferRecord[], backupId: string): RestoreResult {
    checkText('backupId', backupId)
    this.checkLeader()
    const result: RestoreResult = { added: 0, kept: 0, rekeyed: 0 }
    const written = this.db.transaction(() => {
      const out: TransferRecord[] = []
      for (const row of rows) {
        // Restored beside another transfer of the same key by an earlier run of this restore: kept.
        const rekeyed = `${row.id}@${backupId}`
        if (this.s.get.get(rekeyed) !== undefined) { result.kept++; continue }
        const here = this.s.get.get(row.id)
        if (here !== undefined && sameTransfer(toRecord(here), row)) { result.kept++; continue }
        const key = here === undefined ? row.id : rekeyed
        if (here === undefined) result.added++
        else result.rekeyed++
        const wasRunning = row.status === 'in-progress'
        out.push(this.write({
          ...row,
          id: key,
          status: wasRunning ? 'interrupted' : row.status,
          diagnostic: wasRunning ? `restored from backup ${backupId}: it was in progress on ${row.member}` : row.diagnostic,
          // The epoch orders a row's changes; this change is this leadership's (a new cluster's may be lower).
          epoch: this.currentEpoch(),
          seq: 0
        }))
      }
      return out
    }).immediate()
    for (const r of written) this.appended(r)
    return result
  }

  /** Logs and stores a transfer snapshot; must run inside a transaction. The log is this member's: it leads. */
  private write (r: TransferRecord): TransferRecord {
    const info = this.s.appendLog.run(Date.parse(r.updatedAt), r.epoch, 'transfer', r.id, JSON.stringify(withoutSeq(r)))
    const next = { ...r, seq: Number(info.lastInsertRowid) }
    this.s.upsert.run(toRow(next))
    this.s.setPosition.run(next.seq)
    return next
  }

  /**
   * How far this member's log is the leader's: every entry up to it is the leader's, and nothing of the leader's
   * up to it is missing (a leader: the end of its own log).
   */
  position (): number {
    return this.replica.position()
  }

  /** Applies a run of the leader's log: JournalReplica.applyRun. */
  applyRun (run: LeaderRun): RunResult {
    return this.replica.applyRun(run)
  }

  /** Drops a deposed leader's tail past the head of `head.epoch`'s leader: JournalReplica.alignTo. */
  alignTo (head: { seq: number, epoch: number }): number {
    return this.replica.alignTo(head)
  }

  /** A new leader drops its unconfirmed tail of earlier leaderships: JournalReplica.truncateAfterPosition. */
  truncateAfterPosition (belowEpoch: number): number {
    return this.replica.truncateAfterPosition(belowEpoch)
  }
}

/** Two rows under one key are the same transfer when what was fixed at its start is equal. */
function sameTransfer (a: TransferRecord, b: TransferRecord): boolean {
  return a.createdAt === b.createdAt && a.transferId === b.transferId && a.partner === b.partner &&
    a.server === b.server && a.virtualFile === b.virtualFile && a.direction === b.direction
}
