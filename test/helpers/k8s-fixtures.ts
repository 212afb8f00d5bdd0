/**
 * Fixtures for the Kubernetes tests: a Leadership the test drives by hand, a poll-with-deadline helper, a log sink,
 * and counters/gauges that record what the label controller reports.
 */
import { Writable } from 'node:stream'
import { TypedEmitter } from '../../common/typed-events.js'
import { createLogger, type Logger } from '../../common/logger.js'
import type { Epoch, Leadership, LeadershipEvents, LeaderDemotedEvent } from '../../cluster/leadership-api.js'
import { waitFor as poll, WaitAborted } from './wait.js'

/** A Leadership whose state the test sets: elect, demote, or let the lease lapse silently. */
export class FakeLeadership implements Leadership {
  readonly events = new TypedEmitter<LeadershipEvents>()
  private epoch: Epoch | undefined
  private abort: AbortController | undefined
  private valid = false

  constructor (readonly name: string) {}

  elect (number: number): Epoch {
    this.abort?.abort()
    const epoch = { number, leader: this.name }
    this.epoch = epoch
    this.valid = true
    this.abort = new AbortController()
    this.events.emit('leader:elected', { epoch, signal: this.abort.signal })
    return epoch
  }

  demote (reason: LeaderDemotedEvent['reason'] = 'handover'): void {
    if (this.epoch === undefined || !this.valid) return
    this.valid = false
    this.events.emit('leader:demoted', { epoch: this.epoch, reason })
    this.abort?.abort()
  }

  /** The lease runs out without any event yet (a paused process): isLeader() turns false, nothing else happens. */
  expire (): void { this.valid = false }

  isLeader (): boolean { return this.valid }
  currentEpoch (): Epoch | undefined { return this.epoch }
  leaseRemainingMs (): number { return this.valid ? 2500 : 0 }
}

export async function waitFor (cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 20): Promise<void> {
  // A condition that throws fails the wait at once, as it always has here.
  await poll(async () => {
    try {
      return await cond()
    } catch (err) {
      throw new WaitAborted(err instanceof Error ? err.message : String(err), { cause: err })
    }
  }, { timeoutMs, what, intervalMs: everyMs })
}

/** A logger whose JSON lines are kept for assertions. */
export function captureLogger (): { logger: Logger, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const destination = new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>)
      cb()
    }
  })
  return { logger: createLogger({ level: 'debug', destination }), lines }
}

export class CounterProbe { value = 0; inc (): void { this.value++ } }
export class GaugeProbe { value: number | undefined; set (v: number): void { this.value = v } }
