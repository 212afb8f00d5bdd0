/** What several benchmarks share: polling with a deadline, percentiles, a dev cluster's settled leader. */
import type { DevCluster } from '../dev-cluster/dev-cluster.js'

/** Polls `fn` every `intervalMs` until it returns a value, or throws after `timeoutMs` naming `what`. */
export async function until<T> (what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 120_000, intervalMs = 20): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** The `p`th percentile of `xs` (nearest rank), null for none. */
export function pct (xs: number[], p: number): number | null {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? null : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!
}

/**
 * The index of the dev cluster's leader once it is settled: every member running in one view, exactly one leader
 * serving PeSIT, and the load balancer sending new connections to it.
 */
export async function servingLeader (dc: DevCluster, timeoutMs = 120_000): Promise<number> {
  return await until('one leader serving, every member running, the load balancer on it', () => {
    const ms = dc.snapshot()
    if (ms.some((m) => m.state !== 'running' || m.status === undefined || m.status.members.length !== ms.length)) return undefined
    const leaders = ms.filter((m) => m.status!.isLeader && m.status!.servers?.[0]?.running === true)
    if (leaders.length !== 1 || dc.lb.current()?.name !== leaders[0]!.name) return undefined
    return leaders[0]!.index
  }, timeoutMs)
}
