/**
 * Transfer rows as they change on this member, for the event streams that asked for them (`GET
 * /api/cluster/events?include=transfers`, docs/contract.md §3.8).
 *
 * Two sources: the journal (on the leader its own writes, on a standby the leader's entries as replication applies
 * them: a row at the start, at each sync point and at the end) and live progress between sync points (on the leader
 * from its PeSIT sessions through a ProgressCollector, on a standby from the leader over the cluster:
 * cluster/progress-relay.ts). A row in progress carries the larger of the two byte counts and, when known, the
 * file's size (`expectedBytes`, not journaled).
 *
 * Throttled per transfer: at most one row every `intervalMs`, the newest, and an ended row at once. Subscribes to
 * its sources only while someone listens.
 */
import type { ProgressItem } from '../cluster/progress-relay.js'
import type { TransferRecord } from '../store/journal-records.js'
import type { TransferProgress, TransferProgressPort } from '../transfer/ports.js'
import type { LiveTransferRecord } from './status.js'

export const FEED_INTERVAL_MS = 250

export interface TransferFeedSource {
  /** Calls `listener` with every row this member's journal changes; returns the unsubscribe function. */
  subscribe: (listener: (row: TransferRecord) => void) => () => void
  /** The journal's row `id` here, if any: live progress may arrive for a row the feed has not seen change. */
  lookup: (id: string) => TransferRecord | undefined
}

export class TransferFeed {
  private readonly listeners = new Set<(row: LiveTransferRecord) => void>()
  /** rows in progress, with their live figures, while someone listens */
  private readonly rows = new Map<string, LiveTransferRecord>()
  private readonly lastSent = new Map<string, number>()
  private readonly pending = new Map<string, { row: LiveTransferRecord, timer: ReturnType<typeof setTimeout> }>()
  private off: (() => void) | undefined

  constructor (private readonly source: TransferFeedSource, private readonly intervalMs = FEED_INTERVAL_MS, private readonly now: () => number = () => Date.now()) {}

  subscribe (listener: (row: LiveTransferRecord) => void): () => void {
    this.listeners.add(listener)
    this.off ??= this.source.subscribe((row) => { this.fromJournal(row) })
    return () => {
      this.listeners.delete(listener)
      if (this.listeners.size > 0) return
      this.off?.()
      this.off = undefined
      for (const p of this.pending.values()) clearTimeout(p.timer)
      this.pending.clear()
      this.lastSent.clear()
      this.rows.clear()
    }
  }

  /** Live progress of transfers in progress (this member's sessions, or the leader's over the cluster). */
  progress (items: readonly ProgressItem[]): void {
    if (this.listeners.size === 0) return
    for (const item of items) {
      const row: LiveTransferRecord | undefined = this.rows.get(item.id) ?? this.source.lookup(item.id)
      // Progress that arrives after the row ended (or before it exists here) has nothing to update.
      if (row === undefined || row.status !== 'in-progress' || item.bytes < row.bytes) continue
      if (item.bytes === row.bytes && item.expectedBytes === row.expectedBytes) continue
      const live: LiveTransferRecord = { ...row, bytes: item.bytes }
      if (item.expectedBytes !== undefined) live.expectedBytes = item.expectedBytes
      this.rows.set(item.id, live)
      this.offer(live)
    }
  }

  private fromJournal (row: TransferRecord): void {
    if (row.status !== 'in-progress') {
      this.rows.delete(row.id)
      this.offer(row)
      return
    }
    // A sync point's row may lag behind the live figure already shown: keep the larger.
    const known = this.rows.get(row.id)
    const live: LiveTransferRecord = { ...row, bytes: Math.max(row.bytes, known?.bytes ?? 0) }
    if (known?.expectedBytes !== undefined) live.expectedBytes = known.expectedBytes
    this.rows.set(row.id, live)
    this.offer(live)
  }

  private offer (row: LiveTransferRecord): void {
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

  private emit (row: LiveTransferRecord): void {
    if (row.status === 'in-progress') this.lastSent.set(row.id, this.now())
    else this.lastSent.delete(row.id)
    for (const l of this.listeners) l(row)
  }
}

/**
 * The PeSIT sessions' progress reports (one per DTF received or chunk sent), reduced to the latest figure of each
 * transfer and handed to `flush` at most every `intervalMs`; nothing is kept once handed on, and no timer runs while
 * no transfer moves.
 */
export class ProgressCollector implements TransferProgressPort {
  private readonly latest = new Map<string, ProgressItem>()
  private timer: ReturnType<typeof setTimeout> | undefined

  constructor (private readonly flush: (items: ProgressItem[]) => void, private readonly intervalMs = FEED_INTERVAL_MS) {}

  update (journalId: string, p: TransferProgress): void {
    if (journalId === '') return
    this.latest.set(journalId, { id: journalId, ...p })
    if (this.timer !== undefined) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      const items = [...this.latest.values()]
      this.latest.clear()
      this.flush(items)
    }, this.intervalMs)
    this.timer.unref?.()
  }

  stop (): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.latest.clear()
  }
}
