/**
 * Joint quorums of dynamic voting: a claim needs promises from a majority of every configuration it must count
 * (the committed primary view, a pending one, the proposed view), members that are gone not counted; when no primary
 * view was ever committed, or every member of a configuration is gone, a majority of the expected cluster size.
 */
import { memberKey, type ConfigRef } from './messages.js'

export interface QuorumContext {
  /** Expected replicas (`VECTIS_CLUSTER_SIZE`). */
  clusterSize: number
  /** No primary view was ever committed: the bootstrap rule applies. */
  bootstrap: boolean
  /** Whether a member (by key) no longer counts (left, or dead long enough: see the protocol document). */
  discounted: (key: string) => boolean
}

export function jointQuorum (configs: readonly ConfigRef[], acks: ReadonlySet<string>, ctx: QuorumContext): boolean {
  let needBootstrap = ctx.bootstrap
  for (const c of configs) {
    const base = c.members.filter(m => !ctx.discounted(memberKey(m)))
    if (base.length === 0) { needBootstrap = true; continue }
    const n = base.filter(m => acks.has(memberKey(m))).length
    if (n * 2 <= base.length) return false
  }
  if (needBootstrap && acks.size < Math.floor(ctx.clusterSize / 2) + 1) return false
  return true
}
