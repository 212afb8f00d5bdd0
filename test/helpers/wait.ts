/** Thrown from a condition to stop polling at once (the awaited thing can no longer happen). */
export class WaitAborted extends Error {
  override name = 'WaitAborted'
}

/** Polls `cond` until it returns true (or a truthy promise) or the deadline passes. Never a fixed sleep. */
export async function waitFor (cond: () => boolean | Promise<boolean>, opts: { timeoutMs?: number, intervalMs?: number, what?: string } = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000)
  const interval = opts.intervalMs ?? 20
  let lastErr: unknown
  for (;;) {
    try {
      if (await cond()) return
      lastErr = undefined
    } catch (err) {
      if (err instanceof WaitAborted) throw err
      lastErr = err
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${opts.timeoutMs ?? 10_000} ms waiting for ${opts.what ?? 'condition'}${lastErr === undefined ? '' : `: ${lastErr instanceof Error ? lastErr.message : JSON.stringify(lastErr)}`}`)
    }
    await new Promise((resolve) => setTimeout(resolve, interval))
  }
}
