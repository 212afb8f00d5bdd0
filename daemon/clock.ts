/**
 * Time as the parts see it. Everything that reasons about timeouts and leases takes a `Clock` so tests and the
 * simulation can drive time by hand; production uses the monotonic clock, which never jumps with NTP or the
 * wall clock.
 */
export interface Clock {
  /** Monotonic milliseconds (fractional), only meaningful as differences. */
  now(): number
  /** Wall-clock milliseconds since the epoch, for timestamps shown to people. */
  wallNow(): number
}

const NS_PER_MS = 1_000_000n

export const monotonicClock: Clock = {
  now: () => Number(process.hrtime.bigint() / 1000n) / 1000,
  wallNow: () => Date.now()
}

/** `process.hrtime.bigint()` in nanoseconds: one clock for every process of a machine (used in interval logs). */
export function hrtimeNs (): bigint {
  return process.hrtime.bigint()
}

export function nsToMs (ns: bigint): number {
  return Number(ns / NS_PER_MS)
}

/** A clock moved by hand, for unit tests. */
export class ManualClock implements Clock {
  constructor (private t = 0, private wallBase = Date.UTC(2026, 0, 1)) {}
  now (): number { return this.t }
  wallNow (): number { return this.wallBase + this.t }
  advance (ms: number): void {
    if (ms < 0) throw new RangeError('a monotonic clock cannot go back')
    this.t += ms
  }
}

/** Adds ±`fraction` uniform jitter to `ms` (client-go JitterFactor style: only upwards when `upOnly`). */
export function jitter (ms: number, fraction = 0.2, random: () => number = Math.random, upOnly = false): number {
  const r = random()
  return upOnly ? ms * (1 + fraction * r) : ms * (1 + fraction * (2 * r - 1))
}
