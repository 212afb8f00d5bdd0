/**
 * Joint quorums of dynamic voting: a claim needs promises from a majority of every configuration it must count
 * (the committed primary view, a pending one, the proposed view), members that are gone not counted; when no primary
 * view was ever committed, every member of a configuration is gone, or more than one is gone only by dying, also a
 * majority of the expected cluster size.
 */
import { memberKey, type ConfigRef } from '../messages.js'

export interface QuorumContext {
  /** Expected replicas (`VECTIS_CLUSTER_SIZE`). */
  clusterSize: number
  /** No primary view was ever committed: the bootstrap rule applies. */
  bootstrap: boolean
  /** Whether a member (by key) no longer counts (left, or dead long enough: see the protocol document). */
  discounted: (key: string) => boolean
  /**
   * Of the discounted members, those discounted only because they died (not those that left gracefully or died while
   * promised to the counting leader). More than one such member in a configuration: a majority of the expected
   * cluster size is needed too (their restarted processes may carry on a configuration committed without me).
   */
  discountedAsDead?: (key: string) => boolean
}

/** The smallest majority of `n` members. */
export function majorityOf (n: number): number { return Math.floor(n / 2) + 1 }

export function jointQuorum (configs: readonly ConfigRef[], acks: ReadonlySet<string>, ctx: QuorumContext): boolean {
  let needBootstrap = ctx.bootstrap
  for (const c of configs) {
    let deaths = 0
    const base = c.members.filter(m => {
      const k = memberKey(m)
      if (!ctx.discounted(k)) return true
      if (ctx.discountedAsDead?.(k) === true) deaths++
      return false
    })
    if (base.length === 0) { needBootstrap = true; continue }
    if (deaths > 1) needBootstrap = true
    const n = base.filter(m => acks.has(memberKey(m))).length
    if (n * 2 <= base.length) return false
  }
  if (needBootstrap && acks.size < majorityOf(ctx.clusterSize)) return false
  return true
}
