/**
 * A small seeded PRNG (sfc32 seeded through splitmix32): the same seed gives the same schedule on every machine
 * and Node version, which is what makes a failing simulation seed replay exactly.
 */
export class Prng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor (seed: number) {
    let s = seed >>> 0
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0
      let z = s
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
      return (z ^ (z >>> 16)) >>> 0
    }
    this.a = next(); this.b = next(); this.c = next(); this.d = next()
    for (let i = 0; i < 12; i++) this.next()
  }

  /** Uniform in [0, 1). */
  next (): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0
    this.d = (this.d + 1) >>> 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) >>> 0
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0
    this.c = (this.c + t) >>> 0
    return t / 4294967296
  }

  /** Uniform in [min, max). */
  range (min: number, max: number): number { return min + (max - min) * this.next() }
  /** Integer in [min, max]. */
  int (min: number, max: number): number { return min + Math.floor(this.next() * (max - min + 1)) }
  chance (p: number): boolean { return this.next() < p }
  pick<T> (xs: readonly T[]): T {
    if (xs.length === 0) throw new RangeError('pick from an empty list')
    return xs[Math.floor(this.next() * xs.length)]!
  }

  /** A derived generator (for a member's own jitter), so adding draws in one place does not shift the others. */
  fork (): Prng { return new Prng(Math.floor(this.next() * 4294967296)) }
  /** A function view, for components that take `random: () => number`. */
  fn (): () => number { return () => this.next() }
}
