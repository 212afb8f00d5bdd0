/**
 * The membership machine's interface: what it is fed (`MembershipInput`), what it answers (`MembershipOutput`),
 * what it persists and what it reports. docs/cluster-protocol.md describes the protocol behind them.
 */
import type { Epoch } from '../../common/epoch.js'
import type { DemotionReason } from '../leadership-api.js'
import type { ClusterRequest, ConfigRef, MemberInfo, ReplyMessage, ViewData } from '../messages.js'

/** What the driver persists (synchronously, before acting on later outputs). */
export interface PersistedClusterState {
  /** Highest epoch this member promised to or led. */
  highestEpoch: Epoch
  /** Highest view counter seen: a new view is numbered above it, so a counter is never reused. */
  maxCounter: number
  /** Highest view counter applied: a member (any incarnation) never applies an older view. */
  maxApplied: number
  /** The last primary view known committed. */
  committed?: ConfigRef
  /** A newer claimed view promised for (or claimed), not known committed. */
  pending?: ConfigRef
  /** The incarnation that wrote this state. */
  member?: MemberInfo
}

export type SendFailure = 'refused' | 'timeout' | 'closed' | 'denied' | 'invalid'

export type MembershipInput =
  | { type: 'tick' }
  /** Addresses found by DNS / seeds ("ip:port"); replaces the previous list. */
  | { type: 'discovered', addresses: string[] }
  /** A request received from another member; the outputs contain exactly one `reply`. */
  | { type: 'message', msg: ClusterRequest }
  | { type: 'send-result', id: number, ok: true, reply: ReplyMessage }
  | { type: 'send-result', id: number, ok: false, error: SendFailure }
  /** The last connection to this peer closed. */
  | { type: 'disconnected', peerId: string }
  /**
   * An outside authority (Kubernetes) shows this member's process gone (pod deleted, container restarted). Give the
   * incarnation when known; without it, only an incarnation of that name not heard from in the last HB is meant.
   */
  | { type: 'verified-dead', name: string, incarnation?: string }
  /** Graceful leave (SIGTERM): hands leadership over first when leading. */
  | { type: 'leave' }
  /** Leadership hand-over to `to` (a member name) or the next oldest. */
  | { type: 'transfer', to?: string }

export type MembershipEvent =
  | { type: 'view:installed', view: ViewData, primary: boolean }
  | { type: 'member:suspected', member: MemberInfo, reason: string }
  | { type: 'member:left', member: MemberInfo, reason: 'left' | 'excluded' | 'dead' }
  | { type: 'leader:elected', epoch: Epoch }
  /** `leaseEnd`: when the lease really ended on this member's clock (≤ now: the expiry, when that came first). */
  | { type: 'leader:demoted', epoch: Epoch, reason: DemotionReason, leaseEnd: number }
  /** This member finished its graceful leave: the driver may stop. */
  | { type: 'self:left' }
  /** The member I handed my leadership to leads now (its claim of a higher epoch reached me). */
  | { type: 'handover:completed', to: MemberInfo, epoch: Epoch }
  /**
   * A hand-over I was asked for did not happen: no suitable member, the successor refused or could not be reached,
   * or it did not lead within FT + margin. I lead again once elected (the others are still promised to me).
   */
  | { type: 'handover:failed', to: MemberInfo | undefined, reason: string }

export type MembershipOutput =
  | { type: 'send', id: number, to: string, msg: ClusterRequest, timeoutMs: number }
  | { type: 'reply', msg: ReplyMessage }
  | { type: 'persist', state: PersistedClusterState }
  | { type: 'event', event: MembershipEvent }
  | { type: 'log', level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown> }

/** A member as known before its process starts: the machine chooses the incarnation (`incarnation.ts`). */
export type MemberIdentity = Omit<MemberInfo, 'incarnation'>

export interface MembershipComponents {
  me: MemberIdentity
  /** What the previous incarnation persisted, if any. */
  persisted?: PersistedClusterState
  /** Seeded in the simulation: jitter, probe helpers, the incarnation's random part. */
  random: () => number
}

export interface MembershipStatus {
  me: MemberInfo
  view?: ViewData
  primary: boolean
  isLeader: boolean
  leader?: string
  epoch?: Epoch
  highestEpoch: Epoch
  leaseRemainingMs: number
  quorum: { required: number, present: number, ok: boolean }
  suspected: string[]
  /** Longest silence among the members this one watches (the coordinator watches all; a member its coordinator). */
  heartbeatAgeMaxMs: number
}
