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

export const monotonicClock: Clock = {
  now: () => Number(process.hrtime.bigint() / 1000n) / 1000,
  wallNow: () => Date.now()
}

/** `process.hrtime.bigint()` in nanoseconds: one clock for every process of a machine (used in interval logs). */
export function hrtimeNs (): bigint {
  return process.hrtime.bigint()
}

/** Adds ±`fraction` uniform jitter to `ms` (client-go JitterFactor style: only upwards when `upOnly`). */
export function jitter (ms: number, fraction = 0.2, random: () => number = Math.random, upOnly = false): number {
  const r = random()
  return upOnly ? ms * (1 + fraction * r) : ms * (1 + fraction * (2 * r - 1))
}
