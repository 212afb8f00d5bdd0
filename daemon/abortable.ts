/** Resolves as `p`, or rejects with the signal's reason when `signal` aborts first (`p` itself is not cancelled). */
export async function raceAbort<T> (p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) throw signal.reason
  let reject!: (err: unknown) => void
  const aborted = new Promise<never>((_res, rej) => { reject = rej })
  const onAbort = (): void => { reject(signal.reason) }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    return await Promise.race([p, aborted])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}
