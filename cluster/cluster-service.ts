/**
 * The cluster member: the deterministic membership/leadership machine (`membership/machine.ts`) driven by real I/O.
 * It owns the tick timer, feeds the machine with received requests, send results, disconnections and discovered
 * addresses through the driver (`membership/driver.ts`, which executes the outputs: persist first, then sends,
 * events, logs), does the sends, and exposes the result as the daemon's `ClusterService` and `Leadership`.
 *
 * NOT guaranteed here (see also the machine's own list): that a `leader:demoted` event fires the instant a lease
 * runs out. A process that was frozen learns it at its next tick; that is why `isLeader()` reads the lease from the
 * monotonic clock synchronously, and why every leader-only effect calls it right before acting.
 */
import { monotonicClock, hrtimeNs, jitter, type Clock } from '../common/clock.js'
import type { Logger } from '../common/logger.js'
import { deferred, type Deferred } from '../common/deferred.js'
import { TypedEmitter } from '../common/typed-events.js'
import type { ClusterEvents, ClusterService, ClusterStatus, ServiceHandler, StatusMember, TransferResult } from './cluster-api.js'
import { LeadershipTransferError } from './errors.js'
import type { Epoch, HandoverHooks, Leadership } from './leadership-api.js'
import { MembershipDriver } from './membership/driver.js'
import { MembershipMachine } from './membership/machine.js'
import type { MemberIdentity, MembershipComponents, MembershipEvent, MembershipInput, PersistedClusterState, SendFailure } from './membership/types.js'
import type { MembershipInit } from './membership/config.js'
import {
  decodeMessage, InvalidMessageError, OLDEST_UNDERSTOOD_VERSION, PROTOCOL_VERSION, UnsupportedVersionError, type ClusterRequest, type MemberInfo,
  type ReplyMessage
} from './messages.js'
import type { ClusterTransport } from './transport-types.js'
import { TransportError } from './errors.js'
import { DEFAULT_HANDOVER_DRAIN_MS } from './defaults.js'
import { decodePersistedState } from './membership/persisted-state.js'

/**
 * Where the machine's persisted state lives (the store in the daemon; memory in tests). Synchronous and durable.
 * `load` returns what was saved as the store read it; the member validates it (`decodePersistedState`).
 */
export interface ClusterStatePort {
  load(): unknown
  save(state: PersistedClusterState): void
}

/** What the driver needs of discovery. */
export interface PeerSource {
  start(): Promise<void>
  stop(): Promise<void>
  onPeers(listener: (peers: string[]) => void): () => void
  setJoined(joined: boolean): void
}

export interface ClusterServiceComponents {
  logger: Logger
  transport: ClusterTransport
  discovery: PeerSource
  state: ClusterStatePort
  clock?: Clock
  random?: () => number
  /** Builds the machine (tests substitute one that fails, to prove what a failure does). */
  createMachine?: (components: MembershipComponents, init: MembershipInit, now: number) => MembershipMachine
}

export interface ClusterServiceInit extends MembershipInit {
  clusterName: string
  nodeName: string
  /** Advertised host (POD_IP) and cluster port: this member's address "ip:port". */
  advertiseHost: string
  clusterPort: number
  /** How long the old leader forwards new connections after a hand-over. */
  handoverDrainMs?: number
  /** Bound on the interruption of live transfers during a hand-over. */
  handoverInterruptMs?: number
  /** Bound on a graceful leave at stop(). */
  leaveTimeoutMs?: number
}

type HandoverOutcome = { ok: true, epoch: Epoch } | { ok: false, reason: string }

interface Leading {
  epoch: Epoch
  abort: AbortController
  startNs: bigint
  /** End of the lease as last computed (monotonic ms); a demotion after a pause ends the interval here. */
  leaseEnd: number
}

const FAILURES = new Set<SendFailure>(['refused', 'timeout', 'closed', 'denied', 'invalid'])

/** The transport's error code (TransportError or any error with a known `code`); anything else counts as closed. */
function failureOf (err: unknown): SendFailure {
  const code = err instanceof TransportError ? err.code : (err as { code?: unknown } | undefined)?.code
  return typeof code === 'string' && FAILURES.has(code as SendFailure) ? code as SendFailure : 'closed'
}

function hostOf (address: string): string {
  const i = address.lastIndexOf(':')
  return (i < 0 ? address : address.slice(0, i)).replace(/^\[|\]$/g, '')
}

/** A takeover is timed from the old leader's last sign of life only if that was this recent. */
const LEADER_SIGN_MAX_MS = 5 * 60 * 1000

export class MembershipCluster implements ClusterService, Leadership {
  readonly events = new TypedEmitter<ClusterEvents>()
  private readonly log: Logger
  private readonly clock: Clock
  private readonly random: () => number
  private driver: MembershipDriver | undefined
  private timer: NodeJS.Timeout | undefined
  private offs: Array<() => void> = []
  private running = false
  /** Peers (peer ids or addresses) already reported incompatible. */
  private readonly incompatiblePeers = new Set<string>()
  /** Handlers of the other parts' requests (`serve`). */
  private readonly services = new Map<string, ServiceHandler>()
  private leading: Leading | undefined
  private readonly hooks: HandoverHooks[] = []
  private selfLeft: (() => void) | undefined
  /** The outcome of the hand-over in progress, settled by the machine's `handover:completed` or `handover:failed`. */
  private handoverOutcome: Deferred<HandoverOutcome> | undefined
  private failedCause: 'persist' | 'machine' | undefined
  /** The leader this member followed and when it last heard from it (see LeaderElectedEvent.previousLeaderSilentMs). */
  private leaderSign: { name: string, at: number } | undefined

  constructor (private readonly components: ClusterServiceComponents, private readonly init: ClusterServiceInit) {
    this.log = components.logger.child({ component: 'cluster:member' })
    this.clock = components.clock ?? monotonicClock
    this.random = components.random ?? Math.random
  }

  get leadership (): Leadership { return this }

  /** Parts with leader-only work register how to hand it over (PeSIT servers). Run in registration order. */
  registerHandoverHooks (hooks: HandoverHooks): void { this.hooks.push(hooks) }

  // ---- Startable ------------------------------------------------------------------------------------------------

  async start (): Promise<void> {
    if (this.running) return
    const { transport, discovery, state } = this.components
    await transport.start()
    try {
      const me: MemberIdentity = {
        name: this.init.nodeName,
        peerId: transport.peerId,
        address: `${this.init.advertiseHost.includes(':') ? `[${this.init.advertiseHost}]` : this.init.advertiseHost}:${this.init.clusterPort}`
      }
      const persisted = decodePersistedState(state.load())
      const create = this.components.createMachine ?? ((c, i, now) => new MembershipMachine(c, i, now))
      this.driver = new MembershipDriver(create({ me, persisted, random: this.random }, this.init, this.clock.now()), {
        // Durable before anything that follows is acted on (a promise or an epoch must survive a crash).
        persist: (state) => { this.components.state.save(state) },
        send: (o) => { this.send(o.id, o.to, o.msg, o.timeoutMs) },
        event: (e) => { this.onEvent(e) },
        log: (o) => { this.log[o.level](o.fields ?? {}, o.msg) },
        failed: (err, cause) => { this.fail(err, cause) }
      })
      if (this.init.forceNewCluster === true) {
        this.log.warn({ member: me.name }, 'VECTIS_FORCE_NEW_CLUSTER: starting a new primary view from this member alone, forgetting the old one')
      }
      this.log.info({ member: this.driver.machine.me, persistedEpoch: persisted?.highestEpoch }, 'cluster member starting')
      this.running = true
      transport.handle((from, payload) => this.onRequest(from.peerId, payload))
      this.offs.push(transport.onDisconnect((peerId) => { this.step({ type: 'disconnected', peerId }) }))
      this.offs.push(discovery.onPeers((peers) => { this.step({ type: 'discovered', addresses: peers }) }))
      this.step({ type: 'tick' })
      this.scheduleTick()
      await discovery.start()
    } catch (err) {
      await this.halt()
      throw err
    }
  }

  async stop (): Promise<void> {
    if (!this.running) return
    // Graceful leave: a leader hands over first (its hooks run inside), then the member tells the view it goes.
    try {
      if (this.isLeader() && this.hooks.length > 0) await this.handOver(undefined, true).catch((err: unknown) => { this.log.warn({ err }, 'hand-over at shutdown failed; leaving anyway') })
      const left = new Promise<void>((resolve) => { this.selfLeft = resolve })
      this.step({ type: 'leave' })
      const timeout = this.init.leaveTimeoutMs ?? 2 * (this.driver?.machine.cfg.failureTimeoutMs ?? 0)
      await Promise.race([left, new Promise<void>((resolve) => { setTimeout(resolve, timeout).unref() })])
    } finally {
      await this.halt()
    }
  }

  private async halt (): Promise<void> {
    this.quiesce('shutdown', 'this member stopped')
    for (const off of this.offs.splice(0)) off()
    await this.components.discovery.stop().catch((err: unknown) => { this.log.warn({ err }, 'discovery stop failed') })
    await this.components.transport.stop().catch((err: unknown) => { this.log.warn({ err }, 'transport stop failed') })
  }

  private scheduleTick (): void {
    const cfg = this.driver?.machine.cfg
    if (!this.running || cfg === undefined) return
    // A fifth of the heartbeat, jittered: fine enough for lease and failure timing, no lockstep between members.
    const base = cfg.heartbeatMs / 5
    this.timer = setTimeout(() => {
      this.step({ type: 'tick' })
      this.scheduleTick()
    }, jitter(base, 0.2, this.random))
  }

  // ---- driving the machine --------------------------------------------------------------------------------------

  private step (input: MembershipInput): ReplyMessage | undefined {
    const d = this.driver
    if (d === undefined || (!this.running && input.type !== 'leave')) return undefined
    const now = this.clock.now()
    const reply = d.step(input, now)
    this.trackLease()
    // The last sign of the leader followed, kept when the leader falls silent (and past its removal from the view).
    if (this.leading === undefined) this.leaderSign = d.machine.leaderSign(now) ?? this.leaderSign
    return reply
  }

  /**
   * The state could not be made durable (disk full, I/O error), or the machine threw (a bug): the driver stopped,
   * and with it this member's part in the cluster; it never leads again in this process. `/healthz` reports it, so
   * the orchestrator restarts the pod.
   */
  private fail (err: Error, cause: 'persist' | 'machine'): void {
    this.failedCause = cause
    this.log.fatal({ err }, cause === 'persist'
      ? 'cluster state could not be persisted: this member stops taking part in the cluster'
      : 'membership machine failed on an input: this member stops taking part in the cluster')
    this.quiesce('lease-expired', `this member stopped taking part in the cluster (${err.message})`)
  }

  /** No more ticks or inputs: the leadership (if any) ends for `demotion`, a hand-over in progress fails. */
  private quiesce (demotion: Parameters<typeof this.endLeadership>[0], handoverFailure: string): void {
    this.running = false
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.endLeadership(demotion)
    this.settleHandover({ ok: false, reason: handoverFailure })
  }

  /** Why this member gave up (its state could not be persisted, or its machine failed), if it did. */
  failure (): Error | undefined { return this.driver?.failed }

  private send (id: number, to: string, msg: ClusterRequest, timeoutMs: number): void {
    this.components.transport.request(to, msg, { timeoutMs }).then((res) => {
      let reply: ReplyMessage
      try {
        const decoded = decodeMessage(res.reply)
        if (decoded.type !== 'reply') throw new InvalidMessageError(`expected a reply, got ${decoded.type}`)
        reply = decoded
      } catch (err) {
        if (err instanceof UnsupportedVersionError) this.incompatible(res.peerId, err.version)
        else this.log.debug({ err, to }, 'invalid reply')
        this.step({ type: 'send-result', id, ok: false, error: 'invalid' })
        return
      }
      this.step({ type: 'send-result', id, ok: true, reply })
    }, (err: unknown) => {
      this.step({ type: 'send-result', id, ok: false, error: failureOf(err) })
    })
  }

  /**
   * A peer of a protocol version this member does not understand (docs/design.md §2.7: a member understands its own
   * and the one before): refused, never a crash; said once per peer, and counted.
   */
  private incompatible (peer: string, version: number): void {
    if (this.incompatiblePeers.has(peer)) return
    this.incompatiblePeers.add(peer)
    this.log.warn({ peer, version, understood: `${OLDEST_UNDERSTOOD_VERSION}..${PROTOCOL_VERSION}` },
      'a peer speaks a cluster protocol version this member does not understand: its messages are refused (upgrade one version at a time)')
    this.events.emit('peer:incompatible', { peer, version })
  }

  serve (name: string, handler: ServiceHandler): void {
    this.services.set(name, handler)
  }

  private onRequest (peerId: string, payload: unknown): unknown {
    if (typeof payload === 'object' && payload !== null && typeof (payload as { service?: unknown }).service === 'string') {
      const name = (payload as { service: string }).service
      const handler = this.services.get(name)
      if (handler === undefined || !this.running) throw new InvalidMessageError(`no service ${JSON.stringify(name)} here`)
      return handler(peerId, payload as Record<string, unknown>)
    }
    let msg
    try {
      msg = decodeMessage(payload)
    } catch (err) {
      if (err instanceof UnsupportedVersionError) this.incompatible(peerId, err.version)
      else this.log.debug({ err }, 'invalid cluster message refused')
      throw err
    }
    if (msg.type === 'reply') throw new InvalidMessageError('a reply is not a request')
    const reply = this.step({ type: 'message', msg })
    if (reply === undefined) throw new InvalidMessageError('not running')
    return reply
  }

  /**
   * Feeds a death shown by an outside authority (the Kubernetes API: pod deleted or container restarted), with the
   * incarnation the pod's annotation named. The report can come late (a re-list after a gap in the watch), when the
   * process that replaced the dead one is already a member: the machine takes it as proof for the incarnation it
   * names only, and probes the others of that name it sees (`FailureDetector.externalDeath`).
   */
  verifiedDead (name: string, incarnation?: string): void {
    if (name === this.init.nodeName) return
    this.step({ type: 'verified-dead', name, ...(incarnation !== undefined ? { incarnation } : {}) })
  }

  /** This process's incarnation (once started). */
  get incarnation (): string | undefined { return this.driver?.machine.me.incarnation }

  // ---- events and leadership ------------------------------------------------------------------------------------

  private onEvent (e: MembershipEvent): void {
    switch (e.type) {
      case 'view:installed': {
        const leader = this.driver?.machine.status(this.clock.now()).leader
        const members = e.view.members.map((m) => this.apiMember(m, leader))
        this.log.info({ viewId: e.view.id, members: e.view.members.map((m) => m.name), primary: e.primary }, 'view installed')
        this.components.discovery.setJoined(e.view.members.length > 1)
        this.events.emit('view:installed', { viewId: { coordinator: e.view.id.coordinator, id: e.view.id.counter }, members })
        break
      }
      case 'member:suspected':
        this.log.info({ member: e.member.name, reason: e.reason }, 'member suspected')
        this.events.emit('member:suspected', { name: e.member.name, address: hostOf(e.member.address) })
        break
      case 'member:left':
        this.log.info({ member: e.member.name, reason: e.reason }, 'member left')
        this.events.emit('member:left', { name: e.member.name, address: hostOf(e.member.address) })
        break
      case 'leader:elected': {
        this.endLeadership('superseded')
        const abort = new AbortController()
        const now = this.clock.now()
        // Kept (not consumed) until another leader is followed: a leadership ended before it served is followed by
        // a re-election that is the same takeover. A sign older than LEADER_SIGN_MAX_MS (a member long cut off) is no
        // takeover's start.
        const previous = this.leaderSign !== undefined && this.leaderSign.name !== this.init.nodeName && now - this.leaderSign.at <= LEADER_SIGN_MAX_MS
          ? this.leaderSign
          : undefined
        this.leading = { epoch: e.epoch, abort, startNs: hrtimeNs(), leaseEnd: now + (this.driver?.leaseRemaining(now) ?? 0) }
        const previousLeaderSilentMs = previous === undefined ? undefined : Math.max(0, now - previous.at)
        this.log.info({ epoch: e.epoch, leadershipStartNs: this.leading.startNs.toString(), previousLeader: previous?.name, previousLeaderSilentMs },
          'leader elected: this member leads')
        this.events.emit('leader:elected', { epoch: e.epoch, signal: abort.signal, ...(previousLeaderSilentMs !== undefined ? { previousLeaderSilentMs } : {}) })
        break
      }
      case 'leader:demoted':
        if (this.leading !== undefined) this.leading.leaseEnd = Math.min(this.leading.leaseEnd, e.leaseEnd)
        this.endLeadership(e.reason)
        break
      case 'self:left':
        this.log.info('left the cluster')
        this.selfLeft?.()
        break
      case 'handover:completed':
        this.settleHandover({ ok: true, epoch: e.epoch })
        break
      case 'handover:failed':
        this.log.warn({ to: e.to?.name, reason: e.reason }, 'hand-over failed')
        this.settleHandover({ ok: false, reason: e.reason })
        break
    }
  }

  /** Keeps the last known lease end current: leases are renewed by acknowledged rounds inside any step. */
  private trackLease (): void {
    const l = this.leading
    if (l === undefined || this.driver === undefined) return
    const now = this.clock.now()
    const remaining = this.driver.leaseRemaining(now)
    if (remaining > 0) l.leaseEnd = now + remaining
  }

  private endLeadership (reason: Parameters<typeof this.emitDemoted>[1]): void {
    const l = this.leading
    if (l === undefined) return
    this.leading = undefined
    this.emitDemoted(l, reason)
  }

  private emitDemoted (l: Leading, reason: 'lease-expired' | 'lost-quorum' | 'handover' | 'shutdown' | 'superseded' | 'view-change'): void {
    const nowNs = hrtimeNs()
    // The interval ends when the lease ended, which after a pause is before this moment: that is when acting stopped.
    const leaseEndNs = BigInt(Math.floor(l.leaseEnd * 1e6))
    const endNs = leaseEndNs < nowNs ? leaseEndNs : nowNs
    this.log.info({ epoch: l.epoch, reason, leadershipInterval: { startNs: l.startNs.toString(), endNs: endNs.toString() } }, 'leader demoted: this member no longer leads')
    l.abort.abort(new Error(`leadership ended: ${reason}`))
    this.events.emit('leader:demoted', { epoch: l.epoch, reason })
  }

  isLeader (): boolean {
    return this.running && this.driver !== undefined && this.driver.isLeader(this.clock.now())
  }

  currentEpoch (): Epoch | undefined { return this.driver?.machine.currentEpoch() }

  leaseRemainingMs (): number {
    return this.driver === undefined ? 0 : this.driver.leaseRemaining(this.clock.now())
  }

  // ---- hand-over ------------------------------------------------------------------------------------------------

  async transferLeadership (to?: string): Promise<TransferResult> {
    return await this.handOver(to, false)
  }

  /**
   * Hands leadership over to `to` (or the machine's choice: the oldest member not suspected). The hooks stop
   * accepting and interrupt live transfers while this member still leads; the machine then passes the lease, and the
   * hand-over is done only once the successor's claim reaches this member: then the drain forwards new connections
   * to it. If the successor refuses, cannot be reached or does not lead within FT + margin, the hooks are cancelled
   * (accepting again) and this fails; this member leads again once re-elected.
   */
  private async handOver (to: string | undefined, leaving: boolean): Promise<TransferResult> {
    const m = this.driver?.machine
    if (m === undefined || !this.isLeader()) throw new LeadershipTransferError('this member is not the leader')
    if (this.handoverOutcome !== undefined) throw new LeadershipTransferError('a hand-over is already in progress')
    const target = m.handoverTarget(to)
    if (typeof target === 'string') throw new LeadershipTransferError(target)
    const outcome = this.handoverOutcome = deferred<HandoverOutcome>()
    const started = this.clock.now()
    try {
      for (const h of this.hooks) await h.stopAccepting?.()
      const interruptMs = this.init.handoverInterruptMs ?? 2000
      await Promise.all(this.hooks.map(async (h) => { await h.interrupt?.(interruptMs) }))
      const from = this.leading?.epoch
      this.step({ type: 'transfer', to: target.name })
      const result = await outcome.promise
      if (!result.ok) throw new LeadershipTransferError(`${target.name} did not take over: ${result.reason}`)
      this.log.info({ to: target.name, epoch: result.epoch, ms: Math.round(this.clock.now() - started), leaving }, 'leadership handed over')
      const drainMs = this.init.handoverDrainMs ?? DEFAULT_HANDOVER_DRAIN_MS
      const drains = this.hooks.map(async (h) => { await h.drain?.(hostOf(target.address), drainMs) })
      if (leaving) await Promise.all(drains)
      else void Promise.all(drains).catch((err: unknown) => { this.log.warn({ err }, 'hand-over drain failed') })
      return { from: this.init.nodeName, to: target.name, epoch: from }
    } catch (err) {
      for (const h of this.hooks) await h.cancel?.().catch((e: unknown) => { this.log.warn({ err: e }, 'hand-over cancel failed') })
      throw err
    } finally {
      this.handoverOutcome = undefined
    }
  }

  /** Settles a hand-over in progress (the machine's outcome, or this member stopping). */
  private settleHandover (o: HandoverOutcome): void {
    this.handoverOutcome?.resolve(o)
  }

  // ---- status ---------------------------------------------------------------------------------------------------

  /** The cluster transport address ("ip:port") of the member this one knows as leader, if any. */
  leaderAddress (): string | undefined {
    const m = this.driver?.machine
    if (m === undefined) return undefined
    const s = m.status(this.clock.now())
    return s.view?.members.find((x) => x.name === s.leader)?.address
  }

  /** The other members of the installed view, with their cluster addresses ("ip:port"). */
  peers (): Array<{ name: string, address: string }> {
    const m = this.driver?.machine
    if (m === undefined) return []
    const view = m.status(this.clock.now()).view
    return (view?.members ?? []).filter((x) => x.name !== this.init.nodeName).map((x) => ({ name: x.name, address: x.address }))
  }

  /** How many members make a majority of the primary view (the `quorum.required` of the status; at least 1). */
  majority (): number {
    return Math.max(1, this.status().quorum.required)
  }

  private apiMember (m: MemberInfo, leader: string | undefined): StatusMember {
    return { name: m.name, address: hostOf(m.address), isLeader: m.name === leader }
  }

  status (): ClusterStatus {
    const m = this.driver?.machine
    if (m === undefined) {
      return {
        clusterName: this.init.clusterName,
        nodeName: this.init.nodeName,
        isLeader: false,
        leader: null,
        epoch: 0,
        viewId: null,
        quorum: { required: 0, present: 0, ok: false },
        members: [],
        memberCount: 0
      }
    }
    const s = m.status(this.clock.now())
    const members = (s.view?.members ?? []).map((x) => this.apiMember(x, s.leader))
    return {
      clusterName: this.init.clusterName,
      nodeName: this.init.nodeName,
      isLeader: this.isLeader(),
      leader: s.leader ?? null,
      epoch: (s.epoch ?? s.highestEpoch).number,
      viewId: s.view === undefined ? null : { coordinator: s.view.id.coordinator, id: s.view.id.counter },
      quorum: s.quorum,
      members,
      memberCount: members.length
    }
  }

  readiness (): { ready: true } | { ready: false, reason: string } {
    const failed = this.driver?.failed
    if (failed !== undefined) {
      return { ready: false, reason: `${this.failedCause === 'persist' ? 'cluster state could not be persisted' : 'the membership machine failed'}: ${failed.message}` }
    }
    if (!this.running) return { ready: false, reason: 'cluster member not started' }
    return this.driver?.machine.currentView() === undefined ? { ready: false, reason: 'no view installed yet' } : { ready: true }
  }

  heartbeatAgeMaxSeconds (): number {
    return this.driver === undefined ? 0 : this.driver.machine.status(this.clock.now()).heartbeatAgeMaxMs / 1000
  }

  heartbeatAgesMs (): Record<string, number> {
    return this.driver === undefined ? {} : Object.fromEntries(this.driver.machine.heartbeatAges(this.clock.now()))
  }
}
