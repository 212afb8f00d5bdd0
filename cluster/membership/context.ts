/**
 * What the membership machine's roles share: the member's identity and options, its parts (configurations,
 * peers, failure detector, founding, votes), its role (no view, member, coordinator), the join requests it holds,
 * and the outbox (sends, replies, events, logs). The rules every role applies to what it hears live here too:
 * learning summaries, verified deaths, suspicions, promises, quorums, applying a view.
 */
import type { Epoch } from '../../common/epoch.js'
import type { DemotionReason } from '../leadership-api.js'
import {
  PROTOCOL_VERSION, memberKey,
  type ClusterRequest, type ConfigRef, type MemberInfo, type PingReqMessage, type ReplyMessage, type ReplyReason,
  type Replacement, type ViewData, type ViewSummary
} from '../messages.js'
import type { MembershipConfig } from './config.js'
import { ConfigState } from './config-state.js'
import { FailureDetector } from './failure-detector.js'
import { Founding } from './founding.js'
import { PeerDirectory } from './peers.js'
import { jointQuorum, majorityOf } from './quorum.js'
import type { MembershipEvent, MembershipOutput, MembershipStatus, PersistedClusterState } from './types.js'
import { Votes } from './votes.js'

/** What a request was for, so its result goes to the right handler. */
export type Purpose =
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

/**
 * Where this member stands: without a view (discovery, join, cold start), a member of a view, or its coordinator
 * (the first member: it installs the views, runs the rounds and, in the primary view with a lease, leads).
 */
export type Role =
  | { kind: 'joining' }
  | { kind: 'member', view: ViewData }
  | { kind: 'coordinator', view: ViewData }

export class MemberContext {
  readonly myKey: string
  readonly configs: ConfigState
  readonly peers = new PeerDirectory()
  readonly fd: FailureDetector
  readonly founding: Founding
  readonly votes: Votes
  role: Role = { kind: 'joining' }
  /** A graceful leave: handing over first (coordinator), asked of the coordinator, or done (the member is gone). */
  leaving: 'no' | 'handover' | 'requested' | 'done' = 'no'
  /** Who asked me to join (as coordinator, or as founder during the cold start). */
  readonly joinRequests = new Map<string, MemberInfo>()
  /** A merge of my view into another one was asked lately: joiners go to that view's coordinator meanwhile. */
  mergingInto: { coord: MemberInfo, until: number } | undefined
  /** The time of the step being handled (the member's monotonic clock). */
  now: number

  private readonly inflight = new Map<number, Purpose>()
  private nextSendId = 0
  private out: MembershipOutput[] = []

  constructor (readonly cfg: MembershipConfig, readonly me: MemberInfo, readonly random: () => number, persisted: PersistedClusterState | undefined, now: number) {
    this.myKey = memberKey(me)
    this.now = now
    this.configs = new ConfigState(persisted, cfg.forceNewCluster)
    this.fd = new FailureDetector(cfg, this.myKey)
    this.founding = new Founding(cfg, me, now)
    this.votes = new Votes(cfg, this.myKey)
    // My previous incarnation (the one that persisted this state) is certainly gone: a verified death, so it stops
    // counting in the persisted configuration once its last promise has run out.
    if (persisted?.member !== undefined && memberKey(persisted.member) !== this.myKey) this.fd.markOldSelf(persisted.member, now)
    this.markOldSelves(this.configs.committed)
    this.markOldSelves(this.configs.pending)
    if (this.configs.forced) this.configs.forgetForNewCluster(me)
  }

  /** True only while this member holds a valid lease at `now` (a leader woken from a pause is not leader). */
  isLeader (now: number): boolean { return this.votes.isLeader(now) }
  leaseRemaining (now: number): number { return this.votes.leaseRemaining(now) }

  /** The graceful leave is complete: the driver may stop. */
  finishLeave (): void {
    if (this.leaving === 'done') return
    this.leaving = 'done'
    this.demote('shutdown')
    this.emit({ type: 'self:left' })
  }

  /** A new step at `now`: the outbox starts empty. */
  begin (now: number): void {
    this.now = now
    this.out = []
  }

  /** The purpose of request `id`, which is answered now (undefined: unknown, or answered before). */
  takePurpose (id: number): Purpose | undefined {
    const p = this.inflight.get(id)
    this.inflight.delete(id)
    return p
  }

  // ---------------------------------------------------------------------------------------------------------
  // Status

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
      epoch: this.currentEpoch(),
      highestEpoch: this.configs.highestEpoch,
      leaseRemainingMs: this.leaseRemaining(now),
      quorum: { required: none ? 0 : required, present, ok: none ? view !== undefined : primary },
      suspected: this.fd.suspected().map(m => m.name),
      heartbeatAgeMaxMs: this.heartbeatAgeMax(now)
    }
  }

  /** The epoch of my leadership, else the highest I know of (undefined on a new member). */
  currentEpoch (): Epoch | undefined { return this.votes.leaderEpoch ?? this.knownEpoch() }

  private knownEpoch (): Epoch | undefined {
    const h = this.configs.highestEpoch
    return h.number > 0 ? h : undefined
  }

  /** Longest silence among the members this one watches (the coordinator watches all; a member its coordinator). */
  private heartbeatAgeMax (now: number): number {
    return this.fd.longestSilence(this.watched(), now)
  }

  /**
   * By name, the silence of each member this one watches (as `heartbeatAgeMaxMs`): since it last spoke, or since
   * its clocks restarted with a view. Members it does not watch (itself; for a member, the others than its
   * coordinator, which it never hears from) have none.
   */
  heartbeatAges (now: number): Map<string, number> {
    const ages = new Map<string, number>()
    for (const m of this.watched()) {
      const at = this.fd.lastHeard(memberKey(m))
      if (at !== undefined) ages.set(m.name, Math.max(0, now - at))
    }
    return ages
  }

  /** The members whose heartbeats this one's failure detector follows: the coordinator all others, a member its coordinator. */
  private watched (): MemberInfo[] {
    const r = this.role
    if (r.kind === 'joining') return []
    return r.kind === 'coordinator' ? r.view.members.filter(m => memberKey(m) !== this.myKey) : [r.view.members[0]!]
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

  flush (): MembershipOutput[] {
    const out = this.out
    this.out = []
    // Persist first: the driver writes it before executing any other output of this step.
    if (this.configs.takeDirty()) out.unshift({ type: 'persist', state: this.configs.snapshot(this.me) })
    return out
  }

  // ---------------------------------------------------------------------------------------------------------
  // Role and outbox

  get view (): ViewData | undefined { return this.role.kind === 'joining' ? undefined : this.role.view }

  isCoordinator (): boolean { return this.role.kind === 'coordinator' }

  coordinator (): MemberInfo | undefined { return this.view?.members[0] }

  inViewKey (key: string): boolean { return this.view?.members.some(m => memberKey(m) === key) ?? false }

  private setView (view: ViewData | undefined): void {
    if (view === undefined) this.role = { kind: 'joining' }
    else this.role = view.members[0] !== undefined && memberKey(view.members[0]) === this.myKey ? { kind: 'coordinator', view } : { kind: 'member', view }
  }

  emit (event: MembershipEvent): void { this.out.push({ type: 'event', event }) }

  log (level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>): void {
    this.out.push({ type: 'log', level, msg, ...(fields !== undefined ? { fields } : {}) })
  }

  envelope (): { v: number, cluster: string, from: MemberInfo, epoch: Epoch } {
    return { v: PROTOCOL_VERSION, cluster: this.cfg.clusterName, from: this.me, epoch: this.configs.highestEpoch }
  }

  summary (): ViewSummary {
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

  hello (): ClusterRequest { return { ...this.envelope(), type: 'hello', summary: this.summary() } }

  send (to: string, msg: ClusterRequest, purpose: Purpose, timeoutMs = this.cfg.requestTimeoutMs): void {
    const id = ++this.nextSendId
    this.inflight.set(id, purpose)
    this.out.push({ type: 'send', id, to, msg, timeoutMs })
  }

  reply (req: ClusterRequest, ok: boolean, reason?: ReplyReason, extra: Partial<ReplyMessage> = {}): void {
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
  // Knowledge: configurations, deaths, suspicions, promises

  isPrimaryView (): boolean {
    if (this.cfg.quorum === 'none') return this.view !== undefined
    return this.configs.isPrimary(this.view)
  }

  /** The leader this member follows (not itself) and when it last heard from it: the takeover metric's start. */
  leaderSign (now: number): { name: string, at: number } | undefined {
    const name = this.leaderName(now)
    const c = this.view?.members[0]
    if (name === undefined || name === this.me.name || c === undefined || c.name !== name) return undefined
    const at = this.fd.lastHeard(memberKey(c))
    return at === undefined ? undefined : { name, at }
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

  knownMembers (): MemberInfo[] {
    const all = new Map<string, MemberInfo>()
    for (const m of this.view?.members ?? []) all.set(memberKey(m), m)
    for (const m of this.configs.configMembers()) all.set(memberKey(m), m)
    return [...all.values()]
  }

  learnSummary (from: MemberInfo, s: ViewSummary | undefined): void {
    if (s === undefined) return
    this.configs.noteCounter(s.maxCounter)
    if (s.view !== undefined) this.configs.noteCounter(s.view.id.counter)
    this.configs.noteEpoch(s.promisedTo)
    const wasPrimary = this.isPrimaryView()
    for (const c of this.configs.adopt(s)) this.markOldSelves(c)
    // Another member's word that my view was committed (a reply that arrived late, after the commit): it is my
    // primary view now, and says so like every other way a view becomes primary.
    if (!wasPrimary && this.view !== undefined && this.isPrimaryView()) this.emit({ type: 'view:installed', view: this.view, primary: true })
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
  heard (from: MemberInfo): void {
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

  markDead (m: MemberInfo, how: string): void {
    if (!this.fd.markDead(m, how, this.now)) return
    this.log('info', 'member verified dead', { member: m.name, incarnation: m.incarnation, how })
    // The leader I am promised to is dead: as a coordinator without a lease, elect at the next tick (a takeover
    // install made before this proof could not be a claim).
    if (this.votes.lastPromisedTo === memberKey(m) && !this.votes.leading && this.isCoordinator()) this.votes.electNow(this.now)
  }

  suspect (m: MemberInfo, reason: string): void {
    if (this.fd.suspect(m, this.now)) this.emit({ type: 'member:suspected', member: m, reason })
  }

  refused (m: MemberInfo): void {
    if (this.fd.noteRefused(m, this.now)) this.markDead(m, 'refused')
  }

  /** Whether this member may promise its support to `leaderKey` for `epoch` (see `Votes.canPromise`). */
  canPromise (epoch: Epoch, leaderKey: string, handoverFrom?: Epoch, evidence?: Replacement): boolean {
    return this.votes.canPromise(epoch, leaderKey, this.configs.highestEpoch, this.now, k => this.fd.isDead(k), handoverFrom, evidence)
  }

  /** Promise (a vote or a lease acknowledgement), raising my highest epoch to it. */
  givePromise (epoch: Epoch, leaderKey: string): void {
    this.votes.give(epoch, leaderKey, this.now)
    this.configs.raiseHighest(epoch)
  }

  /** Members of a configuration that still count, from this member's knowledge now. */
  private baseOf (c: ConfigRef, replacedLeaderKey: string | undefined): MemberInfo[] {
    return c.members.filter(m => this.fd.discountReason(memberKey(m), replacedLeaderKey, this.now, this.votes.leading) === undefined)
  }

  // ---------------------------------------------------------------------------------------------------------
  // Quorums

  /**
   * Joint quorums over `configs`. A configuration of which more than one member is discounted for having died
   * (`died`) also needs promises from a majority of `VECTIS_CLUSTER_SIZE`, as when all its members are gone: the
   * dead may have committed a newer configuration without me before dying, and their restarted processes carry it
   * on (persisted); discounting one dead member keeps my quorum meeting every quorum of the same configuration
   * (deaths are final), discounting two does not (docs/cluster-protocol.md, "Configurations and quorums").
   */
  quorumOk (configs: ConfigRef[], acks: Set<string>, replacedLeaderKey?: string): boolean {
    if (this.cfg.quorum === 'none') return true
    const reason = (k: string): string | undefined => this.fd.discountReason(k, replacedLeaderKey, this.now, this.votes.leading)
    return jointQuorum(configs, acks, {
      clusterSize: this.cfg.clusterSize,
      bootstrap: this.configs.committed === undefined,
      discounted: (k) => reason(k) !== undefined,
      discountedAsDead: (k) => reason(k) === 'died'
    })
  }

  potentialQuorum (members: MemberInfo[], replacedLeaderKey: string | undefined): boolean {
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
  // Leadership, probes, views

  demote (reason: DemotionReason): void {
    const e = this.votes.demote(reason, this.now)
    if (e === undefined) return
    this.log('info', 'leadership ended', { epoch: e.epoch, reason })
    this.emit(e)
  }

  becomeLeader (epoch: Epoch, expiry: number): void {
    const e = this.votes.become(epoch, expiry)
    this.configs.raiseHighest(epoch)
    this.log('info', 'leadership started', { epoch, leaseMs: expiry - this.now })
    this.emit(e)
  }

  /** Quorum `none`: the coordinator leads (again, e.g. after a hand-over that did not happen). */
  leadWithoutQuorum (): void {
    const e = this.configs.newEpoch(this.me.name)
    this.configs.raiseHighest(e)
    this.becomeLeader(e, Number.POSITIVE_INFINITY)
  }

  helloDiscovered (every: number, skipMembers = false): void {
    const viewless = this.view === undefined
    for (const a of this.peers.discovered) {
      if (skipMembers && this.view?.members.some(m => m.address === a) === true) continue
      if (!this.peers.helloDue(a, this.now, every, viewless)) continue
      // First contacts (dial, handshake) get longer than a request on an open connection.
      this.send(a, this.hello(), { kind: 'hello', address: a }, viewless ? this.founding.firstContactMs() : this.cfg.requestTimeoutMs)
    }
  }

  /** `toView`: `to` is (said to be) the coordinator of a view, not a view-less founder (see `Founding.joinSent`). */
  sendJoin (to: MemberInfo, joiners: MemberInfo[], toView: boolean): void {
    if (this.view === undefined) this.founding.joinSent(to, toView, this.now)
    this.send(to.address, { ...this.envelope(), type: 'join', joiners, summary: this.summary() }, { kind: 'join', to })
  }

  /** Verification before exclusion: a direct probe (dial-back) and indirect probes through two other members. */
  verify (m: MemberInfo, view: ViewData): void {
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
  sendProbe (m: MemberInfo): void {
    this.send(m.address, this.hello(), { kind: 'hello', address: m.address, expect: m })
  }

  dropView (why: string): void {
    this.log('info', 'leaving my view', { why, viewId: this.view?.id })
    if (this.votes.leading) this.demote('superseded')
    this.setView(undefined)
  }

  applyView (view: ViewData): void {
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
}
