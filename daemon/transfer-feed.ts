/**
 * Transfer rows as they change on this member, for the event streams that asked for them (`GET
 * /api/cluster/events?include=transfers`, docs/contract.md §3.8): on the leader its own journal writes, on a
 * standby the leader's entries as replication applies them (the leader's progress reaches every member's console
 * through the journal it already replicates, at each sync point). Throttled per transfer: at most one row every
 * `intervalMs`, the newest, and an ended row at once. Subscribes to its sources only while someone listens.
 */
import type { TransferRecord } from '../store/journal-records.js'

export interface TransferFeedSource {
  /** Calls `listener` with every row this member's journal changes; returns the unsubscribe function. */
  subscribe: (listener: (row: TransferRecord) => void) => () => void
}

export class TransferFeed {
  private readonly listeners = new Set<(row: TransferRecord) => void>()
  private readonly lastSent = new Map<string, number>()
  private readonly pending = new Map<string, { row: TransferRecord, timer: ReturnType<typeof setTimeout> }>()
  private off: (() => void) | undefined

  constructor (private readonly source: TransferFeedSource, private readonly intervalMs = 250, private readonly now: () => number = () => Date.now()) {}

  subscribe (listener: (row: TransferRecord) => void): () => void {
    this.listeners.add(listener)
    this.off ??= this.source.subscribe((row) => { this.publish(row) })
    return () => {
      this.listeners.delete(listener)
      if (this.listeners.size > 0) return
      this.off?.()
      this.off = undefined
      for (const p of this.pending.values()) clearTimeout(p.timer)
      this.pending.clear()
      this.lastSent.clear()
    }
  }

  private publish (row: TransferRecord): void {
    const t = this.now()
    const waiting = this.pending.get(row.id)
    const last = this.lastSent.get(row.id)
    if (row.status !== 'in-progress' || last === undefined || t - last >= this.intervalMs) {
      if (waiting !== undefined) { clearTimeout(waiting.timer); this.pending.delete(row.id) }
      this.emit(row)
      return
    }
    if (waiting !== undefined) { waiting.row = row; return }
    const timer = setTimeout(() => {
      const p = this.pending.get(row.id)
      this.pending.delete(row.id)
      if (p !== undefined) this.emit(p.row)
    }, this.intervalMs - (t - last))
    timer.unref?.()
    this.pending.set(row.id, { row, timer })
  }

  private emit (row: TransferRecord): void {
    if (row.status === 'in-progress') this.lastSent.set(row.id, this.now())
    else this.lastSent.delete(row.id)
    for (const l of this.listeners) l(row)
  }
}
