/** Thrown from a condition to stop polling at once (the awaited thing can no longer happen). */
export class WaitAborted extends Error {
  override name = 'WaitAborted'
}

/**
 * The one polling helper of the tests: calls `cond` until it returns a truthy value (which is returned) or the
 * deadline passes (throws, naming `what`, with the last error the condition threw as the cause). Never a fixed sleep.
 * A condition that throws `WaitAborted` stops the wait at once.
 */
export async function waitFor<T> (
  cond: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  opts: { timeoutMs?: number, intervalMs?: number, what?: string } = {}
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 10_000
  const deadline = Date.now() + timeoutMs
  const interval = opts.intervalMs ?? 20
  let lastErr: unknown
  for (;;) {
    try {
      const v = await cond()
      if (v !== undefined && v !== null && v !== false) return v
      lastErr = undefined
    } catch (err) {
      if (err instanceof WaitAborted) throw err
      lastErr = err
    }
    if (Date.now() > deadline) {
      const why = lastErr === undefined ? '' : `: ${lastErr instanceof Error ? lastErr.message : JSON.stringify(lastErr)}`
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what ?? 'a condition'}${why}`, { cause: lastErr })
    }
    await new Promise((resolve) => setTimeout(resolve, interval))
  }
}
