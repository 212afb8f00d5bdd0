/** Polls `predicate` until it returns a truthy value (returned) or the deadline passes (throws, naming `what`). */
export async function waitFor<T> (
  predicate: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  opts: { timeoutMs?: number, intervalMs?: number, what?: string } = {}
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 5000
  const intervalMs = opts.intervalMs ?? 20
  const deadline = Date.now() + timeoutMs
  let lastErr: unknown
  for (;;) {
    try {
      const v = await predicate()
      if (v !== undefined && v !== null && v !== false) return v
    } catch (err) {
      lastErr = err
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what ?? 'a condition'}`, { cause: lastErr })
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
