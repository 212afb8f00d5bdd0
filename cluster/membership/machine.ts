/**
 * Membership and leadership as one deterministic state machine: `handle(input, now)` returns the outputs (sends,
 * the reply to a received request, persistence, events, logs). No I/O, no timers, no randomness other than the
 * injected `random`; time only from `now` (the member's monotonic clock). The protocol, the rules and why the
 * invariants hold are in `docs/cluster-protocol.md`.
 *
 * The machine holds the role (no view, member, coordinator) and the outbox, and drives its parts, each owning its
 * state: `ConfigState` (configurations, epochs, counters: what is persisted), `PeerDirectory` (what each address
 * said), `FailureDetector` (suspicions, probes, deaths, leaves), `Founding` (the cold start), `Votes` (promises,
 * leadership, rounds). The parts take `now` and return what to do; only the machine sends and emits.
 *
 * NOT guaranteed by this module alone:
 * - with quorum `none`, that a single member leads (every view's coordinator does, as in JGroups);
 * - anything if members lie (non-Byzantine setting: the cluster secret keeps strangers out);
 * - safety under clock-rate errors larger than `maxClockDrift`, or under a partition that resets connections on one
 *   side only combined with a false "verified dead" from outside (see the protocol document);
 * - that `persist` outputs are durable: the driver must write them before executing the outputs that follow.
 */
import { compareEpochs, sameEpoch, type Epoch } from '../../common/epoch.js'
import type { DemotionReason } from '../leadership-api.js'
import {
  PROTOCOL_VERSION, memberKey,
  type ClusterRequest, type ConfigRef, type HandoverMessage, type HeartbeatMessage, type InstallMessage,
  type JoinMessage, type MemberInfo, type PingReqMessage, type ReleaseMessage, type ReplyMessage, type ReplyReason,
  type ViewData, type ViewSummary
} from '../messages.js'
import { resolveMembershipConfig, type MembershipConfig, type MembershipInit } from './config.js'
import { ConfigState } from './config-state.js'
import { FailureDetector } from './failure-detector.js'
import { Founding, type FoundingIntent } from './founding.js'
import { PeerDirectory } from './peers.js'
import { jointQuorum, majorityOf } from './quorum.js'
import type {
  MembershipComponents, MembershipEvent, MembershipInput, MembershipOutput, MembershipStatus, PersistedClusterState
} from './types.js'
import { rankCompare, sameViewId, speaksForItsView } from './view.js'
import { Votes, type Round } from './votes.js'

/** What a request was for, so its result goes to the right handler. */
type Purpose =
  | { kind: 'hello', address: string, expect?: MemberInfo }
  | { kind: 'join', to: MemberInfo }
  | { kind: 'install', round?: number, target: MemberInfo }
  | { kind: 'propose', proposal: number, target: MemberInfo }
  | { kind: 'heartbeat', round: number, target: MemberInfo }
  | { kind: 'release', target: MemberInfo }
  | { kind: 'leave' }
  /** A leaving member's best-effort word to a member other than its coordinator; nothing depends on the answer. */
  | { kind: 'farewell', target: MemberInfo }
  | { kind: 'handover', target: MemberInfo, leaving: boolean }
  | { kind: 'ping-req', helper: MemberInfo, suspect: MemberInfo }

type SendResult = Extract<MembershipInput, { type: 'send-result' }>

/**
 * Where this member stands: without a view (discovery, join, cold start), a member of a view, or its coordinator
 * (the first member: it installs the views, runs the rounds and, in the primary view with a lease, leads).
 */
type Role =
  | { kind: 'joining' }
  | { kind: 'member', view: ViewData }
  | { kind: 'coordinator', view: ViewData }

export class MembershipMachine {
  readonly cfg: MembershipConfig
  readonly me: MemberInfo
  private readonly myKey: string
  private readonly random: () => number

  private role: Role = { kind: 'joining' }
  private readonly configs: ConfigState
  private readonly peers = new PeerDirectory()
  private readonly fd: FailureDetector
  private readonly founding: Founding
  private readonly votes: Votes
  /** A graceful leave: handing over first (coordinator), asked of the coordinator, or done (the member is gone). */
  private leaving: 'no' | 'handover' | 'requested' | 'done' = 'no'

  // The coordinator's duties (the cold start's founder admits joiners too).
  private readonly joinRequests = new Map<string, MemberInfo>()
  private nextHeartbeatAt = 0
  private nextMergeScanAt = 0
  /** A member asked to join although my view holds it (it lost my view): reinstall, numbered above all seen. */
  private forceReinstall = false
  /** A merge of my view into another one was asked lately: joiners go to that view's coordinator meanwhile. */
  private mergingInto: { coord: MemberInfo, until: number } | undefined
  private readonly installResent = new Map<string, number>()

  private readonly inflight = new Map<number, Purpose>()
  private nextSendId = 0
  private out: MembershipOutput[] = []
  private now = 0

  constructor (components: MembershipComponents, init: MembershipInit = {}, now = 0) {
    this.cfg = resolveMembershipConfig(init)
    this.me = { ...components.me }
    this.myKey = memberKey(this.me)
    this.random = components.random
    this.now = now
    const p = components.persisted
    this.configs = new ConfigState(p, this.cfg.forceNewCluster)
    this.fd = new FailureDetector(this.cfg, this.myKey)
    this.founding = new Founding(this.cfg, this.me, now)
    this.votes = new Votes(this.cfg, this.myKey)
    // My previous incarnation (the one that persisted this state) is certainly gone: a verified death, so it stops
    // counting in the persisted configuration once its last promise has run out.
    if (p?.member !== undefined && memberKey(p.member) !== this.myKey) this.fd.markOldSelf(p.member, now)
    this.markOldSelves(this.configs.committed)
    this.markOldSelves(this.configs.pending)
    if (this.configs.forced) this.configs.forgetForNewCluster(this.me)
    // Jittered start of the periodic work, so members do not act in lockstep.
    this.nextHeartbeatAt = now + this.cfg.heartbeatMs * this.random() * 0.2
    this.nextMergeScanAt = now
  }

  // ---------------------------------------------------------------------------------------------------------
  // Public queries (synchronous, from `now`)

  /** True only while this member holds a valid lease at `now` (a leader woken from a pause is not leader). */
  isLeader (now: number): boolean { return this.votes.isLeader(now) }
  leaseRemaining (now: number): number { return this.votes.leaseRemaining(now) }
  currentView (): ViewData | undefined { return this.view }
  currentEpoch (): Epoch | undefined { return this.votes.leaderEpoch ?? this.knownEpoch() }
  persistedState (): PersistedClusterState { return this.configs.snapshot(this.me) }

  status (now: number): MembershipStatus {
    const primary = this.isPrimaryView()
    const committed = this.configs.committed
    const base = committed !== undefined ? this.baseOf(committed, undefined) : []
    const required = majorityOf(committed !== undefined && base.length > 0 ? base.length : this.cfg.clusterSize)
    const view = this.view
    const present = view === undefined ? 0 : view.members.filter(m => !this.fd.isSuspected(memberKey(m))).length
    const none = this.cfg.quorum === 'none'
    return {
      me: this.me,
      view,
      primary,
      isLeader: this.isLeader(now),
      leader: this.leaderName(now),
      epoch: this.votes.leaderEpoch ?? this.knownEpoch(),
      highestEpoch: this.configs.highestEpoch,
      leaseRemainingMs: none ? (this.votes.leading ? Number.POSITIVE_INFINITY : 0) : this.leaseRemaining(now),
      quorum: { required: none ? 0 : required, present, ok: none ? view !== undefined : primary },
      suspected: this.fd.suspected().map(m => m.name),
      heartbeatAgeMaxMs: this.heartbeatAgeMax(now)
    }
  }

  private knownEpoch (): Epoch | undefined {
    const h = this.configs.highestEpoch
    return h.number > 0 ? h : undefined
  }

  /** Longest silence among the members this one watches (the coordinator watches all; a member its coordinator). */
  private heartbeatAgeMax (now: number): number {
    const r = this.role
    if (r.kind === 'joining') return 0
    const watched = r.kind === 'coordinator' ? r.view.members.filter(m => memberKey(m) !== this.myKey) : [r.view.members[0]!]
    return this.fd.longestSilence(watched, now)
  }

  /** Internal state for diagnostics (simulation failures, debug logs); not a stable interface. */
  debugState (now: number): Record<string, unknown> {
    const c = this.configs
    const v = this.view
    return {
      role: this.role.kind,
      view: v !== undefined ? `${v.id.coordinator}#${v.id.counter}` : undefined,
      committed: c.committed !== undefined ? `${c.committed.id.coordinator}#${c.committed.id.counter}[${c.committed.members.map(m => `${m.name}/${m.incarnation}`).join(',')}]` : undefined,
      pending: c.pending !== undefined ? `${c.pending.id.coordinator}#${c.pending.id.counter}` : undefined,
      highest: c.highestEpoch.number,
      seen: c.seenEpoch.number,
      ...this.votes.debugState(now),
      dead: this.fd.debugState(now).dead,
      suspected: this.fd.suspected().map(m => m.name),
      leaving: this.leaving
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // The one entry point

  handle (input: MembershipInput, now: number): MembershipOutput[] {
    if (now < this.now) now = this.now // a monotonic clock never goes back; be robust to a caller that does
    this.now = now
    this.out = []
    if (this.leaving === 'done') {
      if (input.type === 'message') this.reply(input.msg, false, 'leaving')
      return this.flush()
    }
    switch (input.type) {
      case 'tick': this.onTick(); break
      case 'discovered': this.peers.setDiscovered(input.addresses, this.me.address); break
      case 'message': this.onMessage(input.msg); break
      case 'send-result': this.onSendResult(input); break
      case 'disconnected': this.onDisconnected(input.peerId); break
      case 'verified-dead': for (const m of this.fd.externalDeath(input.name, input.incarnation, this.knownMembers(), this.now)) this.markDead(m, 'external'); break
      case 'leave': this.onLeave(); break
      case 'transfer': this.onTransfer(input.to); break
    }
    this.checkLease()
    return this.flush()
  }

  private flush (): MembershipOutput[] {
    const out = this.out
    this.out = []
    // Persist first: the driver writes it before executing any other output of this step.
    if (this.configs.takeDirty()) out.unshift({ type: 'persist', state: this.configs.snapshot(this.me) })
    return out
  }

  // ---------------------------------------------------------------------------------------------------------
  // Role and outbox

  private get view (): ViewData | undefined { return this.role.kind === 'joining' ? undefined : this.role.view }
  private isCoordinator (): boolean { return this.role.kind === 'coordinator' }
  private coordinator (): MemberInfo | undefined { return this.view?.members[0] }
  private inViewKey (key: string): boolean { return this.view?.members.some(m => memberKey(m) === key) ?? false }

  private setView (view: ViewData | undefined): void {
    if (view === undefined) this.role = { kind: 'joining' }
    else this.role = view.members[0] !== undefined && memberKey(view.members[0]) === this.myKey ? { kind: 'coordinator', view } : { kind: 'member', view }
  }

  private emit (event: MembershipEvent): void { this.out.push({ type: 'event', event }) }
  private log (level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>): void {
    this.out.push({ type: 'log', level, msg, ...(fields !== undefined ? { fields } : {}) })
  }

  private envelope (): { v: number, cluster: string, from: MemberInfo, epoch: Epoch } {
    return { v: PROTOCOL_VERSION, cluster: this.cfg.clusterName, from: this.me, epoch: this.configs.highestEpoch }
  }

  private summary (): ViewSummary {
    const c = this.configs
    const s: ViewSummary = {
      committedCounter: c.committed?.id.counter ?? 0,
      leading: this.isLeader(this.now),
      maxCounter: c.maxCounter
    }
    if (this.view !== undefined) s.view = this.view
    const promise = this.votes.promised(this.now)
    if (promise !== undefined) s.promisedTo = promise.epoch
    if (c.committed !== undefined) s.committed = c.committed
    if (c.pending !== undefined) s.pending = c.pending
    return s
  }

  private hello (): ClusterRequest { return { ...this.envelope(), type: 'hello', summary: this.summary() } }

  private send (to: string, msg: ClusterRequest, purpose: Purpose, timeoutMs = this.cfg.requestTimeoutMs): void {
    const id = ++this.nextSendId
    this.inflight.set(id, purpose)
    this.out.push({ type: 'send', id, to, msg, timeoutMs })
  }

  private reply (req: ClusterRequest, ok: boolean, reason?: ReplyReason, extra: Partial<ReplyMessage> = {}): void {
    // A heartbeat acknowledged in the sender's own view tells it nothing new: keep the most frequent message small
    // (no member lists), which matters with 15 members every HB.
    const light = ok && req.type === 'heartbeat'
    const summary = this.summary()
    if (light) {
      delete summary.view
      delete summary.committed
      delete summary.pending
      summary.light = true
    }
    const msg: ReplyMessage = { ...this.envelope(), type: 'reply', ok, summary, ...extra }
    if (reason !== undefined) msg.reason = reason
    this.out.push({ type: 'reply', msg })
  }

  // ---------------------------------------------------------------------------------------------------------
  // Knowledge: configurations, deaths, leadership

  private isPrimaryView (): boolean {
    if (this.cfg.quorum === 'none') return this.view !== undefined
    return this.configs.isPrimary(this.view)
  }

  private leaderName (now: number): string | undefined {
    if (this.isLeader(now)) return this.me.name
    const c = this.view?.members[0]
    if (c === undefined) return undefined
    if (this.cfg.quorum === 'none') return c.name
    // A member knows its coordinator leads when its view is the committed primary and it is promised to it.
    if (this.isPrimaryView() && this.votes.promised(now)?.leaderKey === memberKey(c)) return c.name
    return undefined
  }

  private knownMembers (): MemberInfo[] {
    const all = new Map<string, MemberInfo>()
    for (const m of this.view?.members ?? []) all.set(memberKey(m), m)
    for (const m of this.configs.configMembers()) all.set(memberKey(m), m)
    return [...all.values()]
  }

  private learnSummary (from: MemberInfo, s: ViewSummary | undefined): void {
    if (s === undefined) return
    this.configs.noteCounter(s.maxCounter)
    if (s.view !== undefined) this.configs.noteCounter(s.view.id.counter)
    this.configs.noteEpoch(s.promisedTo)
    for (const c of this.configs.adopt(s)) this.markOldSelves(c)
    // My coordinator (or, when it failed, an older member that would take over) moved on without me: I was
    // excluded while cut off or paused. Rejoin.
    const view = this.view
    if (view !== undefined && s.view !== undefined && memberKey(from) !== this.myKey &&
      s.view.id.counter > view.id.counter && !s.view.members.some(m => memberKey(m) === this.myKey)) {
      const fk = memberKey(from)
      const idx = view.members.findIndex(m => memberKey(m) === fk)
      const mine = view.members.findIndex(m => memberKey(m) === this.myKey)
      const coordSuspected = this.fd.isSuspected(memberKey(view.members[0]!))
      if (idx === 0 || (idx > 0 && idx < mine && coordSuspected)) this.dropView('excluded by my coordinator')
    }
    this.peers.learned(from, s, this.now)
  }

  /**
   * Earlier incarnations of this member in a configuration are certainly dead (this process replaced them), and so
   * are members an outside authority reported dead before this member knew them.
   */
  private markOldSelves (c: ConfigRef | undefined): void {
    for (const m of c?.members ?? []) {
      if (m.name === this.me.name && memberKey(m) !== this.myKey) this.fd.markOldSelf(m, this.now)
      if (this.fd.reportedDead(m)) this.markDead(m, 'external')
    }
  }

  /** Bookkeeping on anything heard from a member (a request it sent, or its reply). */
  private heard (from: MemberInfo): void {
    const k = memberKey(from)
    this.peers.heardFrom(from, this.now)
    this.fd.heard(k, this.now)
    // Another incarnation of a member I know speaks: the old process is gone (a new process of the same pod).
    for (const m of this.knownMembers()) {
      if (m.name === from.name && memberKey(m) !== k && !this.fd.isDead(memberKey(m))) {
        this.markDead(m, 'replaced')
        this.fd.noteReplaced(m, from)
      }
    }
  }

  private markDead (m: MemberInfo, how: string): void {
    if (!this.fd.markDead(m, how, this.now)) return
    this.log('info', 'member verified dead', { member: m.name, incarnation: m.incarnation, how })
    // The leader I am promised to is dead: as a coordinator without a lease, elect at the next tick (a takeover
    // install made before this proof could not be a claim).
    if (this.votes.lastPromisedTo === memberKey(m) && !this.votes.leading && this.isCoordinator()) this.votes.electNow(this.now)
  }

  private suspect (m: MemberInfo, reason: string): void {
    if (this.fd.suspect(m, reason, this.now)) this.emit({ type: 'member:suspected', member: m, reason })
  }

  private refused (m: MemberInfo): void {
    if (this.fd.noteRefused(m, this.now)) this.markDead(m, 'refused')
  }

  /** Whether this member may promise its support to `leaderKey` for `epoch` (see `Votes.canPromise`). */
  private canPromise (epoch: Epoch, leaderKey: string, handoverFrom?: Epoch, evidence?: { dead: MemberInfo, found: MemberInfo }): boolean {
    return this.votes.canPromise(epoch, leaderKey, this.configs.highestEpoch, this.now, k => this.fd.isDead(k), handoverFrom, evidence)
  }

  /** Promise (a vote or a lease acknowledgement), raising my highest epoch to it. */
  private givePromise (epoch: Epoch, leaderKey: string): void {
    this.votes.give(epoch, leaderKey, this.now)
    this.configs.raiseHighest(epoch)
  }

  // ---------------------------------------------------------------------------------------------------------
  // Quorums

  /** Members of a configuration that still count, from this member's knowledge now. */
  private baseOf (c: ConfigRef, replacedLeaderKey: string | undefined): MemberInfo[] {
    return c.members.filter(m => this.fd.discountReason(memberKey(m), replacedLeaderKey, this.now, this.votes.leading) === undefined)
  }

  /**
   * Joint quorums over `configs`. A configuration of which more than one member is discounted for having died
   * (`died`) also needs promises from a majority of `VECTIS_CLUSTER_SIZE`, as when all its members are gone: the
   * dead may have committed a newer configuration without me before dying, and their restarted processes carry it
   * on (persisted); discounting one dead member keeps my quorum meeting every quorum of the same configuration
   * (deaths are final), discounting two does not (docs/cluster-protocol.md, "Configurations and quorums").
   */
  private quorumOk (configs: ConfigRef[], acks: Set<string>, replacedLeaderKey?: string): boolean {
    if (this.cfg.quorum === 'none') return true
    const reason = (k: string): string | undefined => this.fd.discountReason(k, replacedLeaderKey, this.now, this.votes.leading)
    return jointQuorum(configs, acks, {
      clusterSize: this.cfg.clusterSize,
      bootstrap: this.configs.committed === undefined,
      discounted: (k) => reason(k) !== undefined,
      discountedAsDead: (k) => reason(k) === 'died'
    })
  }

  private potentialQuorum (members: MemberInfo[], replacedLeaderKey: string | undefined): boolean {
    if (this.cfg.quorum === 'none') return false
    const alive = new Set<string>()
    for (const m of members) {
      const k = memberKey(m)
      if (k === this.myKey || !this.fd.isSuspected(k)) alive.add(k)
    }
    const proposed: ViewData = { id: { coordinator: this.me.name, counter: this.configs.maxCounter + 1 }, members, epoch: this.configs.highestEpoch }
    return this.quorumOk(this.configs.quorumConfigs(proposed), alive, replacedLeaderKey)
  }

  // ---------------------------------------------------------------------------------------------------------
  // Tick

  private onTick (): void {
    for (const r of this.votes.expire(this.now)) this.failRound(r)
    this.founding.expire(this.now)
    this.votes.expireHandover(this.now)
    if (this.leaving === 'requested' || this.leaving === 'handover') return
    const role = this.role
    if (role.kind === 'joining') {
      this.tickJoining()
      return
    }
    if (!this.inViewKey(this.myKey)) {
      this.dropView('not a member of my view')
      return
    }
    // A member that left my view while its connections were being refused (the killed leader, excluded by the
    // takeover) is still probed until the refusals verify its death: the election after a crash needs that proof.
    for (const m of this.fd.refusingOutsideView(this.now, k => this.inViewKey(k))) this.sendProbe(m)
    if (role.kind === 'coordinator') this.tickCoordinator(role.view)
    else this.tickMember(role.view)
  }

  private checkLease (): void {
    const expiry = this.votes.leaseExpiry
    if (expiry === undefined) return
    if (this.cfg.quorum === 'none') {
      if (!this.isCoordinator()) this.demote('view-change')
      return
    }
    if (this.now >= expiry) this.demote('lease-expired')
  }

  private demote (reason: DemotionReason): void {
    const e = this.votes.demote(reason, this.now)
    if (e === undefined) return
    this.log('info', 'leadership ended', { epoch: e.epoch, reason })
    this.emit(e)
  }

  private becomeLeader (epoch: Epoch, expiry: number): void {
    const e = this.votes.become(epoch, expiry, this.now)
    this.configs.raiseHighest(epoch)
    this.log('info', 'leadership started', { epoch, leaseMs: expiry - this.now })
    this.emit(e)
  }

  /** Quorum `none`: the coordinator leads (again, e.g. after a hand-over that did not happen). */
  private leadWithoutQuorum (): void {
    const e = this.configs.newEpoch(this.me.name)
    this.configs.raiseHighest(e)
    this.becomeLeader(e, Number.POSITIVE_INFINITY)
  }

  // --- no view yet: discovery, join, cold start

  private tickJoining (): void {
    this.helloDiscovered(this.cfg.heartbeatMs)
    this.foundingDo(this.founding.tick(this.now, this.peers, this.joinRequests.values(), this.configs.forced))
  }

  private foundingDo (intents: FoundingIntent[]): void {
    for (const i of intents) {
      switch (i.do) {
        case 'join': this.sendJoin(i.to, [this.me], i.toView); break
        case 'propose': this.propose(i.no, i.candidates); break
        case 'release': this.releaseProposal(i.accepted); break
        case 'forget-joins': this.joinRequests.clear(); break
        case 'install': this.install(i.members, {}); break
        case 'log': this.log('info', i.msg, i.fields); break
      }
    }
  }

  /** The founding view proposed to the candidates (installed only with those that accept: `Founding`). */
  private propose (no: number, candidates: MemberInfo[]): void {
    const view: ViewData = { id: { coordinator: this.me.name, counter: this.configs.proposalCounter() }, members: [this.me, ...candidates], epoch: this.configs.highestEpoch }
    const msg: InstallMessage = { ...this.envelope(), type: 'install', view, claim: false, configCounter: this.configs.configCounter(), propose: true }
    this.log('info', 'proposing the first view', { members: view.members.map(m => m.name) })
    for (const m of candidates) this.send(m.address, msg, { kind: 'propose', proposal: no, target: m }, this.founding.firstContactMs())
  }

  /** My founding proposal is dropped: who accepted it is free again at once (else when its binding runs out). */
  private releaseProposal (accepted: Iterable<MemberInfo>): void {
    this.joinRequests.clear()
    for (const m of accepted) {
      this.send(m.address, { ...this.envelope(), type: 'release', released: this.configs.highestEpoch, founding: true }, { kind: 'release', target: m })
    }
  }

  private helloDiscovered (every: number, skipMembers = false): void {
    const viewless = this.view === undefined
    for (const a of this.peers.discovered) {
      if (skipMembers && this.view?.members.some(m => m.address === a) === true) continue
      if (!this.peers.helloDue(a, this.now, every, viewless)) continue
      // First contacts (dial, handshake) get longer than a request on an open connection.
      this.send(a, this.hello(), { kind: 'hello', address: a }, viewless ? this.founding.firstContactMs() : this.cfg.requestTimeoutMs)
    }
  }

  /** `toView`: `to` is (said to be) the coordinator of a view, not a view-less founder (see `Founding.joinSent`). */
  private sendJoin (to: MemberInfo, joiners: MemberInfo[], toView: boolean): void {
    if (this.view === undefined) this.founding.joinSent(to, toView, this.now)
    this.send(to.address, { ...this.envelope(), type: 'join', joiners, summary: this.summary() }, { kind: 'join', to })
  }

  // --- coordinator

  private tickCoordinator (view: ViewData): void {
    // Merge: look for views outside mine, slowly.
    if (this.now >= this.nextMergeScanAt) {
      this.nextMergeScanAt = this.now + 2 * this.cfg.heartbeatMs * (0.8 + 0.4 * this.random())
      this.helloDiscovered(2 * this.cfg.heartbeatMs, true)
      if (this.tryMerge(view)) return
    }
    if (this.votes.handingOver) return
    if (this.cfg.quorum === 'none' && !this.votes.leading) this.leadWithoutQuorum()
    // Failure detection of the members.
    for (const m of view.members) {
      if (memberKey(m) === this.myKey) continue
      if (this.fd.silence(m, this.now) > this.cfg.failureTimeoutMs) this.suspect(m, 'silence')
      if (this.fd.isSuspected(memberKey(m))) this.verify(m, view)
    }
    if (!this.votes.leading) this.probeConfigMembers()
    if (!this.votes.installing()) {
      const next = this.nextMembers(view)
      if (next !== undefined) {
        this.install(next, {})
        return
      }
      if (this.votes.takeReelection() && this.isLeader(this.now)) {
        this.install(view.members, { reelect: true })
        return
      }
      if (this.cfg.quorum === 'majority' && !this.votes.leading && this.votes.mayElect(this.now) &&
        this.potentialQuorum(view.members, undefined)) {
        // Coordinator without a lease: run an election (re-install the same members under a new epoch).
        this.install(view.members, {})
        return
      }
    }
    if (this.now >= this.nextHeartbeatAt) this.heartbeatRound(view)
  }

  /**
   * A coordinator without a lease probes the members of the configurations it must count that are outside its view:
   * a dead one is then verified (refused, or another incarnation answers) and stops counting in time.
   */
  private probeConfigMembers (): void {
    for (const m of this.configs.configMembers()) {
      const k = memberKey(m)
      if (k === this.myKey || this.inViewKey(k) || this.fd.certainlyDead(k)) continue
      if (this.fd.configProbeDue(m, this.now)) this.send(m.address, this.hello(), { kind: 'hello', address: m.address, expect: m })
    }
  }

  /** The members of the next view if it must change (joins, leaves, exclusions), else undefined. */
  private nextMembers (view: ViewData): MemberInfo[] | undefined {
    let changed = this.forceReinstall
    this.forceReinstall = false
    const keep: MemberInfo[] = []
    for (const m of view.members) {
      const k = memberKey(m)
      if (k === this.myKey) { keep.push(m); continue }
      if (this.fd.gone(k, this.now, this.fd.helpers(view.members, k).length)) {
        changed = true
        continue
      }
      keep.push(m)
    }
    for (const j of this.joinRequests.values()) {
      const k = memberKey(j)
      if (keep.some(m => memberKey(m) === k) || this.fd.isDead(k) || this.fd.hasLeft(k)) continue
      // A restarted member replaces its old incarnation and joins last.
      for (let i = keep.length - 1; i >= 0; i--) {
        const m = keep[i]!
        if (m.name === j.name && memberKey(m) !== this.myKey) { this.markDead(m, 'replaced'); keep.splice(i, 1) }
      }
      keep.push(j)
      changed = true
    }
    this.joinRequests.clear()
    return changed ? keep : undefined
  }

  /** Installs a new view with me as coordinator; claims (asks for promises) when it can lead. */
  private install (members: MemberInfo[], opts: { handoverFrom?: Epoch, replacedLeaderKey?: string, reelect?: boolean }): void {
    const counter = this.configs.nextViewCounter(this.view?.id.counter ?? 0)
    let claim = false
    let election = false
    let epoch = this.configs.highestEpoch
    if (this.cfg.quorum === 'majority' && !this.votes.handingOver) {
      const view0: ViewData = { id: { coordinator: this.me.name, counter }, members, epoch }
      const leaderEpoch = this.votes.leaderEpoch
      if (leaderEpoch !== undefined && this.isLeader(this.now) && opts.reelect !== true) {
        claim = true
        epoch = leaderEpoch
      } else {
        const e = this.configs.newEpoch(this.me.name)
        if (this.canPromise(e, this.myKey, opts.handoverFrom, this.fd.replacedBy) &&
          this.quorumOk(this.configs.quorumConfigs(view0), new Set(members.map(memberKey)), opts.replacedLeaderKey)) {
          claim = true
          election = true
          epoch = e
        }
      }
    }
    // Forced new cluster: number the configuration above anything seen so the others accept it.
    if (this.configs.forced) this.configs.installForced(this.me, counter)
    const view: ViewData = { id: { coordinator: this.me.name, counter }, members: members.map(m => ({ ...m })), epoch }
    const configs = claim ? this.configs.quorumConfigs(view) : []
    const configCounter = this.configs.configCounter()
    this.applyView(view)
    if (claim) {
      this.configs.setPending({ id: view.id, members: view.members })
      if (election) {
        // Not yet my highest epoch: a claim that fails must not make me refuse the leader others elected
        // meanwhile at a lower number. Seen, so my next claim numbers above it.
        this.configs.noteEpoch(epoch)
        this.votes.give(epoch, this.myKey, this.now)
      } else {
        this.givePromise(epoch, this.myKey)
      }
    }
    const round = this.votes.newRound('install', view, epoch, claim, election, configs, this.now)
    if (opts.handoverFrom !== undefined) round.handoverFrom = opts.handoverFrom
    const msg: InstallMessage = { ...this.envelope(), type: 'install', view, claim, configCounter }
    if (opts.handoverFrom !== undefined) msg.handoverFrom = opts.handoverFrom
    const replacedBy = this.fd.replacedBy
    if (replacedBy !== undefined) msg.replacedBy = replacedBy
    for (const m of view.members) {
      if (memberKey(m) === this.myKey) continue
      this.send(m.address, msg, { kind: 'install', round: round.no, target: m })
    }
    this.log('info', 'installing view', { viewId: view.id, members: view.members.map(m => m.name), claim, epoch })
    this.nextHeartbeatAt = this.now + this.cfg.heartbeatMs * (0.9 + 0.2 * this.random())
    this.evaluateRound(round)
  }

  private heartbeatRound (view: ViewData): void {
    this.nextHeartbeatAt = this.now + this.cfg.heartbeatMs * (0.9 + 0.2 * this.random())
    const leaderEpoch = this.cfg.quorum === 'majority' && this.isLeader(this.now) ? this.votes.leaderEpoch : undefined
    const leading = leaderEpoch !== undefined
    const epoch = leaderEpoch ?? this.configs.highestEpoch
    const configs = leading ? this.configs.leaseConfigs() : []
    if (leading) this.givePromise(epoch, this.myKey)
    const round = this.votes.newRound('heartbeat', view, epoch, leading, false, configs, this.now)
    const msg: HeartbeatMessage = { ...this.envelope(), type: 'heartbeat', viewId: view.id, round: round.no, claim: leading }
    const committed = this.configs.committed
    if (leading && committed !== undefined) msg.committed = committed.id
    for (const m of round.targets.values()) this.send(m.address, msg, { kind: 'heartbeat', round: round.no, target: m })
    this.evaluateRound(round)
  }

  private evaluateRound (r: Round): void {
    const replacedBy = this.fd.replacedBy
    const replaced = r.election && replacedBy !== undefined ? memberKey(replacedBy.dead) : undefined
    const outcome = this.votes.evaluate(r, acks => this.quorumOk(r.configs, acks, replaced))
    if (outcome === 'succeeded') this.roundSucceeded(r)
    else if (outcome === 'failed') this.failRound(r, true)
  }

  private roundSucceeded (r: Round): void {
    // Once handing over (or leaving), a late acknowledgement must not make or keep me leader: the successor may
    // already lead on the promises I passed on.
    if (this.votes.handingOver || this.leaving !== 'no') return
    const expiry = r.sentAt + this.cfg.leaseMs
    if (expiry <= this.now) return // acknowledged too late: the lease it would give has already run out
    const sameView = this.view !== undefined && this.view.id.counter === r.view.id.counter && this.isCoordinator()
    const leaderEpoch = this.votes.leaderEpoch
    if (r.election && leaderEpoch !== undefined && compareEpochs(r.epoch, leaderEpoch) > 0 && sameView) {
      // Re-election under a higher epoch (a member had promised to a higher failed claim and refused mine).
      this.demote('superseded')
    }
    if (r.election) {
      const replacedBy = this.fd.replacedBy
      const replaced = replacedBy !== undefined ? memberKey(replacedBy.dead) : undefined
      const fd = this.fd.debugState(this.now)
      this.log('debug', 'election won', {
        configs: r.configs.map(c => `${c.id.coordinator}#${c.id.counter}[${c.members.map(m => `${m.name}/${m.incarnation}${this.fd.discountReason(memberKey(m), replaced, this.now, this.votes.leading) !== undefined ? '(gone)' : ''}`).join(',')}]`),
        acks: [...r.acks],
        replaced,
        left: fd.left,
        onlyRefused: fd.onlyRefused
      })
      if (!this.votes.leading && sameView) this.becomeLeader(r.epoch, expiry)
    } else {
      this.votes.extend(r.epoch, expiry)
    }
    // Commit: the round's quorums included the current view (its install, or a later heartbeat while it was
    // pending, e.g. when the install's own acknowledgements were lost).
    const view = this.view
    const coversView = view !== undefined && r.configs.some(c => sameViewId(c.id, view.id))
    if (coversView && !this.isPrimaryView() && sameEpoch(this.votes.leaderEpoch, r.epoch) && view.id.counter === r.view.id.counter) {
      this.configs.commit(r.view)
      this.emit({ type: 'view:installed', view, primary: true })
      this.nextHeartbeatAt = this.now // tell the members at once that their view is primary
    }
  }

  private failRound (r: Round, definite = false): void {
    r.resolved = true
    if (!r.claim) return
    if (r.election) {
      // Abandon the claim: release the promises it got so a later candidate need not wait for them to expire.
      const release: ReleaseMessage = { ...this.envelope(), type: 'release', released: r.epoch }
      for (const k of r.acks) {
        if (k === this.myKey) continue
        const m = r.targets.get(k)
        if (m !== undefined) this.send(m.address, release, { kind: 'release', target: m })
      }
      const pending = this.configs.pending
      if (pending !== undefined && pending.id.counter === r.view.id.counter) this.configs.setPending(undefined)
      this.votes.electionFailed(r, this.now, this.random())
      return
    }
    // A leader that cannot reach a majority at all (refusals, closed connections, refusing members) steps down
    // at once rather than waiting for its lease to run out.
    if (definite && sameEpoch(this.votes.leaderEpoch, r.epoch) && r.no === this.votes.latestClaimRoundNo()) {
      this.demote('lost-quorum')
      this.votes.backOff(this.now + this.cfg.heartbeatMs * (1 + this.random()))
    }
  }

  private tryMerge (view: ViewData): boolean {
    const mine = this.summary()
    let best: ViewSummary | undefined
    for (const p of this.peers.values()) {
      const s = p.summary
      if (s?.view === undefined || this.now - p.lastHeard > this.cfg.failureTimeoutMs) continue
      if (!speaksForItsView(p.member, p.summary)) continue
      if (sameViewId(s.view.id, view.id)) continue
      if (s.view.members[0] === undefined || memberKey(s.view.members[0]) === this.myKey) continue
      if (rankCompare(s, mine) <= 0) continue
      if (best === undefined || rankCompare(s, best) > 0) best = s
    }
    if (best?.view === undefined) return false
    // A leader (majority mode) never merges away: the other side comes to it. With quorum `none` every coordinator
    // leads, and the better-ranked view absorbs the other (its leader steps down).
    if (this.cfg.quorum === 'majority' && this.isLeader(this.now)) return false
    const coord = best.view.members[0]!
    this.log('info', 'merging my view into a better one', { into: best.view.id, mine: view.id })
    // Until that view takes mine in, joiners go there: admitting them here would grow a view that is going away
    // while the other one exists.
    this.mergingInto = { coord, until: this.now + 4 * this.cfg.heartbeatMs }
    this.sendJoin(coord, view.members, true)
    return true
  }

  // --- member (not coordinator)

  private tickMember (view: ViewData): void {
    const coord = view.members[0]!
    if (this.fd.silence(coord, this.now) > this.cfg.failureTimeoutMs) this.suspect(coord, 'silence')
    if (!this.fd.isSuspected(memberKey(coord))) return
    // The coordinator is suspected: verify it, and every member older than me, before taking over.
    const myIndex = view.members.findIndex(m => memberKey(m) === this.myKey)
    let allOlderFailed = true
    for (let i = 0; i < myIndex; i++) {
      const m = view.members[i]!
      const k = memberKey(m)
      this.fd.ensureWatched(m, this.now)
      if (i > 0 && !this.fd.isSuspected(k)) this.suspect(m, 'coordinator failed')
      this.verify(m, view)
      if (!this.fd.isDead(k) && !this.fd.verifiedUnreachable(k, this.now, this.fd.helpers(view.members, k).length) &&
        !(i > 0 && this.followsAnotherView(m, view))) allOlderFailed = false
    }
    if (!allOlderFailed || this.votes.handingOver) return
    if (this.votes.installing()) return
    if (!this.votes.mayElect(this.now)) return
    // Take over as coordinator: the view without the failed older members.
    const older = new Set(view.members.slice(0, myIndex).map(memberKey))
    const members = view.members.filter(m => !older.has(memberKey(m)))
    const replaced = this.fd.isDead(memberKey(coord)) ? memberKey(coord) : undefined
    this.log('info', 'coordinator failed: taking over', { coordinator: coord.name })
    this.install(members, replaced !== undefined ? { replacedLeaderKey: replaced } : {})
    this.votes.backOff(this.now + this.cfg.heartbeatMs)
  }

  /** `m` said lately that it is in another view than mine, without me: it will not take over mine. */
  private followsAnotherView (m: MemberInfo, view: ViewData): boolean {
    const p = this.peers.get(m.address)
    const v = p?.summary?.view
    if (p?.member === undefined || memberKey(p.member) !== memberKey(m) || v === undefined) return false
    if (this.now - p.lastHeard > this.cfg.failureTimeoutMs) return false
    // Same coordinator, another counter: the same line of views, one of us a view ahead (a join was being
    // installed when the coordinator died). It is older than me in it and takes over: not "another view".
    if (v.id.coordinator === view.id.coordinator) return false
    // A newer view that holds me (it took over and its install is on its way to me) is mine to come, not another
    // one; an older one it is stuck in is.
    return !(v.id.counter > view.id.counter && v.members.some(x => memberKey(x) === this.myKey))
  }

  /** Verification before exclusion: a direct probe (dial-back) and indirect probes through two other members. */
  private verify (m: MemberInfo, view: ViewData): void {
    const k = memberKey(m)
    if (this.fd.certainlyDead(k)) return
    if (this.fd.directProbeDue(m, this.now)) this.sendProbe(m)
    const due = this.fd.indirectProbeDue(m, this.now)
    if (due === undefined) return
    const helpers = this.fd.helpers(view.members, k)
    // Two helpers, picked with the (seeded) random source.
    for (let i = 0; i < 2 && helpers.length > 0; i++) {
      const idx = Math.floor(this.random() * helpers.length)
      const helper = helpers.splice(idx, 1)[0]!
      const msg: PingReqMessage = { ...this.envelope(), type: 'ping-req', target: m.address, withinMs: due.withinMs }
      this.send(helper.address, msg, { kind: 'ping-req', helper, suspect: m })
    }
  }

  /** Direct probe (dial-back): a `hello` to the member's address; the reply names the process there. */
  private sendProbe (m: MemberInfo): void {
    this.send(m.address, this.hello(), { kind: 'hello', address: m.address, expect: m })
  }

  private dropView (why: string): void {
    this.log('info', 'leaving my view', { why, viewId: this.view?.id })
    if (this.votes.leading) this.demote('superseded')
    this.setView(undefined)
  }

  // ---------------------------------------------------------------------------------------------------------
  // Applying views

  private applyView (view: ViewData): void {
    const old = this.view
    this.setView(view)
    this.configs.noteCounter(view.id.counter)
    this.configs.noteApplied(view.id.counter)
    const keys = new Set(view.members.map(memberKey))
    for (const m of old?.members ?? []) {
      const k = memberKey(m)
      if (keys.has(k)) continue
      this.emit({ type: 'member:left', member: m, reason: this.fd.departure(k) })
      this.fd.leftView(k)
    }
    for (const m of view.members) {
      this.fd.inView(m, this.now, old === undefined || !old.members.some(x => memberKey(x) === memberKey(m)))
    }
    const c = view.members[0]!
    if (memberKey(c) !== this.myKey) this.fd.restart(c, this.now)
    this.founding.reset()
    if (memberKey(c) !== this.myKey) {
      this.mergingInto = undefined
      // Joins I accepted while view-less (as a founder) are stale: who still wants in asks my coordinator.
      this.joinRequests.clear()
    }
    this.emit({ type: 'view:installed', view, primary: this.isPrimaryView() })
    if (this.cfg.quorum === 'none') {
      if (this.isCoordinator() && !this.votes.leading) this.leadWithoutQuorum()
      else if (!this.isCoordinator() && this.votes.leading) this.demote('view-change')
    } else if (this.votes.leading && !this.isCoordinator()) {
      this.demote('view-change')
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Messages

  private onMessage (msg: ClusterRequest): void {
    if (msg.cluster !== this.cfg.clusterName) {
      this.reply(msg, false, 'wrong-cluster')
      return
    }
    if (memberKey(msg.from) === this.myKey) {
      this.reply(msg, false, 'invalid')
      return
    }
    this.heard(msg.from)
    this.configs.noteEpoch(msg.epoch)
    switch (msg.type) {
      case 'hello':
        this.learnSummary(msg.from, msg.summary)
        this.reply(msg, true)
        break
      case 'join': this.onJoin(msg); break
      case 'install': this.onInstall(msg); break
      case 'heartbeat': this.onHeartbeat(msg); break
      case 'release': this.onRelease(msg); break
      case 'leave': this.onLeaveMsg(msg); break
      case 'handover': this.onHandover(msg); break
      case 'ping-req': this.onPingReq(msg); break
    }
  }

  private onJoin (msg: JoinMessage): void {
    this.learnSummary(msg.from, msg.summary)
    if (this.view === undefined) {
      if (this.founding.admitsJoiners(msg.joiners)) {
        for (const j of msg.joiners) this.joinRequests.set(memberKey(j), j)
        this.reply(msg, true)
      } else {
        this.reply(msg, false, 'not-coordinator')
      }
      return
    }
    if (!this.isCoordinator()) {
      this.reply(msg, false, 'not-coordinator', { redirect: this.coordinator()! })
      return
    }
    if (this.leaving !== 'no' || this.votes.handingOver) {
      this.reply(msg, false, 'leaving')
      return
    }
    if (this.mergingInto !== undefined && this.mergingInto.until > this.now) {
      this.reply(msg, false, 'not-coordinator', { redirect: this.mergingInto.coord })
      return
    }
    for (const j of msg.joiners) {
      const k = memberKey(j)
      if (k === this.myKey) continue
      if (this.inViewKey(k)) {
        // It asks to join although my view holds it: it does not have my view (it moved to another one with a
        // counter as high). A new view, numbered above everything seen, brings it back.
        this.forceReinstall = true
        continue
      }
      this.fd.forgetDeparture(k)
      this.joinRequests.set(k, j)
    }
    this.reply(msg, true)
  }

  private onInstall (msg: InstallMessage): void {
    const v = msg.view
    const fromKey = memberKey(msg.from)
    if (msg.propose === true) { this.onProposal(msg); return }
    if (this.view === undefined) {
      // Bound to another founder's proposal: that founder may install a view holding me.
      const founder = this.founding.boundToOther(fromKey, this.now)
      if (founder !== undefined) {
        this.reply(msg, false, 'promised', { redirect: founder })
        return
      }
    }
    this.configs.noteCounter(v.id.counter)
    if (v.id.counter <= Math.max(this.view?.id.counter ?? 0, this.configs.maxApplied)) {
      this.reply(msg, false, 'stale-view')
      return
    }
    if (!v.members.some(m => memberKey(m) === this.myKey)) {
      this.reply(msg, false, 'not-member')
      return
    }
    if (v.members[0] === undefined || memberKey(v.members[0]) !== fromKey) {
      this.reply(msg, false, 'invalid')
      return
    }
    if (this.leaving !== 'no') {
      this.reply(msg, false, 'leaving')
      return
    }
    if (msg.replacedBy !== undefined && msg.replacedBy.found.address === msg.replacedBy.dead.address &&
      memberKey(msg.replacedBy.found) !== memberKey(msg.replacedBy.dead)) {
      // Objective evidence (another incarnation answers at the old address): the old process is gone.
      this.markDead(msg.replacedBy.dead, 'replaced (reported)')
    }
    if (this.cfg.quorum === 'majority') {
      if (msg.claim) {
        if (!this.canPromise(v.epoch, fromKey, msg.handoverFrom, msg.replacedBy)) {
          this.reply(msg, false, compareEpochs(v.epoch, this.configs.highestEpoch) < 0 ? 'stale-epoch' : 'promised')
          return
        }
        const pending = this.configs.pending
        if (msg.configCounter < this.configs.configCounter() && !(pending !== undefined && pending.id.counter === v.id.counter)) {
          this.reply(msg, false, 'older-config')
          return
        }
      } else {
        const promisedTo = this.votes.promised(this.now)?.leaderKey
        if (promisedTo !== undefined && promisedTo !== fromKey && !this.fd.isDead(promisedTo)) {
          // Promised to a live leader: do not follow a coordinator that cannot lead.
          this.reply(msg, false, 'promised')
          return
        }
      }
    }
    this.applyView(v)
    this.fd.touch(msg.from, this.now)
    if (msg.claim && this.cfg.quorum === 'majority') {
      this.givePromise(v.epoch, fromKey)
      this.configs.setPending({ id: v.id, members: v.members })
    }
    this.reply(msg, true, undefined, { promise: msg.claim && this.cfg.quorum === 'majority' })
  }

  /** A founder's proposal (cold start): `Founding.answerProposal` decides. */
  private onProposal (msg: InstallMessage): void {
    const open = this.view === undefined && this.leaving === 'no' && !this.configs.forced
    const answer = this.founding.answerProposal(msg, open, this.now)
    if (!answer.accept) {
      this.reply(msg, false, answer.reason, answer.extra)
      return
    }
    if (answer.release !== undefined) {
      this.log('info', 'first view proposal dropped for a lower founder', { founder: msg.from.name })
      this.releaseProposal(answer.release)
    }
    this.reply(msg, true)
  }

  private onHeartbeat (msg: HeartbeatMessage): void {
    const fromKey = memberKey(msg.from)
    const view = this.view
    if (view === undefined) { this.reply(msg, false, 'need-view'); return }
    if (msg.viewId.counter < view.id.counter) { this.reply(msg, false, 'stale-view'); return }
    if (msg.viewId.counter > view.id.counter) { this.reply(msg, false, 'need-view'); return }
    if (msg.viewId.coordinator !== view.id.coordinator || memberKey(view.members[0]!) !== fromKey) {
      this.reply(msg, false, 'not-member')
      return
    }
    this.fd.touch(msg.from, this.now)
    let promised = false
    if (msg.claim && this.cfg.quorum === 'majority') {
      if (!this.canPromise(msg.epoch, fromKey)) {
        this.reply(msg, false, compareEpochs(msg.epoch, this.configs.highestEpoch) < 0 ? 'stale-epoch' : 'promised')
        return
      }
      this.givePromise(msg.epoch, fromKey)
      promised = true
      if (sameViewId(msg.committed, view.id) && !this.isPrimaryView()) {
        this.configs.commit(view)
        this.emit({ type: 'view:installed', view, primary: true })
      }
    }
    this.reply(msg, true, undefined, { promise: promised })
  }

  private onRelease (msg: ReleaseMessage): void {
    if (msg.founding === true) {
      this.founding.released(msg.from)
    } else if (this.votes.release(msg.released, memberKey(msg.from))) {
      const pending = this.configs.pending
      if (pending !== undefined && pending.id.coordinator === msg.from.name) this.configs.setPending(undefined)
    }
    this.reply(msg, true)
  }

  private onLeaveMsg (msg: ClusterRequest): void {
    const k = memberKey(msg.from)
    // A member that left never acts again: a certain death. It stops counting at once for the leader it was
    // promised to (it acknowledged my rounds), otherwise once its last promise has run out.
    this.markDead(msg.from, 'left')
    if (this.isCoordinator() && this.inViewKey(k)) {
      if (this.votes.leading) this.fd.markLeft(k)
      this.reply(msg, true)
      return
    }
    const coord = this.coordinator()
    this.reply(msg, false, 'not-coordinator', coord !== undefined ? { redirect: coord } : {})
  }

  private onHandover (msg: HandoverMessage): void {
    const view = this.view
    if (view === undefined || memberKey(view.members[0]!) !== memberKey(msg.from) || !this.inViewKey(this.myKey)) {
      this.reply(msg, false, 'not-member')
      return
    }
    this.reply(msg, true)
    const fromKey = memberKey(msg.from)
    if (msg.leaving) this.fd.markLeft(fromKey)
    // The old leader consented: start at once (the promises it holds move to me through `handoverFrom`).
    const rest = view.members.filter(m => memberKey(m) !== this.myKey && memberKey(m) !== fromKey)
    const members = msg.leaving ? [this.me, ...rest] : [this.me, ...rest, msg.from]
    this.install(members, { handoverFrom: msg.handedOver })
  }

  private onPingReq (msg: PingReqMessage): void {
    // Heard from it since the asker began to suspect it (not before: a process killed a moment ago spoke to all).
    const window = Math.min(2 * this.cfg.heartbeatMs, msg.withinMs ?? 2 * this.cfg.heartbeatMs)
    const found = this.peers.heardWithin(msg.target, this.now, window)
    if (found !== undefined) {
      this.reply(msg, true, undefined, { found })
      return
    }
    // Not heard lately: probe it now, so the next request gets a fresh answer.
    if (this.peers.helloDue(msg.target, this.now, this.cfg.heartbeatMs / 2, false)) {
      this.send(msg.target, this.hello(), { kind: 'hello', address: msg.target })
    }
    this.reply(msg, false, 'unreachable')
  }

  // ---------------------------------------------------------------------------------------------------------
  // Send results

  private onSendResult (r: SendResult): void {
    const purpose = this.inflight.get(r.id)
    if (purpose === undefined) return
    this.inflight.delete(r.id)
    if (r.ok) {
      const rep = r.reply
      if (rep.cluster !== this.cfg.clusterName) return
      this.heard(rep.from)
      this.configs.noteEpoch(rep.epoch)
      this.learnSummary(rep.from, rep.summary)
    }
    switch (purpose.kind) {
      case 'hello': this.onHelloResult(purpose, r); break
      case 'join': this.onJoinResult(purpose, r); break
      case 'propose': this.foundingDo(this.founding.proposalAnswered(purpose.proposal, purpose.target, r.ok ? r.reply : undefined, this.peers, this.now)); break
      case 'install':
      case 'heartbeat': this.onRoundResult(purpose, r); break
      case 'release':
      case 'farewell': break
      case 'leave':
        // The coordinator did not take it: tell every other member (best effort) so they stop counting on me.
        if (!r.ok || !r.reply.ok) this.farewell(this.coordinator()?.address)
        this.finishLeave()
        break
      case 'handover':
        if (purpose.leaving) {
          if (!r.ok || !r.reply.ok) this.farewell(undefined)
          this.finishLeave()
        }
        break
      case 'ping-req': this.onPingResult(purpose, r); break
    }
  }

  /** A leaving member's word to every member of its view but itself (and `except`, an address already told). */
  private farewell (except: string | undefined): void {
    for (const m of this.view?.members ?? []) {
      if (memberKey(m) === this.myKey || m.address === except) continue
      this.send(m.address, { ...this.envelope(), type: 'leave' }, { kind: 'farewell', target: m })
    }
  }

  private onHelloResult (p: Extract<Purpose, { kind: 'hello' }>, r: SendResult): void {
    const expected = p.expect ?? this.knownMembers().find(m => m.address === p.address)
    const watched = expected !== undefined && this.fd.probeReturned(memberKey(expected))
    if (r.ok) {
      const found = r.reply.from
      if (expected !== undefined && memberKey(found) !== memberKey(expected) && found.address === p.address) {
        // Dial-back found another process at the address: the expected incarnation is gone.
        this.markDead(expected, 'dial-back found another incarnation')
        this.fd.noteReplaced(expected, found)
      }
      // My own view moved on without me? (I was excluded while cut off or paused.)
      const s = r.reply.summary
      const view = this.view
      if (view !== undefined && expected !== undefined && memberKey(found) === memberKey(view.members[0]!) &&
        s.view !== undefined && s.view.id.counter > view.id.counter && !s.view.members.some(m => memberKey(m) === this.myKey)) {
        this.dropView('excluded by my coordinator')
      }
      return
    }
    if (expected === undefined) return
    if (r.error === 'refused' || r.error === 'closed') this.refused(expected)
    if (watched) this.fd.directProbeFailed(memberKey(expected), this.now)
  }

  private onJoinResult (p: Extract<Purpose, { kind: 'join' }>, r: SendResult): void {
    if (!r.ok) {
      if (this.view === undefined) this.founding.joinFailed(p.to, r.error === 'refused' || r.error === 'closed', this.now)
      return
    }
    if (r.reply.ok) return
    const redirect = this.view === undefined ? r.reply.redirect : undefined
    this.foundingDo(this.founding.joinRefused(p.to, redirect, this.now))
  }

  private onRoundResult (p: Extract<Purpose, { kind: 'install' | 'heartbeat' }>, r: SendResult): void {
    const k = memberKey(p.target)
    const round = this.votes.round(p.round)
    const inView = this.inViewKey(k)
    if (inView) this.fd.ensureWatched(p.target, this.now)
    if (r.ok) {
      const rep = r.reply
      if (memberKey(rep.from) !== k) {
        // Someone else answers at the address: the target is gone.
        this.markDead(p.target, 'another process answered')
        if (round !== undefined) this.votes.recordAnswer(round, k, 'gone')
      } else if (rep.ok) {
        if (inView) this.fd.answered(p.target, this.now, rep.promise === true)
        if (round !== undefined) this.votes.recordAnswer(round, k, rep.promise === true ? 'promise' : 'ack')
      } else {
        if (round !== undefined) this.votes.recordAnswer(round, k, rep.reason === 'promised' ? 'promised' : 'refused')
        if (inView) this.fd.touch(p.target, this.now)
        this.onNack(p.target, rep)
      }
    } else if (r.error === 'refused' || r.error === 'closed') {
      if (round !== undefined) this.votes.recordAnswer(round, k, 'gone')
      if (inView) {
        this.suspect(p.target, r.error)
        this.refused(p.target)
      }
    } else if (round !== undefined) {
      this.votes.recordAnswer(round, k, 'no-answer')
    }
    if (round !== undefined) this.evaluateRound(round)
  }

  private onNack (target: MemberInfo, rep: ReplyMessage): void {
    const k = memberKey(target)
    switch (rep.reason) {
      case 'need-view': {
        // The member missed an install: send the current one again (at most once per heartbeat).
        const last = this.installResent.get(k) ?? -Infinity
        const view = this.view
        if (view !== undefined && this.isCoordinator() && this.now - last >= this.cfg.heartbeatMs) {
          this.installResent.set(k, this.now)
          const claim = this.cfg.quorum === 'majority' && this.isLeader(this.now)
          const msg: InstallMessage = { ...this.envelope(), type: 'install', view, claim, configCounter: this.configs.configCounter() }
          this.send(target.address, msg, { kind: 'install', target })
        }
        break
      }
      case 'stale-view':
      case 'not-member': {
        // It follows a newer view (another coordinator): it departed from mine; merging brings it back.
        const s = rep.summary
        if (s.view !== undefined && this.view !== undefined && !sameViewId(s.view.id, this.view.id)) this.fd.markDeparted(k)
        break
      }
      case 'leaving':
        this.fd.markLeft(k)
        break
      case 'stale-epoch': {
        // A member of my view knows a higher epoch (a failed claim it promised to): lead on under a higher one.
        const leaderEpoch = this.votes.leaderEpoch
        if (leaderEpoch !== undefined && compareEpochs(rep.epoch, leaderEpoch) > 0 && this.inViewKey(k)) this.votes.wantReelection()
        break
      }
      default:
        break
    }
  }

  private onPingResult (p: Extract<Purpose, { kind: 'ping-req' }>, r: SendResult): void {
    const k = memberKey(p.suspect)
    if (!this.fd.isSuspected(k) || !r.ok) return
    const found = r.reply.found
    if (r.reply.ok && found !== undefined) {
      if (memberKey(found) === k) this.fd.indirectResult(k, this.now, 'found')
      else if (found.address === p.suspect.address) {
        this.markDead(p.suspect, 'indirect probe found another incarnation')
        this.fd.noteReplaced(p.suspect, found)
      }
    } else if (r.reply.reason === 'unreachable') {
      this.fd.indirectResult(k, this.now, 'unreachable')
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Other inputs

  private onDisconnected (peerId: string): void {
    const view = this.view
    if (view === undefined) return
    for (const m of view.members) {
      if (m.peerId !== peerId || memberKey(m) === this.myKey) continue
      // Fast path: a closed connection is a suspicion at once, verified before exclusion.
      if (this.isCoordinator() || memberKey(m) === memberKey(view.members[0]!)) {
        this.suspect(m, 'disconnected')
        this.verify(m, view)
      }
    }
  }

  private onLeave (): void {
    if (this.leaving !== 'no') return
    const view = this.view
    if (view === undefined || view.members.length === 1) {
      this.demote('shutdown')
      this.finishLeave()
      return
    }
    if (this.isCoordinator()) {
      this.leaving = 'handover'
      this.handOver(view, undefined, true)
      return
    }
    this.leaving = 'requested'
    this.send(this.coordinator()!.address, { ...this.envelope(), type: 'leave' }, { kind: 'leave' })
  }

  private finishLeave (): void {
    if (this.leaving === 'done') return
    this.leaving = 'done'
    this.demote('shutdown')
    this.emit({ type: 'self:left' })
  }

  private onTransfer (to: string | undefined): void {
    const r = this.role
    if (r.kind !== 'coordinator' || this.leaving !== 'no') {
      this.log('warn', 'leadership transfer ignored: not the coordinator', { to })
      return
    }
    this.handOver(r.view, to, false)
  }

  private handOver (view: ViewData, to: string | undefined, leaving: boolean): void {
    const candidates = view.members.filter(m => memberKey(m) !== this.myKey && !this.fd.isSuspected(memberKey(m)))
    const successor = to !== undefined ? candidates.find(m => m.name === to) : candidates[0]
    if (successor === undefined) {
      this.log('warn', 'no successor to hand over to', { to })
      if (leaving) this.finishLeave()
      return
    }
    const epoch = this.votes.leaderEpoch ?? this.configs.highestEpoch
    if (this.votes.leading) this.demote('handover')
    this.votes.resolveAll()
    // Until the successor installs its view, do not lead or install again.
    this.votes.startHandover(this.now)
    const msg: HandoverMessage = { ...this.envelope(), type: 'handover', leaving, handedOver: epoch }
    this.send(successor.address, msg, { kind: 'handover', target: successor, leaving })
    this.log('info', 'handing over', { to: successor.name, epoch, leaving })
  }
}
