/**
 * The driver around the membership/leadership state machine: it owns the tick timer (jittered, unref'd), feeds
 * transport requests, replies, disconnections, discovery results and outside facts into the machine, executes its
 * outputs (sends through the transport, persistence through the state port, events on a typed emitter), and is the
 * daemon's `Leadership`: `isLeader()` asks the machine about the lease against the monotonic clock *now*.
 *
 * NOT guaranteed here:
 * - that the transport is started: the daemon starts it before this part (and stops it after);
 * - that a `leader:elected` listener runs before the lease could end: leader-only effects must call `isLeader()`
 *   right before acting, and watch the event's abort signal;
 * - durability beyond what `ClusterStatePort.save` gives: it must be synchronous and durable when it returns.
 *   If it throws, the outputs that follow it in the same step are dropped (nothing acts on unsaved state) and the
 *   membership stops for good (`cluster:failed`): this member then never leads.
 */
import { randomUUID } from 'node:crypto'
import type { Startable } from '../daemon/lifecycle.js'
import type { Logger } from '../daemon/logger.js'
import { silentLogger } from '../daemon/logger.js'
import { hrtimeNs, monotonicClock, type Clock } from '../daemon/clock.js'
import { TypedEmitter } from '../daemon/typed-events.js'
import type { Epoch, Leadership, LeadershipEvents, LeaderDemotedEvent } from './leadership-api.js'
import { decodeMessage, type ClusterRequest, type MemberInfo, type ViewData } from './messages.js'
import {
  MembershipMachine, type MembershipInput, type MembershipOutput, type MembershipStatus, type PersistedClusterState,
  type SendFailure
} from './membership.js'
import type { MembershipInit } from './membership-config.js'

/** What the driver needs of the transport (the libp2p transport implements it; tests use an in-memory one). */
export interface ClusterTransportLike {
  readonly peerId: string
  request(address: string, payload: unknown, opts?: { timeoutMs?: number, signal?: AbortSignal }): Promise<{ peerId: string, reply: unknown }>
  handle(handler: (from: { peerId: string, remoteAddress: string }, payload: unknown) => unknown): void
  onDisconnect(listener: (peerId: string) => void): () => void
}

/** Synchronous persistence of the machine's state (the daemon backs it with SQLite). */
export interface ClusterStatePort {
  load(): PersistedClusterState | undefined
  save(state: PersistedClusterState): void
}

export interface ClusterNodeComponents {
  transport: ClusterTransportLike
  state: ClusterStatePort
  clock?: Clock
  logger?: Logger
  /** Jitter source (default Math.random). */
  random?: () => number
}

export interface ClusterNodeInit extends MembershipInit {
  /** This member's name (`POD_NAME`). */
  name: string
  /** "ip:port" peers reach this member's cluster transport at (`POD_IP`:`VECTIS_CLUSTER_PORT`). */
  address: string
  /** New at every process start; default a random UUID. */
  incarnation?: string
  /** Tick period; default HB / 5. */
  tickMs?: number
}

export type ClusterNodeEvents = LeadershipEvents & {
  'view:installed': { view: ViewData, primary: boolean }
  'member:suspected': { member: MemberInfo, reason: string }
  'member:left': { member: MemberInfo, reason: 'left' | 'excluded' | 'dead' }
  /** This member finished its graceful leave. */
  'cluster:left': Record<string, never>
  /** The state could not be persisted: membership stopped (this member no longer takes part). */
  'cluster:failed': { error: Error }
}

function failureCode (err: unknown): SendFailure {
  const code = (err as { code?: unknown } | null)?.code
  return code === 'refused' || code === 'timeout' || code === 'closed' || code === 'denied' || code === 'invalid' ? code : 'closed'
}

export class ClusterNode implements Startable, Leadership {
  readonly events = new TypedEmitter<ClusterNodeEvents>()
  private readonly clock: Clock
  private readonly log: Logger
  private readonly random: () => number
  private machine: MembershipMachine | undefined
  private status_: 'idle' | 'started' | 'failed' | 'stopped' = 'idle'
  private timer: NodeJS.Timeout | undefined
  private unsubscribe: (() => void) | undefined
  private leadership: { epoch: Epoch, controller: AbortController, startNs: bigint } | undefined
  private lastEpoch: Epoch | undefined
  private readonly leftWaiters: Array<() => void> = []
  private readonly tickMs: number
  readonly incarnation: string

  constructor (private readonly components: ClusterNodeComponents, private readonly init: ClusterNodeInit) {
    this.clock = components.clock ?? monotonicClock
    this.log = (components.logger ?? silentLogger()).child({ component: 'cluster:membership', node: init.name })
    this.random = components.random ?? Math.random
    this.incarnation = init.incarnation ?? randomUUID()
    this.tickMs = init.tickMs ?? (init.heartbeatMs ?? 500) / 5
  }

  get me (): MemberInfo | undefined { return this.machine?.me }

  async start (): Promise<void> {
    if (this.status_ !== 'idle') return
    const me: MemberInfo = { name: this.init.name, peerId: this.components.transport.peerId, incarnation: this.incarnation, address: this.init.address }
    const persisted = this.components.state.load()
    // Validates the options (throws MembershipConfigError naming the fields) before anything is wired.
    const machine = new MembershipMachine({ me, ...(persisted !== undefined ? { persisted } : {}), random: this.random }, this.init, this.clock.now())
    this.machine = machine
    this.status_ = 'started'
    this.components.transport.handle((from, payload) => this.onRequest(from, payload))
    this.unsubscribe = this.components.transport.onDisconnect((peerId) => { this.input({ type: 'disconnected', peerId }) })
    if (this.init.quorum === 'none') this.log.warn('VECTIS_QUORUM=none: every view\'s coordinator leads; a partition means two leaders')
    if (this.init.forceNewCluster === true) this.log.warn('VECTIS_FORCE_NEW_CLUSTER: starting a new primary view from this member alone, forgetting the old one')
    this.log.info({ member: me }, 'membership started')
    this.scheduleTick(this.tickMs * this.random())
  }

  private fail (err: unknown): void {
    if (this.status_ !== 'started') return
    this.status_ = 'failed'
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.unsubscribe?.()
    this.endLeadership('shutdown')
    this.events.emit('cluster:failed', { error: err instanceof Error ? err : new Error(String(err)) })
  }

  async stop (): Promise<void> {
    if (this.status_ !== 'started') { this.status_ = 'stopped'; return }
    this.status_ = 'stopped'
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.unsubscribe?.()
    this.endLeadership('shutdown')
    for (const w of this.leftWaiters.splice(0)) w()
  }

  /** Graceful leave (SIGTERM): hands the leadership over first; resolves when done or after `timeoutMs`. */
  async leave (timeoutMs = 2000): Promise<void> {
    if (this.status_ !== 'started') return
    const done = new Promise<void>((resolve) => {
      this.leftWaiters.push(resolve)
      const t = setTimeout(resolve, timeoutMs)
      t.unref()
    })
    this.input({ type: 'leave' })
    await done
  }

  /** `POST /api/cluster/leadership/transfer`: hand the leadership to `to` or the next oldest. */
  transferLeadership (to?: string): void {
    this.input(to !== undefined ? { type: 'transfer', to } : { type: 'transfer' })
  }

  /** Discovery results ("ip:port" of cluster ports), replacing the previous ones. */
  discovered (addresses: string[]): void { this.input({ type: 'discovered', addresses }) }

  /** An outside authority (Kubernetes) shows this member's process gone. */
  verifiedDead (name: string, incarnation?: string): void {
    this.input(incarnation !== undefined ? { type: 'verified-dead', name, incarnation } : { type: 'verified-dead', name })
  }

  isLeader (): boolean { return this.status_ === 'started' && (this.machine?.isLeader(this.clock.now()) ?? false) }
  currentEpoch (): Epoch | undefined { return this.machine?.currentEpoch() }
  leaseRemainingMs (): number {
    if (this.status_ !== 'started') return 0
    const r = this.machine?.leaseRemaining(this.clock.now()) ?? 0
    return Number.isFinite(r) ? r : 0
  }

  status (): MembershipStatus | undefined { return this.machine?.status(this.clock.now()) }

  // ---------------------------------------------------------------------------------------------------------

  private scheduleTick (ms: number): void {
    if (this.status_ !== 'started') return
    this.timer = setTimeout(() => {
      this.input({ type: 'tick' })
      // Jittered (±10 %) so members do not tick in lockstep.
      this.scheduleTick(this.tickMs * (0.9 + 0.2 * this.random()))
    }, ms)
    this.timer.unref()
  }

  private input (input: MembershipInput): void {
    if (this.status_ !== 'started' || this.machine === undefined) return
    this.execute(this.machine.handle(input, this.clock.now()))
  }

  private onRequest (_from: { peerId: string, remoteAddress: string }, payload: unknown): unknown {
    if (this.status_ !== 'started' || this.machine === undefined) throw new Error('membership is not running')
    const msg = decodeMessage(payload)
    if (msg.type === 'reply') throw new Error('a reply is not a request')
    const out = this.machine.handle({ type: 'message', msg: msg }, this.clock.now())
    let reply: unknown
    for (const o of out) if (o.type === 'reply') reply = o.msg
    this.execute(out)
    return reply
  }

  private execute (out: MembershipOutput[]): void {
    for (const o of out) {
      switch (o.type) {
        case 'persist':
          try {
            this.components.state.save(o.state)
          } catch (err) {
            // Never act on state that is not durable: drop the rest of this step and leave the cluster part for
            // good (the machine already moved on in memory). The daemon decides what to do (exit, restart).
            this.log.error({ err }, 'cannot persist the cluster state: membership stopped')
            this.fail(err)
            return
          }
          break
        case 'send': this.send(o.id, o.to, o.msg, o.timeoutMs); break
        case 'reply': break
        case 'event': this.onEvent(o.event); break
        case 'log':
          this.log[o.level](o.fields ?? {}, o.msg)
          break
      }
    }
  }

  private send (id: number, to: string, msg: ClusterRequest, timeoutMs: number): void {
    this.components.transport.request(to, msg, { timeoutMs }).then(
      (res) => {
        let reply
        try {
          reply = decodeMessage(res.reply)
        } catch (err) {
          this.log.warn({ err, to }, 'invalid reply')
          this.input({ type: 'send-result', id, ok: false, error: 'invalid' })
          return
        }
        if (reply.type !== 'reply') { this.input({ type: 'send-result', id, ok: false, error: 'invalid' }); return }
        this.input({ type: 'send-result', id, ok: true, reply })
      },
      (err: unknown) => { this.input({ type: 'send-result', id, ok: false, error: failureCode(err) }) }
    )
  }

  private onEvent (e: Extract<MembershipOutput, { type: 'event' }>['event']): void {
    switch (e.type) {
      case 'view:installed':
        this.log.info({ viewId: e.view.id, members: e.view.members.map(m => m.name), primary: e.primary }, 'view installed')
        this.events.emit('view:installed', { view: e.view, primary: e.primary })
        break
      case 'member:suspected':
        this.log.info({ member: e.member.name, reason: e.reason }, 'member suspected')
        this.events.emit('member:suspected', { member: e.member, reason: e.reason })
        break
      case 'member:left':
        this.log.info({ member: e.member.name, reason: e.reason }, 'member left the view')
        this.events.emit('member:left', { member: e.member, reason: e.reason })
        break
      case 'leader:elected': {
        this.endLeadership('superseded')
        const controller = new AbortController()
        const startNs = hrtimeNs()
        this.leadership = { epoch: e.epoch, controller, startNs }
        this.lastEpoch = e.epoch
        // One line per leadership interval edge, on the machine-wide monotonic clock: tests prove that the
        // intervals of different members never overlap.
        this.log.info({ epoch: e.epoch, leadershipStartNs: startNs.toString() }, 'leader elected')
        this.events.emit('leader:elected', { epoch: e.epoch, signal: controller.signal })
        break
      }
      case 'leader:demoted':
        this.endLeadership(e.reason, e.leaseEnd)
        break
      case 'self:left':
        this.log.info('left the cluster gracefully')
        this.events.emit('cluster:left', {})
        for (const w of this.leftWaiters.splice(0)) w()
        break
    }
  }

  private endLeadership (reason: LeaderDemotedEvent['reason'], leaseEnd?: number): void {
    const l = this.leadership
    if (l === undefined) return
    this.leadership = undefined
    // The lease may have run out before this step noticed (after a pause): log when it really ended.
    const lateMs = leaseEnd !== undefined ? Math.max(0, this.clock.now() - leaseEnd) : 0
    const endNs = hrtimeNs() - BigInt(Math.round(lateMs * 1e6))
    this.log.info({ epoch: l.epoch, reason, leadershipStartNs: l.startNs.toString(), leadershipEndNs: endNs.toString() }, 'leader demoted')
    l.controller.abort(new Error(`leadership ended: ${reason}`))
    this.events.emit('leader:demoted', { epoch: l.epoch, reason })
  }

  /** The epoch of the last leadership this member held (for status after demotion). */
  lastLeadershipEpoch (): Epoch | undefined { return this.lastEpoch }
}
