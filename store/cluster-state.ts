/**
 * What leadership must remember across restarts: the highest epoch seen, the view counter and the last primary
 * view. Every operation is a compare-and-raise in one IMMEDIATE transaction, committed (fsynced, see
 * database.ts) before it returns, so a value handed out is never handed out again, even after a crash or a
 * power cut right after the call.
 *
 * NOT guaranteed: cluster-wide uniqueness. This only keeps one member from going back; an epoch higher than every
 * other member's comes from the election, which passes the highest epoch a majority has seen as `atLeast`.
 */
import type { Database, Statement } from 'better-sqlite3'
import type { Epoch } from '../common/epoch.js'
import type { Clock } from '../common/clock.js'
import { StoreError } from './errors.js'
import type { ClusterEvent } from './journal.js'

export type { Epoch }

export interface ClusterStateComponents {
  db: Database
  clock: Clock
  /** Where epoch raises are logged, in the same transaction. */
  journal?: { appendEvent (event: ClusterEvent): unknown }
}

interface StateRow {
  epoch_number: number
  epoch_leader: string
  view_counter: number
  primary_view: string | null
}

export class ClusterState {
  private readonly db: Database
  private readonly clock: Clock
  private readonly journal: ClusterStateComponents['journal']
  private readonly read: Statement<[], StateRow>
  private readonly writeEpoch: Statement<[number, string, number]>
  private readonly writeView: Statement<[number, number]>
  private readonly writePrimary: Statement<[string | null, number]>
  private cached: StateRow

  constructor (components: ClusterStateComponents) {
    this.db = components.db
    this.clock = components.clock
    this.journal = components.journal
    this.read = this.db.prepare('SELECT epoch_number, epoch_leader, view_counter, primary_view FROM cluster_state WHERE id = 1')
    this.writeEpoch = this.db.prepare('UPDATE cluster_state SET epoch_number = ?, epoch_leader = ?, updated_at = ? WHERE id = 1')
    this.writeView = this.db.prepare('UPDATE cluster_state SET view_counter = ?, updated_at = ? WHERE id = 1')
    this.writePrimary = this.db.prepare('UPDATE cluster_state SET primary_view = ?, updated_at = ? WHERE id = 1')
    this.cached = this.load()
  }

  /** The highest epoch this member has seen or held; undefined on a new member. */
  highestEpoch (): Epoch | undefined {
    const c = this.cached
    return c.epoch_number === 0 ? undefined : { number: c.epoch_number, leader: c.epoch_leader }
  }

  /** Just the number (0 on a new member): what the journal stamps changes with. */
  highestEpochNumber (): number {
    return this.cached.epoch_number
  }

  /**
   * A new epoch for `leader`: max(highest seen + 1, atLeast), persisted and logged as `epoch:raised` before it
   * returns. `atLeast` is the election's value (the highest epoch the voting majority has seen, plus one).
   */
  raiseEpoch (leader: string, atLeast = 0): Epoch {
    checkName('leader', leader)
    checkCount('atLeast', atLeast)
    return this.commit((): Epoch => {
      const number = Math.max(this.load().epoch_number + 1, atLeast)
      if (!Number.isSafeInteger(number)) throw new StoreError('epoch counter overflow')
      this.writeEpoch.run(number, leader, this.clock.wallNow())
      this.journal?.appendEvent({ type: 'epoch:raised', epoch: number, leader })
      return { number, leader }
    })
  }

  /**
   * Remembers an epoch seen in a message or an annotation if it is higher than any seen before. Returns true if
   * it raised the stored value. An equal number with another leader does not replace the stored one.
   */
  noteEpochSeen (epoch: Epoch): boolean {
    checkCount('epoch.number', epoch.number)
    if (epoch.number <= this.cached.epoch_number) return false
    checkName('epoch.leader', epoch.leader)
    return this.commit(() => {
      if (epoch.number <= this.load().epoch_number) return false
      this.writeEpoch.run(epoch.number, epoch.leader, this.clock.wallNow())
      return true
    })
  }

  /** The highest view counter handed out or seen (0 on a new member). */
  viewCounter (): number {
    return this.cached.view_counter
  }

  /** A view counter never used before here: max(stored + 1, atLeast), persisted before it returns. */
  nextViewCounter (atLeast = 0): number {
    checkCount('atLeast', atLeast)
    return this.commit(() => {
      const n = Math.max(this.load().view_counter + 1, atLeast)
      if (!Number.isSafeInteger(n)) throw new StoreError('view counter overflow')
      this.writeView.run(n, this.clock.wallNow())
      return n
    })
  }

  /** Remembers a view counter seen from another member, if higher. Returns true if it raised the stored value. */
  noteViewCounterSeen (counter: number): boolean {
    checkCount('counter', counter)
    if (counter <= this.cached.view_counter) return false
    return this.commit(() => {
      if (counter <= this.load().view_counter) return false
      this.writeView.run(counter, this.clock.wallNow())
      return true
    })
  }

  /**
   * The membership machine's persisted state as saved (a JSON value the store does not interpret: the cluster part
   * validates it when it decodes it), undefined if none.
   */
  membershipState (): unknown {
    const v = this.cached.primary_view
    return v === null ? undefined : JSON.parse(v) as unknown
  }

  /**
   * The membership machine's whole persisted state (JSON-serialisable; kept in the `primary_view` column), with the
   * epoch and view counter it carries, in ONE durable commit: the machine persists before it acts, on the heartbeat
   * path. `undefined` forgets it.
   */
  saveMembershipState (state: unknown, epoch: Epoch, viewCounter: number): void {
    let json: string | null = null
    if (state !== undefined) {
      json = JSON.stringify(state)
      if (json === undefined) throw new StoreError('the membership state is not JSON-serialisable')
    }
    this.commit(() => {
      if (epoch.number > 0) this.noteEpochSeen(epoch)
      if (viewCounter > 0) this.noteViewCounterSeen(viewCounter)
      this.writePrimary.run(json, this.clock.wallNow())
    })
  }

  /**
   * Runs `fn` in an IMMEDIATE transaction (nested in the caller's, if any, as a savepoint), then refreshes the
   * cache from the database, so the cache holds what is committed even when `fn` threw and rolled back.
   */
  private commit<T> (fn: () => T): T {
    try {
      return this.db.transaction(fn).immediate()
    } finally {
      this.cached = this.load()
    }
  }

  private load (): StateRow {
    const row = this.read.get()
    if (row === undefined) throw new StoreError('cluster_state row missing: the schema is damaged')
    return row
  }
}

function checkName (field: string, v: unknown): void {
  if (typeof v !== 'string' || v.length === 0) throw new StoreError(`${field} must be a non-empty string`)
}

function checkCount (field: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new StoreError(`${field} must be a non-negative integer, got ${String(v)}`)
  }
}
