/**
 * The replica side of the journal (docs/design.md §5.6): how far this member's log is the leader's (`position`),
 * and the three ways the leader's log reaches it: a run of entries to apply, a head to align to, and the truncation a
 * new leader makes of an unconfirmed tail. Each is one SQLite transaction; a local entry the leader's log does not
 * have is removed, and the row it changed put back to its newest remaining entry.
 */
import type { Database } from 'better-sqlite3'
import { ReplicationConflictError } from './errors.js'
import { entryData, entryKey, toEntry, toRow, validateEntry, type LogEntry } from './journal-records.js'
import type { JournalStatements } from './journal-statements.js'

/**
 * A run of the leader's log: `entries`, in order, are every entry its log holds after `after` up to the last of
 * them (none in between: pruned ones are simply absent).
 */
export interface LeaderRun {
  after: number
  entries: readonly LogEntry[]
  /** The epoch of the leadership that sent the run (at least that of every entry in it). */
  epoch: number
  /**
   * The run covers the leader's log up to here (default: its last entry): nothing else is there up to it. A
   * catch-up page that reached the end of the leader's log covers up to its head.
   */
  through?: number
}

export interface RunResult {
  applied: number
  skipped: number
  /** Local entries the run showed are not in the leader's log (a deposed leader's tail, or pruned there). */
  removed: number
  /** The replication position after the run. */
  position: number
}

export class JournalReplica {
  constructor (private readonly db: Database, private readonly s: JournalStatements) {}

  /**
   * How far this member's log is the leader's: every entry up to it is the leader's, and nothing of the leader's
   * up to it is missing (a leader: the end of its own log).
   */
  position (): number {
    return this.s.position.get()?.position ?? 0
  }

  /**
   * Applies a run of the leader's log (one transaction): its entries are written with their sequence numbers, and
   * every local entry in the range it covers that is not in it is removed, the row it changed put back to its
   * newest remaining entry (or removed with it when none is left: pruned at the leader). The run must start at or
   * before this member's position (`after <= position()`, else RangeError: a gap, to fill from the leader first).
   * Refused whole (ReplicationConflictError) when the range holds an entry of a newer epoch than the run's: the
   * run comes from a deposed leader.
   */
  applyRun (run: LeaderRun): RunResult {
    return this.db.transaction(() => {
      const position = this.position()
      if (!Number.isSafeInteger(run.after) || run.after < 0) throw new ReplicationConflictError(`malformed run: after ${String(run.after)}`)
      if (run.after > position) throw new RangeError(`the run starts after ${run.after}, beyond this member's position ${position}`)
      let prev = run.after
      for (const e of run.entries) {
        validateEntry(e)
        if (e.seq <= prev) throw new ReplicationConflictError(`entries out of order: seq ${e.seq} after ${prev}`)
        if (e.epoch > run.epoch) throw new ReplicationConflictError(`entry ${e.seq} of epoch ${e.epoch} in a run of epoch ${run.epoch}`)
        prev = e.seq
      }
      if (run.through !== undefined && (!Number.isSafeInteger(run.through) || run.through < prev)) {
        throw new ReplicationConflictError(`malformed run: through ${String(run.through)} before its last entry ${prev}`)
      }
      const end = run.through ?? prev
      const incoming = new Map(run.entries.map((e) => [e.seq, e]))
      let applied = 0
      let skipped = 0
      let removed = 0
      const touched = new Set<string>()
      for (const local of this.s.logRange.all(run.after, end)) {
        const e = incoming.get(local.seq)
        if (e !== undefined && local.epoch === e.epoch && local.kind === e.kind && local.transfer_key === entryKey(e)) continue
        if (local.epoch > run.epoch) {
          throw new ReplicationConflictError(`entry ${local.seq} of epoch ${local.epoch} here is newer than the run's epoch ${run.epoch}`)
        }
        this.s.deleteLog.run(local.seq)
        if (local.transfer_key !== null) touched.add(local.transfer_key)
        removed++
      }
      for (const key of touched) this.restoreRow(key)
      for (const e of run.entries) {
        if (this.s.getLog.get(e.seq) !== undefined) { skipped++; continue }
        this.s.appendLogAt.run(e.seq, Date.parse(e.at), e.epoch, e.kind, entryKey(e), entryData(e))
        if (e.kind === 'transfer') this.s.upsertIfNewer.run(toRow({ ...e.data, epoch: e.epoch, seq: e.seq }))
        else for (const id of e.data.ids) this.s.deleteIfOlder.run(id, e.seq)
        applied++
      }
      // The leader's log up to `end` is now this one's; a run entirely behind the position (a late duplicate) that
      // changed nothing leaves the position where it was.
      const next = removed > 0 || applied > 0 || end > position ? end : position
      this.s.setPosition.run(next)
      return { applied, skipped, removed, position: next }
    }).immediate()
  }

  /**
   * The leader of `head.epoch` says its log holds nothing of an older epoch past `head.seq` (its head, or where its
   * own entries begin): entries here past it from an older epoch are a deposed leader's tail and go (rows put back
   * as in applyRun); entries of its own epoch stay. The position comes back to just before the first entry removed
   * (what follows must be fetched again), or to `head.seq` if nothing is left past it. Returns the entries removed.
   */
  alignTo (head: { seq: number, epoch: number }): number {
    return this.db.transaction(() => {
      const touched = new Set<string>()
      let removed = 0
      let kept = 0
      let first: number | undefined
      for (const local of this.s.logRange.all(head.seq, Number.MAX_SAFE_INTEGER)) {
        if (local.epoch >= head.epoch) { kept++; continue }
        this.s.deleteLog.run(local.seq)
        if (local.transfer_key !== null) touched.add(local.transfer_key)
        first ??= local.seq
        removed++
      }
      for (const key of touched) this.restoreRow(key)
      const position = this.position()
      if (first !== undefined && position >= first) this.s.setPosition.run(first - 1)
      else if (kept === 0 && position > head.seq) this.s.setPosition.run(head.seq)
      return removed
    }).immediate()
  }

  /**
   * A new leader (of `belowEpoch`) drops what its log holds past its position from earlier leaderships: its own
   * tail that no member confirmed (rows put back as in applyRun). Returns the number of entries removed.
   */
  truncateAfterPosition (belowEpoch: number): number {
    return this.db.transaction(() => {
      const position = this.position()
      const touched = new Set<string>()
      let removed = 0
      for (const local of this.s.logRange.all(position, Number.MAX_SAFE_INTEGER)) {
        if (local.epoch >= belowEpoch) continue
        this.s.deleteLog.run(local.seq)
        if (local.transfer_key !== null) touched.add(local.transfer_key)
        removed++
      }
      for (const key of touched) this.restoreRow(key)
      return removed
    }).immediate()
  }

  /** A row back to its newest entry left in the log, or removed when none is left. Inside a transaction. */
  private restoreRow (key: string): void {
    const newest = this.s.newestOf.get(key)
    if (newest === undefined) {
      this.s.deleteTransfer.run(key)
      return
    }
    // Entries found by a row's key are that row's changes (a prune entry has no key).
    const e = toEntry(newest)
    if (e.kind === 'transfer') this.s.upsert.run(toRow(e.data))
  }
}
