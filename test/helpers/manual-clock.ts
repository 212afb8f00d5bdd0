import type { Clock } from '../../common/clock.js'

/** A clock moved by hand, for unit tests. */
export class ManualClock implements Clock {
  constructor (private t = 0, private readonly wallBase = Date.UTC(2026, 0, 1)) {}
  now (): number { return this.t }
  wallNow (): number { return this.wallBase + this.t }
  advance (ms: number): void {
    if (ms < 0) throw new RangeError('a monotonic clock cannot go back')
    this.t += ms
  }
}
