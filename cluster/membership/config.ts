/**
 * Options of the membership/leadership state machine, their defaults and the derived timings. Inconsistent timings
 * are rejected with a message naming the fields.
 */
import { ClusterConfigError } from '../errors.js'
import { DEFAULT_CLUSTER_NAME, DEFAULT_FAILURE_TIMEOUT_MS, DEFAULT_HEARTBEAT_MS, DEFAULT_MAX_CLOCK_DRIFT, timingsError } from '../defaults.js'

export type QuorumMode = 'majority' | 'none'

export interface MembershipInit {
  /** Members of different cluster names never form one view. Default `vectis-cluster`. */
  clusterName?: string
  /** Expected replicas: the first primary view needs a majority of it. Required with quorum `majority`. */
  clusterSize?: number
  /** `majority` (default): only the primary view leads. `none`: every view's coordinator leads (split brain possible). */
  quorum?: QuorumMode
  /** Heartbeat interval `HB` (default 500 ms). */
  heartbeatMs?: number
  /** Silence after which a member is suspected, `FT` (default 2500 ms); must exceed 2 × HB. */
  failureTimeoutMs?: number
  /**
   * `margin` (default 2 × HB, at least that): added to FT before a member may vote against a silent leader, and to HB
   * for the "refused for HB + margin" death verification. Covers clock-rate drift and scheduling delays.
   */
  marginMs?: number
  /** Largest relative clock-rate error between members (default 0.02); the lease is shortened by it. */
  maxClockDrift?: number
  /** Start a new primary view from this member alone, forgetting the persisted one (operator's way out). */
  forceNewCluster?: boolean
  /** A view-less founder waits this long after start before forming a view (gathers the others). Default HB. */
  coldStartSettleMs?: number
  /** A view-less member waits this long for the founder it deferred to before trying the next one. Default 4 × HB. */
  founderWaitMs?: number
  /** Deadline of each request (default HB). */
  requestTimeoutMs?: number
}

export interface MembershipConfig {
  clusterName: string
  clusterSize: number
  quorum: QuorumMode
  heartbeatMs: number
  failureTimeoutMs: number
  marginMs: number
  maxClockDrift: number
  forceNewCluster: boolean
  coldStartSettleMs: number
  founderWaitMs: number
  requestTimeoutMs: number
  /**
   * The leader's lease: it holds from the send time of the last round a quorum acknowledged, for this long on the
   * leader's clock. `floor(min(FT, (HB + margin)·(1 − drift)/(1 + drift))) − 1` (1,440 ms with the defaults): short
   * enough that a member which saw the leader's connections refused for HB + margin on its own clock (a death
   * verification) is sure the lease has run out.
   */
  leaseMs: number
  /** A promise (a vote or a lease acknowledgement) binds its giver for FT + margin on its own clock. */
  promiseMs: number
  /** Connections refused for this long verify a death: HB + margin. */
  refusedDeathMs: number
}

function positive (name: string, v: number | undefined, dflt: number): number {
  const x = v ?? dflt
  if (!Number.isFinite(x) || x <= 0) throw new ClusterConfigError(`${name} must be a positive number (got ${String(v)})`)
  return x
}

export function resolveMembershipConfig (init: MembershipInit = {}): MembershipConfig {
  const quorum = init.quorum ?? 'majority'
  if (quorum !== 'majority' && quorum !== 'none') throw new ClusterConfigError(`quorum must be "majority" or "none" (got ${String(quorum)})`)
  const heartbeatMs = positive('heartbeatMs (VECTIS_HEARTBEAT_MS)', init.heartbeatMs, DEFAULT_HEARTBEAT_MS)
  const failureTimeoutMs = positive('failureTimeoutMs (VECTIS_FAILURE_TIMEOUT_MS)', init.failureTimeoutMs, DEFAULT_FAILURE_TIMEOUT_MS)
  const timings = timingsError(heartbeatMs, failureTimeoutMs)
  if (timings !== undefined) throw new ClusterConfigError(`VECTIS_FAILURE_TIMEOUT_MS (${failureTimeoutMs}) ${timings}`)
  const marginMs = positive('marginMs', init.marginMs, 2 * heartbeatMs)
  if (marginMs < 2 * heartbeatMs) throw new ClusterConfigError(`marginMs (${marginMs}) must be at least 2 × heartbeatMs (${heartbeatMs})`)
  const maxClockDrift = init.maxClockDrift ?? DEFAULT_MAX_CLOCK_DRIFT
  if (!(maxClockDrift >= 0 && maxClockDrift < 0.2)) throw new ClusterConfigError(`maxClockDrift must be in [0, 0.2) (got ${maxClockDrift})`)
  let clusterSize = init.clusterSize ?? 0
  if (quorum === 'majority') {
    if (!Number.isInteger(clusterSize) || clusterSize < 1) {
      throw new ClusterConfigError(`VECTIS_CLUSTER_SIZE must be a positive integer with VECTIS_QUORUM=majority (got ${String(init.clusterSize)})`)
    }
  } else if (!Number.isInteger(clusterSize) || clusterSize < 0) {
    clusterSize = 0
  }
  const ratio = (1 - maxClockDrift) / (1 + maxClockDrift)
  const leaseMs = Math.floor(Math.min(failureTimeoutMs, (heartbeatMs + marginMs) * ratio)) - 1
  if (leaseMs <= heartbeatMs) throw new ClusterConfigError(`the lease (${leaseMs} ms) would not outlast one heartbeat: raise marginMs`)
  return {
    clusterName: init.clusterName ?? DEFAULT_CLUSTER_NAME,
    clusterSize,
    quorum,
    heartbeatMs,
    failureTimeoutMs,
    marginMs,
    maxClockDrift,
    forceNewCluster: init.forceNewCluster ?? false,
    coldStartSettleMs: positive('coldStartSettleMs', init.coldStartSettleMs, heartbeatMs),
    founderWaitMs: positive('founderWaitMs', init.founderWaitMs, 4 * heartbeatMs),
    requestTimeoutMs: positive('requestTimeoutMs', init.requestTimeoutMs, heartbeatMs),
    leaseMs,
    promiseMs: failureTimeoutMs + marginMs,
    refusedDeathMs: heartbeatMs + marginMs
  }
}
