/**
 * What the daemon sees of the cluster part, whichever implementation runs: the standalone member (always its own
 * leader) or the libp2p membership. The HTTP status, the events WebSocket, the metrics and the leader-only parts
 * all read this interface.
 */
import type { Startable } from '../common/lifecycle.js'
import type { TypedEmitter } from '../common/typed-events.js'
import type { Epoch, Leadership, LeadershipEvents } from './leadership-api.js'

/** A member as the status and the events show it (the wire's member, with peer id and incarnation, is messages.ts's MemberInfo). */
export interface StatusMember {
  name: string
  /** Address advertised to peers (POD_IP). */
  address: string
  isLeader: boolean
}

export interface ViewIdInfo {
  coordinator: string
  id: number
}

export interface QuorumInfo {
  required: number
  present: number
  ok: boolean
}

/** docs/contract.md §3.5 `GET /api/cluster/status`, less `servers`, which the daemon adds. */
export interface ClusterStatus {
  clusterName: string
  nodeName: string
  isLeader: boolean
  leader: string | null
  epoch: number
  viewId: ViewIdInfo | null
  quorum: QuorumInfo
  /** View order: the first is the coordinator, the oldest member. */
  members: StatusMember[]
  memberCount: number
}

export interface ViewInstalledEvent {
  viewId: ViewIdInfo
  members: StatusMember[]
}

export interface MemberEvent {
  name: string
  address: string
}

export type ClusterEvents = LeadershipEvents & {
  'view:installed': ViewInstalledEvent
  'member:suspected': MemberEvent
  'member:left': MemberEvent
  /** A peer speaks a protocol version this member does not understand: its messages are refused (once per peer). */
  'peer:incompatible': { peer: string, version: number }
}

export interface TransferResult {
  from: string
  to: string
  epoch: Epoch | undefined
}

export interface ClusterService extends Startable {
  readonly leadership: Leadership
  /** Emits everything in ClusterEvents (leadership events included). */
  readonly events: TypedEmitter<ClusterEvents>
  status(): ClusterStatus
  /**
   * `/readyz`: standalone, or a member of an installed view. Independent of leadership and quorum
   * (docs/contract.md §6.3).
   */
  readiness(): { ready: true } | { ready: false, reason: string }
  /** Largest time since any other member's last heartbeat, seconds (0 when alone). */
  heartbeatAgeMaxSeconds(): number
  /**
   * By member name, ms since this member last heard from each member whose heartbeats it follows: the
   * coordinator, every other member of its view; any other member, its coordinator. The others are absent
   * (itself included): this member has no measure of them.
   */
  heartbeatAgesMs(): Record<string, number>
  /** Graceful hand-over to `to` or the next oldest member; rejects with a reason when impossible. */
  transferLeadership(to?: string): Promise<TransferResult>
  /**
   * Answers the cluster requests of another part of the daemon (journal replication): a request whose payload is
   * `{ service: name, … }` goes to `handler` (its value or promise is the reply) instead of the membership
   * protocol. One handler per name. A member alone in its process (standalone) receives none.
   */
  serve(name: string, handler: ServiceHandler): void
}

/** `from`: the peer id of the requester. */
export type ServiceHandler = (from: string, payload: Record<string, unknown>) => unknown
