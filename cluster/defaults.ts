/**
 * The cluster's defaults, defined once (docs/contract.md §2.2): the daemon's configuration, the transport and the
 * membership machine import them.
 */

export const DEFAULT_CLUSTER_NAME = 'vectis-cluster'
export const DEFAULT_CLUSTER_PORT = 7800
/** Heartbeat interval `HB`. Shorter detects silence sooner but costs CPU and packets on every member. */
export const DEFAULT_HEARTBEAT_MS = 500
/**
 * Silence `FT` after which a member is suspected. Shorter fails over faster from a frozen or cut-off leader, but a GC
 * pause or a slow link longer than this costs a needless failover. The leader's lease is derived from it and from
 * HB (`MembershipConfig.leaseMs`: 1,440 ms with the defaults).
 */
export const DEFAULT_FAILURE_TIMEOUT_MS = 2500
/** How long an old leader forwards new PeSIT connections after a hand-over (load-balancer propagation ≈ 1 s). */
export const DEFAULT_HANDOVER_DRAIN_MS = 3000
/** Largest clock-rate error assumed between members (2 %: far above what NTP-disciplined or free-running quartz does). */
export const DEFAULT_MAX_CLOCK_DRIFT = 0.02

/** The rule between HB and FT (a member must miss at least two heartbeats before it is suspected), or undefined. */
export function timingsError (heartbeatMs: number, failureTimeoutMs: number): string | undefined {
  if (failureTimeoutMs > 2 * heartbeatMs) return undefined
  return `must exceed twice VECTIS_HEARTBEAT_MS (${heartbeatMs} ms), i.e. be above ${2 * heartbeatMs}`
}
