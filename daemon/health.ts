import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import type { Startable } from '../common/lifecycle.js'

/**
 * `/healthz`: the process is healthy while its event loop keeps up and every registered check (listeners up)
 * passes. Deliberately independent of leadership, quorum and the Kubernetes API: a liveness probe that failed on
 * those would restart healthy pods during a partition.
 */
export class Health implements Startable {
  private readonly checks = new Map<string, () => string | undefined>()
  private histogram: IntervalHistogram | undefined

  /** Above this event-loop delay (p99 over the last window) the process reports unhealthy. */
  constructor (private readonly maxLoopDelayMs = 5000) {}

  register (name: string, check: () => string | undefined): void { this.checks.set(name, check) }

  async start (): Promise<void> {
    if (this.histogram !== undefined) return
    this.histogram = monitorEventLoopDelay({ resolution: 20 })
    this.histogram.enable()
  }

  async stop (): Promise<void> {
    this.histogram?.disable()
    this.histogram = undefined
  }

  report (): { ok: boolean, problems: string[], loopDelayMs: number } {
    const problems: string[] = []
    const loopDelayMs = this.histogram === undefined ? 0 : this.histogram.max / 1e6
    this.histogram?.reset()
    if (loopDelayMs > this.maxLoopDelayMs) problems.push(`event loop delayed ${Math.round(loopDelayMs)} ms`)
    for (const [name, check] of this.checks) {
      const p = check()
      if (p !== undefined) problems.push(`${name}: ${p}`)
    }
    return { ok: problems.length === 0, problems, loopDelayMs }
  }
}
