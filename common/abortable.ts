/** Cancellation helpers: racing a promise against a signal, and a deadline that is one signal with its links. */

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

/**
 * A deadline plus linked cancellations as one signal, released by `dispose()`. Hand-made rather than
 * `AbortSignal.any([AbortSignal.timeout(…), …])`: that allocates a timer and a composite signal the runtime keeps
 * track of for every request, on the heartbeat path of a process that runs for months. The abort reason says
 * what happened (e.g. a `TransportError` with the right code).
 */
export class Deadline {
  private readonly controller = new AbortController()
  private readonly timer: NodeJS.Timeout
  private readonly unlinks: Array<() => void> = []

  constructor (ms: number, reason: () => Error) {
    this.timer = setTimeout(() => { this.abort(reason()) }, ms)
  }

  get signal (): AbortSignal { return this.controller.signal }

  link (other: AbortSignal, reason: () => Error): void {
    if (other.aborted) {
      this.abort(reason())
      return
    }
    const onAbort = (): void => { this.abort(reason()) }
    other.addEventListener('abort', onAbort, { once: true })
    this.unlinks.push(() => { other.removeEventListener('abort', onAbort) })
  }

  private abort (reason: Error): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason)
  }

  dispose (): void {
    clearTimeout(this.timer)
    for (const u of this.unlinks) u()
    this.unlinks.length = 0
  }
}
