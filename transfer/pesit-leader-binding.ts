/**
 * Runs the PeSIT servers only while this member leads: starts them after `leader:elected` (and after
 * `beforeStart`, e.g. the Kubernetes label being in place), stops them on `leader:demoted` (with IDT at the next
 * sync point when the reason is a hand-over, ABORT otherwise) and at shutdown. Transitions are serialised: a
 * demotion that arrives while the servers are still starting stops them right after.
 *
 * NOT guaranteed by this binding: that no connection is served after the lease expired but before the demotion
 * event; the servers check the lease synchronously on every accept and before every acknowledgement for that.
 */
import type { Logger } from '../common/logger.js'
import type { Startable } from '../common/lifecycle.js'
import type { Epoch, Leadership, LeaderElectedEvent, LeaderDemotedEvent } from '../cluster/leadership-api.js'
import type { StopOptions } from './pesit-server.js'

export interface LeaderRunnable {
  start(): Promise<void>
  stop(opts?: StopOptions): Promise<void>
  /** True while a hand-over owns the servers (holding, interrupting, forwarding): it stops them itself. */
  handingOver?(): boolean
}

export interface PesitLeaderBindingComponents {
  logger: Logger
  leadership: Pick<Leadership, 'events' | 'isLeader'>
  servers: LeaderRunnable
}

export interface PesitLeaderBindingInit {
  /** awaited after `leader:elected`, before the listeners open (the label patch); aborted with the leadership */
  beforeStart?: (signal: AbortSignal) => Promise<void>
  /** deadline for transfers to reach a sync point on a hand-over */
  handoverDeadlineMs?: number
  /** called once the servers of a leadership run, with the time since its election (the takeover metric) */
  onServing?: (e: LeaderElectedEvent, sinceElectedMs: number) => void
}

export class PesitLeaderBinding implements Startable {
  private readonly log: Logger
  private chain: Promise<void> = Promise.resolve()
  private offs: Array<() => void> = []
  /** The epoch of the leadership whose servers run, while they do. */
  private running: number | undefined
  private started = false

  constructor (private readonly components: PesitLeaderBindingComponents, private readonly init: PesitLeaderBindingInit = {}) {
    this.log = components.logger.child({ component: 'transfer:leader-binding' })
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    const ev = this.components.leadership.events
    this.offs.push(ev.on('leader:elected', (e) => {
      const at = performance.now()
      this.enqueue(async () => { await this.onElected(e, at) })
    }))
    this.offs.push(ev.on('leader:demoted', (e) => { this.enqueue(async () => { await this.onDemoted(e) }) }))
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    for (const off of this.offs.splice(0)) off()
    this.enqueue(async () => { await this.stopServers({}) })
    await this.chain
  }

  /** Resolves when every queued transition has been applied (tests, shutdown). */
  async settled (): Promise<void> { await this.chain }

  private enqueue (fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn).catch((err: unknown) => { this.log.error({ err }, 'PeSIT server transition failed') })
  }

  private async onElected (e: LeaderElectedEvent, electedAt: number): Promise<void> {
    if (e.signal.aborted || this.running !== undefined) return
    await this.init.beforeStart?.(e.signal)
    if (e.signal.aborted || !this.components.leadership.isLeader()) {
      this.log.info('leadership ended before the PeSIT servers started')
      return
    }
    await this.components.servers.start()
    this.running = e.epoch.number
    this.log.info({ epoch: e.epoch.number }, 'PeSIT servers started (leader)')
    this.init.onServing?.(e, performance.now() - electedAt)
    // A demotion normally arrives as an event; the signal covers an end of leadership without one.
    e.signal.addEventListener('abort', () => { this.enqueue(async () => { await this.stopServers({}) }) }, { once: true })
  }

  private async onDemoted (e: LeaderDemotedEvent): Promise<void> {
    await this.stopServers(e.reason === 'handover' ? { handover: true, deadlineMs: this.init.handoverDeadlineMs ?? 5000 } : {})
    this.log.info({ reason: e.reason }, 'PeSIT servers stopped (no longer leader)')
  }

  /**
   * A leadership that must not serve although its lease still runs (the label controller found its pod fenced by
   * a newer epoch): its servers stop (ABORT, no hand-over) and start again only with a later leadership. A call
   * about another epoch than the one serving does nothing.
   */
  standDown (epoch: Epoch, reason: string): void {
    this.enqueue(async () => {
      if (this.running !== epoch.number) return
      await this.stopServers({})
      this.log.warn({ epoch: epoch.number, reason }, 'PeSIT servers stopped: this leadership must not serve')
    })
  }

  private async stopServers (opts: StopOptions): Promise<void> {
    if (this.running === undefined) return
    this.running = undefined
    if (this.components.servers.handingOver?.() === true) {
      this.log.info('hand-over in progress: it forwards new connections, then stops the servers')
      return
    }
    await this.components.servers.stop(opts)
  }
}
