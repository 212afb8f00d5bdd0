/** Errors of the cluster area. */

/** A leadership transfer that cannot happen (not leader, unknown target, no other member). HTTP 409. */
export class LeadershipTransferError extends Error {
  override name = 'LeadershipTransferError'
}
