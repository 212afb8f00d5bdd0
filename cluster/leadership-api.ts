/**
 * What the rest of the daemon (Kubernetes labels, PeSIT servers, journal) sees of leadership.
 *
 * NOT guaranteed by this interface alone: that no other member also believes it leads. That guarantee comes from
 * the quorum rules of the cluster implementation (and is absent with `VECTIS_QUORUM=none`); what this interface
 * does guarantee is that `isLeader()` is false as soon as this member's lease has expired on the monotonic clock,
 * even if no timer has fired yet (after SIGSTOP, a GC pause or a stalled event loop).
 */
import type { Epoch } from '../common/epoch.js'
import type { TypedEmitter } from '../common/typed-events.js'

export type { Epoch }

export interface LeaderElectedEvent {
  epoch: Epoch
  /** Aborted when this leadership ends (demotion, hand-over, shutdown): leader-only work hangs off it. */
  signal: AbortSignal
  /**
   * A takeover: how long before this election this member last heard from the leader it followed (its last sign
   * of life, a hand-over message included). Absent when it followed none (a cold start, a standalone member).
   */
  previousLeaderSilentMs?: number
}

/** Why a leadership ended. */
export type DemotionReason = 'lease-expired' | 'lost-quorum' | 'handover' | 'shutdown' | 'superseded' | 'view-change'

export interface LeaderDemotedEvent {
  epoch: Epoch
  reason: DemotionReason
}

export type LeadershipEvents = {
  'leader:elected': LeaderElectedEvent
  'leader:demoted': LeaderDemotedEvent
}

export interface Leadership {
  readonly events: TypedEmitter<LeadershipEvents>
  /**
   * True only while this member holds a valid lease *now*. Synchronous and cheap: call it right before every
   * leader-only effect (accepting a PeSIT connection, ACK(SYN), ACK(TRANS.END), a rename, a label write).
   */
  isLeader(): boolean
  /** The epoch of the current (or last) leadership known to this member. */
  currentEpoch(): Epoch | undefined
  /** Milliseconds of lease left (0 when not leader); for metrics. */
  leaseRemainingMs(): number
}

/**
 * Leader-only work: `elected` runs now if this member leads and at each election, `demoted` at each demotion.
 * Returns the unsubscribe function.
 */
export function whileLeader (l: Pick<Leadership, 'events' | 'isLeader'>, on: { elected: () => void, demoted: () => void }): () => void {
  const offs = [l.events.on('leader:elected', () => { on.elected() }), l.events.on('leader:demoted', () => { on.demoted() })]
  if (l.isLeader()) on.elected()
  return () => { for (const off of offs) off() }
}

/**
 * Hooks a graceful hand-over runs, in order, before the lease passes to the successor. Each part that has
 * leader-only work registers one (the PeSIT servers: stop accepting, interrupt transfers at the next sync
 * point, forward new connections during the drain).
 */
export interface HandoverHooks {
  /** Stop taking new sessions. Runs first. */
  stopAccepting?(): Promise<void>
  /** Bring live work to a restartable stop within `deadlineMs`. */
  interrupt?(deadlineMs: number): Promise<void>
  /** After the successor is leader: forward new connections to `successorAddress` until the drain ends. */
  drain?(successorAddress: string, drainMs: number): Promise<void>
  /** The hand-over failed after `stopAccepting`: undo it (and stop leader-only work if no longer leader). */
  cancel?(): Promise<void>
}
