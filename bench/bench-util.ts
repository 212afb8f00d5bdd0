/** What several benchmarks share: polling with a deadline and percentiles. */

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
