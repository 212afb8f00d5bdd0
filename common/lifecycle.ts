import type { Logger } from './logger.js'

/**
 * Every long-lived part implements this: `start()` and `stop()` are idempotent; a failed `start()` releases what
 * it took and rethrows; `stop()` releases every timer and socket the part owns.
 */
export interface Startable {
  start(): Promise<void>
  stop(): Promise<void>
}

export interface NamedPart {
  name: string
  part: Startable
}

/**
 * Starts parts in order and stops them in reverse. If a start fails, the parts already started are stopped (in
 * reverse) and the error is rethrown, so the daemon never runs half-started.
 */
export class Lifecycle {
  private readonly started: NamedPart[] = []
  private status: 'idle' | 'starting' | 'started' | 'stopping' | 'stopped' = 'idle'

  constructor (private readonly parts: NamedPart[], private readonly log: Logger) {}

  get state (): string { return this.status }

  private starting: Promise<void> | undefined

  async start (): Promise<void> {
    if (this.status !== 'idle') return
    this.status = 'starting'
    this.starting = this.startParts()
    return this.starting
  }

  private async startParts (): Promise<void> {
    for (const p of this.parts) {
      if (this.status !== 'starting') break // a stop() came in during start-up
      this.log.debug({ part: p.name }, 'starting')
      try {
        await p.part.start()
      } catch (err) {
        this.log.error({ err, part: p.name }, 'start failed; stopping what was started')
        await this.stopStarted()
        this.status = 'stopped'
        throw err
      }
      this.started.push(p)
    }
    if (this.status === 'starting') this.status = 'started'
  }

  async stop (): Promise<void> {
    if (this.status === 'stopping' || this.status === 'stopped') return
    const wasStarting = this.status === 'starting'
    this.status = 'stopping'
    // A stop during start-up lets the part being started finish, then unwinds everything started so far.
    if (wasStarting) await this.starting?.catch(() => {})
    await this.stopStarted()
    this.status = 'stopped'
  }

  private async stopStarted (): Promise<void> {
    while (this.started.length > 0) {
      const p = this.started.pop()!
      try {
        this.log.debug({ part: p.name }, 'stopping')
        await p.part.stop()
      } catch (err) {
        this.log.error({ err, part: p.name }, 'stop failed')
      }
    }
  }
}
