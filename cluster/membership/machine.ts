/**
 * Membership and leadership as one deterministic state machine: `handle(input, now)` returns the outputs (sends,
 * the reply to a received request, persistence, events, logs). No I/O, no timers, no randomness other than the
 * injected `random`; time only from `now` (the member's monotonic clock). The protocol, the rules and why the
 * invariants hold are in `docs/cluster-protocol.md`.
 *
 * NOT guaranteed by this module alone:
 * - with quorum `none`, that a single member leads (every view's coordinator does, as in JGroups);
 * - anything if members lie (non-Byzantine setting: the cluster secret keeps strangers out);
 * - safety under clock-rate errors larger than `maxClockDrift`, or under a partition that resets connections on one
 *   side only combined with a false "verified dead" from outside (see the protocol document);
 * - that `persist` outputs are durable: the driver must write them before executing the outputs that follow.
 */
import { ZERO_EPOCH, compareEpochs, sameEpoch, type Epoch } from '../../common/epoch.js'
import {
  PROTOCOL_VERSION, memberKey,
  type ClusterRequest, type ConfigRef, type HandoverMessage, type HeartbeatMessage, type HelloMessage,
  type InstallMessage, type JoinMessage, type MemberInfo, type PingReqMessage, type ReleaseMessage,
  type ReplyMessage, type ReplyReason, type ViewData, type ViewSummary
} from '../messages.js'
import { resolveMembershipConfig, type MembershipConfig, type MembershipInit } from './config.js'
import { jointQuorum, majorityOf } from './quorum.js'
import { byNameThenPeer, rankCompare, speaksForItsView } from './view.js'
import type {
  MembershipComponents, MembershipEvent, MembershipInput, MembershipOutput, MembershipStatus, PersistedClusterState
} from './types.js'
import type { DemotionReason } from '../leadership-api.js'

type Purpose =
  | { kind: 'hello', address: string, expect?: MemberInfo }
  | { kind: 'join', to: MemberInfo }
  | { kind: 'install', round?: number, target: MemberInfo }
  | { kind: 'propose', proposal: number, target: MemberInfo }
  | { kind: 'heartbeat', round: number, target: MemberInfo }
  | { kind: 'release', target: MemberInfo }
  | { kind: 'leave' }
  | { kind: 'handover', target: MemberInfo, leaving: boolean }
  | { kind: 'ping-req', helper: MemberInfo, suspect: MemberInfo }

interface PeerState {
  member?: MemberInfo
  summary?: ViewSummary
  lastHeard: number
  lastHello: number
}

interface Health {
  member: MemberInfo
  lastHeard: number
  /** Last acknowledgement that carried a promise to my leadership. */
  lastPromiseAck?: number
  suspectedSince?: number
  suspectReason?: string
  refusedSince?: number
  lastRefused?: number
  directFailedAt?: number
  indirectUnreachableAt?: number
  indirectFoundAt?: number
  lastPing?: number
  lastProbe?: number
  probeInFlight?: boolean
  departed?: boolean
}

interface Round {
  no: number
  kind: 'heartbeat' | 'install'
  sentAt: number
  epoch: Epoch
  claim: boolean
  election: boolean
  view: ViewData
  configs: ConfigRef[]
  targets: Map<string, MemberInfo>
  acks: Set<string>
  answered: Set<string>
  hardFail: Set<string>
  /** Members that refused because they are still promised to the previous leader (not yet verified dead by them). */
  promised: Set<string>
  resolved: boolean
  handoverFrom?: Epoch
}

interface Lead {
  epoch: Epoch
  expiry: number
  since: number
}

interface Promise_ {
  epoch: Epoch
  leaderKey: string
  until: number
}

export class MembershipMachine {
  readonly cfg: MembershipConfig
  readonly me: MemberInfo
  private readonly myKey: string
  private readonly random: () => number
  private readonly startedAt: number

  /** The installed view (undefined before joining, or after learning I was excluded). */
  private view: ViewData | undefined
  /** The last primary view known committed (persisted): quorums count against it. */
  private committed: ConfigRef | undefined
  private pendingConfig: ConfigRef | undefined
  /**
   * A claimed view I applied (and promised for, or claimed myself) whose commit I have not heard of. Persisted: a
   * restarted voter still counts it, or it could vote for a candidate that knows only an older configuration.
   */
  private get pending (): ConfigRef | undefined { return this.pendingConfig }
  private set pending (c: ConfigRef | undefined) {
    if (c === this.pendingConfig) return
    this.pendingConfig = c
    this.dirty = true
  }
  /** Highest epoch I promised to or led (persisted); lower epochs are refused. */
  private highestEpoch: Epoch
  /** Highest epoch heard of (failed claims included): new claims are numbered above it. */
  private seenEpoch: Epoch
  private maxCounter: number
  private maxApplied: number
  /** My current promise (vote or lease acknowledgement). */
  private promise: Promise_ | undefined
  /** My leadership, while I have one (the lease expiry is on my clock). */
  private lead: Lead | undefined

  private discovered: string[] = []
  /** What each address last told (identity, view summary), from hellos and replies. */
  private readonly peers = new Map<string, PeerState>()
  /** Failure detection per member of my view (and probed configuration members). */
  private readonly health = new Map<string, Health>()
  /** Verified deaths: member key → when verified (certain, or evidence when also in `onlyRefused`). */
  private readonly dead = new Map<string, number>()
  /** Deaths verified only by refused connections (revoked if the member speaks again). */
  private readonly onlyRefused = new Set<string>()
  /** `name/incarnation` reported dead by an outside authority (kept: the member may only become known later). */
  private readonly externalDead = new Set<string>()
  private readonly left = new Set<string>()
  private readonly joinRequests = new Map<string, MemberInfo>()
  private readonly inflight = new Map<number, Purpose>()
  private readonly rounds = new Map<number, Round>()
  private replacedBy: { dead: MemberInfo, found: MemberInfo } | undefined

  private nextSendId = 0
  private nextRoundNo = 0
  private nextHeartbeatAt = 0
  private electionBackoffUntil = 0
  private reelect = false
  private forceReinstall = false
  private nextMergeScanAt = 0
  private founderSince: { key: string, since: number } | undefined
  /** Cold start, as founder: the founding view proposed to the candidates, waiting for their answers. */
  private proposal: { no: number, sentAt: number, waiting: Set<string>, accepted: Map<string, MemberInfo>, conflict: { who: MemberInfo, hasView: boolean } | undefined } | undefined
  private nextProposalNo = 0
  /** Cold start, as candidate: the founder whose proposal I accepted; I follow no one else until it runs out. */
  private acceptedFounder: { founder: MemberInfo, until: number } | undefined
  /** Cold start, as joiner: the coordinator (or founder) I asked to join lately. */
  private joinedTo: { coord: MemberInfo, toView: boolean, until: number } | undefined
  /** Cold start: the member count last logged as too few to found the first view. */
  private waitingLogged = 0
  /** Cold start: a founder whose proposal conflicted with mine; I found nothing until this runs out. */
  private deferTo: { founder: MemberInfo, until: number } | undefined
  /** A merge of my view into another one was asked lately: joiners go to that view's coordinator meanwhile. */
  private mergingInto: { coord: MemberInfo, until: number } | undefined
  private readonly founderFailed = new Map<string, number>()
  private lastJoinSent = 0
  private handingOver: { until: number } | undefined
  private leaving: 'no' | 'handover' | 'requested' | 'done' = 'no'
  private forced: boolean
  private readonly installResent = new Map<string, number>()

  private out: MembershipOutput[] = []
  private dirty = false
  private now = 0

  constructor (components: MembershipComponents, init: MembershipInit = {}, now = 0) {
    this.cfg = resolveMembershipConfig(init)
    this.me = { ...components.me }
    this.myKey = memberKey(this.me)
    this.random = components.random
    this.startedAt = now
    this.now = now
    const p = components.persisted
    this.highestEpoch = p?.highestEpoch ?? ZERO_EPOCH
    this.seenEpoch = this.highestEpoch
    this.maxCounter = p?.maxCounter ?? 0
    this.maxApplied = p?.maxApplied ?? 0
    this.committed = p?.committed
    if (p?.pending !== undefined && p.pending.id.counter > (this.committed?.id.counter ?? 0)) this.pendingConfig = p.pending
    this.forced = this.cfg.forceNewCluster
    // My previous incarnation (the one that persisted this state) is certainly gone: a verified death, so it stops
    // counting in the persisted configuration once its last promise has run out.
    if (p?.member !== undefined && memberKey(p.member) !== this.myKey) this.dead.set(memberKey(p.member), now)
    this.markOldSelves(this.committed)
    this.markOldSelves(this.pendingConfig)
    if (this.forced) {
      // The operator's way out: this member alone is the new primary configuration; the old one is forgotten.
      this.maxCounter += 1
      this.committed = { id: { coordinator: this.me.name, counter: this.maxCounter }, members: [this.me] }
      this.pendingConfig = undefined
      this.dirty = true
    }
    // Jittered start of the periodic work, so members do not act in lockstep.
    this.nextHeartbeatAt = now + this.cfg.heartbeatMs * this.random() * 0.2
    this.nextMergeScanAt = now
  }

  // ---------------------------------------------------------------------------------------------------------
  // Public queries (synchronous, from `now`)

  /** True only while this member holds a valid lease at `now` (a leader woken from a pause is not leader). */
  isLeader (now: number): boolean {
    if (this.lead === undefined) return false
    if (this.cfg.quorum === 'none') return true
    return now < this.lead.expiry
  }

  leaseRemaining (now: number): number {
    if (this.lead === undefined) return 0
    if (this.cfg.quorum === 'none') return Number.POSITIVE_INFINITY
    return Math.max(0, this.lead.expiry - now)
  }

  currentView (): ViewData | undefined { return this.view }
  currentEpoch (): Epoch | undefined { return this.lead?.epoch ?? (this.highestEpoch.number > 0 ? this.highestEpoch : undefined) }
  persistedState (): PersistedClusterState { return this.snapshot() }

  status (now: number): MembershipStatus {
    const primary = this.isPrimaryView()
    const base = this.committed !== undefined ? this.baseOf(this.committed, undefined) : []
    const required = majorityOf(this.committed !== undefined && base.length > 0 ? base.length : this.cfg.clusterSize)
    const present = this.view === undefined ? 0 : this.view.members.filter(m => this.health.get(memberKey(m))?.suspectedSince === undefined).length
    return {
      me: this.me,
      view: this.view,
      primary,
      isLeader: this.isLeader(now),
      leader: this.leaderName(now),
      epoch: this.lead?.epoch ?? (this.highestEpoch.number > 0 ? this.highestEpoch : undefined),
      highestEpoch: this.highestEpoch,
      leaseRemainingMs: this.cfg.quorum === 'none' ? (this.lead !== undefined ? Number.POSITIVE_INFINITY : 0) : this.leaseRemaining(now),
      quorum: { required: this.cfg.quorum === 'none' ? 0 : required, present, ok: this.cfg.quorum === 'none' ? this.view !== undefined : primary },
      suspected: [...this.health.values()].filter(h => h.suspectedSince !== undefined).map(h => h.member.name),
      heartbeatAgeMaxMs: this.heartbeatAgeMax(now)
    }
  }

  private heartbeatAgeMax (now: number): number {
    if (this.view === undefined) return 0
    const watched = this.isCoordinator() ? this.view.members.filter(m => memberKey(m) !== this.myKey) : [this.view.members[0]!]
    let max = 0
    for (const m of watched) {
      const h = this.health.get(memberKey(m))
      if (h !== undefined) max = Math.max(max, now - h.lastHeard)
    }
    return max
  }

  /** Internal state for diagnostics (simulation failures, debug logs); not a stable interface. */
  debugState (now: number): Record<string, unknown> {
    return {
      view: this.view !== undefined ? `${this.view.id.coordinator}#${this.view.id.counter}` : undefined,
      committed: this.committed !== undefined ? `${this.committed.id.coordinator}#${this.committed.id.counter}[${this.committed.members.map(m => `${m.name}/${m.incarnation}`).join(',')}]` : undefined,
      pending: this.pending !== undefined ? `${this.pending.id.coordinator}#${this.pending.id.counter}` : undefined,
      promise: this.promise !== undefined ? `${this.promise.epoch.number}/${this.promise.leaderKey} for ${(this.promise.until - now).toFixed(0)}` : undefined,
      highest: this.highestEpoch.number,
      seen: this.seenEpoch.number,
      lead: this.lead !== undefined ? `${this.lead.epoch.number} for ${(this.lead.expiry - now).toFixed(0)}` : undefined,
      dead: [...this.dead].map(([k, t]) => `${k}@${(now - t).toFixed(0)}`),
      suspected: [...this.health.values()].filter(h => h.suspectedSince !== undefined).map(h => h.member.name),
      backoff: Math.max(0, this.electionBackoffUntil - now).toFixed(0),
      handingOver: this.handingOver !== undefined,
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
      case 'discovered': this.discovered = [...new Set(input.addresses)].filter(a => a !== this.me.address); break
      case 'message': this.onMessage(input.msg); break
      case 'send-result': this.onSendResult(input); break
      case 'disconnected': this.onDisconnected(input.peerId); break
      case 'verified-dead': this.onExternalDeath(input.name, input.incarnation); break
      case 'leave': this.onLeave(); break
      case 'transfer': this.onTransfer(input.to); break
    }
    this.checkLease()
    return this.flush()
  }

  private flush (): MembershipOutput[] {
    const out = this.out
    this.out = []
    if (this.dirty) {
      this.dirty = false
      // Persist first: the driver writes it before executing any other output of this step.
      out.unshift({ type: 'persist', state: this.snapshot() })
    }
    return out
  }

  private snapshot (): PersistedClusterState {
    return {
      highestEpoch: this.highestEpoch,
      maxCounter: this.maxCounter,
      maxApplied: this.maxApplied,
      ...(this.committed !== undefined ? { committed: this.committed } : {}),
      ...(this.pendingConfig !== undefined ? { pending: this.pendingConfig } : {}),
      member: this.me
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Helpers

  private emit (event: MembershipEvent): void { this.out.push({ type: 'event', event }) }
  private log (level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>): void {
    this.out.push({ type: 'log', level, msg, ...(fields !== undefined ? { fields } : {}) })
  }

  private envelope (): { v: number, cluster: string, from: MemberInfo, epoch: Epoch } {
    return { v: PROTOCOL_VERSION, cluster: this.cfg.clusterName, from: this.me, epoch: this.highestEpoch }
  }

  private summary (): ViewSummary {
    const s: ViewSummary = {
      committedCounter: this.committed?.id.counter ?? 0,
      leading: this.isLeader(this.now),
      maxCounter: this.maxCounter
    }
    if (this.view !== undefined) s.view = this.view
    if (this.holds(this.promise)) s.promisedTo = this.promise.epoch
    if (this.committed !== undefined) s.committed = this.committed
    if (this.pending !== undefined) s.pending = this.pending
    return s
  }

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

  private isCoordinator (): boolean { return this.view?.members[0] !== undefined && memberKey(this.view.members[0]) === this.myKey }
  private coordinator (): MemberInfo | undefined { return this.view?.members[0] }
  private inViewKey (key: string): boolean { return this.view?.members.some(m => memberKey(m) === key) ?? false }

  private healthOf (m: MemberInfo): Health {
    const k = memberKey(m)
    let h = this.health.get(k)
    if (h === undefined) {
      h = { member: m, lastHeard: this.now }
      this.health.set(k, h)
    }
    return h
  }

  private isPrimaryView (): boolean {
    if (this.cfg.quorum === 'none') return this.view !== undefined
    return this.view !== undefined && this.committed !== undefined && this.committed.id.counter === this.view.id.counter &&
      this.committed.id.coordinator === this.view.id.coordinator
  }

  private leaderName (now: number): string | undefined {
    if (this.isLeader(now)) return this.me.name
    if (this.view === undefined) return undefined
    const c = this.view.members[0]
    if (c === undefined) return undefined
    if (this.cfg.quorum === 'none') return c.name
    // A member knows its coordinator leads when its view is the committed primary and it is promised to it.
    if (this.isPrimaryView() && this.promise !== undefined && this.promise.until > now && this.promise.leaderKey === memberKey(c)) return c.name
    return undefined
  }

  private configCounter (): number {
    return Math.max(this.committed?.id.counter ?? 0, this.pending?.id.counter ?? 0)
  }

  private noteCounter (c: number): void {
    if (c > this.maxCounter) {
      this.maxCounter = c
      this.dirty = true
    }
  }

  private noteEpoch (e: Epoch | undefined): void {
    if (e !== undefined && compareEpochs(e, this.seenEpoch) > 0) this.seenEpoch = e
  }

  private raiseHighest (e: Epoch): void {
    this.noteEpoch(e)
    if (compareEpochs(e, this.highestEpoch) > 0) {
      this.highestEpoch = e
      this.dirty = true
    }
  }

  private newEpoch (): Epoch {
    const base = compareEpochs(this.seenEpoch, this.highestEpoch) > 0 ? this.seenEpoch : this.highestEpoch
    return { number: base.number + 1, leader: this.me.name }
  }

  private learnSummary (from: MemberInfo, s: ViewSummary | undefined): void {
    if (s === undefined) return
    this.noteCounter(s.maxCounter)
    if (s.view !== undefined) this.noteCounter(s.view.id.counter)
    this.noteEpoch(s.promisedTo)
    this.adoptConfigs(s)
    // My coordinator (or, when it failed, an older member that would take over) moved on without me: I was
    // excluded while cut off or paused. Rejoin.
    if (this.view !== undefined && s.view !== undefined && memberKey(from) !== this.myKey &&
      s.view.id.counter > this.view.id.counter && !s.view.members.some(m => memberKey(m) === this.myKey)) {
      const fk = memberKey(from)
      const idx = this.view.members.findIndex(m => memberKey(m) === fk)
      const mine = this.view.members.findIndex(m => memberKey(m) === this.myKey)
      const coordSuspected = this.health.get(memberKey(this.view.members[0]!))?.suspectedSince !== undefined
      if (idx === 0 || (idx > 0 && idx < mine && coordSuspected)) this.dropView('excluded by my coordinator')
    }
    const p = this.peers.get(from.address) ?? { lastHeard: this.now, lastHello: -Infinity }
    // A light summary (heartbeat acknowledgement) has no view: keep the view last reported by the same process.
    const prev = p.member !== undefined && memberKey(p.member) === memberKey(from) ? p.summary : undefined
    p.summary = s.light === true && prev !== undefined ? { ...prev, ...s } : s
    p.member = from
    p.lastHeard = this.now
    this.peers.set(from.address, p)
  }

  /**
   * Learning configurations from others is safe: a committed primary view was acknowledged by a quorum, and a
   * pending one only makes my quorums stricter. It keeps candidates from being refused for knowing less.
   */
  private adoptConfigs (s: ViewSummary): void {
    if (s.committed !== undefined && s.committed.id.counter > (this.committed?.id.counter ?? 0)) {
      this.committed = { id: { ...s.committed.id }, members: s.committed.members.map(m => ({ ...m })) }
      this.markOldSelves(this.committed)
      if (this.pending !== undefined && this.pending.id.counter <= this.committed.id.counter) this.pending = undefined
      this.dirty = true
    }
    if (s.pending !== undefined && s.pending.id.counter > this.configCounter()) {
      this.pending = { id: { ...s.pending.id }, members: s.pending.members.map(m => ({ ...m })) }
      this.markOldSelves(this.pending)
    }
  }

  /**
   * Earlier incarnations of this member in a configuration are certainly dead (this process replaced them), and so
   * are members an outside authority reported dead before this member knew them.
   */
  private markOldSelves (c: ConfigRef | undefined): void {
    for (const m of c?.members ?? []) {
      const k = memberKey(m)
      if (m.name === this.me.name && k !== this.myKey && !this.dead.has(k)) this.dead.set(k, this.now)
      if (this.externalDead.has(`${m.name}/${m.incarnation}`)) this.markDead(m, 'external')
    }
  }

  /** Bookkeeping on anything heard from a member (a request it sent, or its reply). */
  private heard (from: MemberInfo): void {
    const k = memberKey(from)
    const p = this.peers.get(from.address) ?? { lastHeard: this.now, lastHello: -Infinity }
    p.member = from
    p.lastHeard = this.now
    this.peers.set(from.address, p)
    const h = this.health.get(k)
    if (h !== undefined) this.clearSuspicion(h)
    if (this.onlyRefused.delete(k)) {
      // Refusals were evidence, not proof (a resetting partition): it speaks again, so it is alive.
      this.dead.delete(k)
    }
    // Another incarnation of a member I know speaks: the old process is gone (a new process of the same pod).
    for (const m of this.knownMembers()) {
      if (m.name === from.name && memberKey(m) !== k && !this.dead.has(memberKey(m))) {
        this.markDead(m, 'replaced')
        this.replacedBy = { dead: m, found: from }
      }
    }
  }

  private clearSuspicion (h: Health): void {
    h.lastHeard = this.now
    h.refusedSince = undefined
    h.lastRefused = undefined
    h.suspectedSince = undefined
    h.suspectReason = undefined
    h.directFailedAt = undefined
    h.indirectUnreachableAt = undefined
  }

  private knownMembers (): MemberInfo[] {
    const all = new Map<string, MemberInfo>()
    for (const m of this.view?.members ?? []) all.set(memberKey(m), m)
    for (const c of [this.committed, this.pending]) for (const m of c?.members ?? []) all.set(memberKey(m), m)
    return [...all.values()]
  }

  private markDead (m: MemberInfo, how: string): void {
    const k = memberKey(m)
    if (k === this.myKey) return
    if (how === 'refused') {
      if (this.dead.has(k)) return
      this.onlyRefused.add(k)
    } else {
      // Proof replaces evidence; the FT + margin before it stops counting runs from now.
      const upgraded = this.onlyRefused.delete(k)
      if (this.dead.has(k) && !upgraded) return
    }
    this.dead.set(k, this.now)
    this.log('info', 'member verified dead', { member: m.name, incarnation: m.incarnation, how })
    // The leader I am promised to is dead: as a coordinator without a lease, elect at the next tick (a takeover
    // install made before this proof could not be a claim).
    if (this.promise?.leaderKey === k && this.lead === undefined && this.isCoordinator()) this.electionBackoffUntil = Math.min(this.electionBackoffUntil, this.now)
  }

  private suspect (m: MemberInfo, reason: string): void {
    if (memberKey(m) === this.myKey) return
    const h = this.healthOf(m)
    if (h.suspectedSince === undefined) {
      h.suspectedSince = this.now
      h.suspectReason = reason
      this.emit({ type: 'member:suspected', member: m, reason })
    }
  }

  private noteRefused (m: MemberInfo): void {
    const h = this.healthOf(m)
    if (h.refusedSince === undefined) h.refusedSince = this.now
    h.lastRefused = this.now
    if (h.lastRefused - h.refusedSince >= this.cfg.refusedDeathMs) this.markDead(m, 'refused')
  }

  // ---------------------------------------------------------------------------------------------------------
  // Promises (votes and lease acknowledgements)

  /** Whether this member may promise its support to `leaderKey` for `epoch`. */
  private canPromise (epoch: Epoch, leaderKey: string, handoverFrom?: Epoch, evidence?: { dead: MemberInfo, found: MemberInfo }): boolean {
    const p = this.promise
    if (p !== undefined && p.until > this.now && p.leaderKey !== leaderKey) {
      const handedOver = handoverFrom !== undefined && sameEpoch(handoverFrom, p.epoch)
      const leaderDead = this.dead.has(p.leaderKey) ||
        (evidence !== undefined && memberKey(evidence.dead) === p.leaderKey && evidence.found.address === evidence.dead.address &&
          memberKey(evidence.found) !== p.leaderKey)
      if (!handedOver && !leaderDead) return false
    }
    // Lower epochs are ignored; a new leader needs a strictly higher epoch than any this member supported.
    const c = compareEpochs(epoch, this.highestEpoch)
    if (c < 0) return false
    if (c === 0 && p !== undefined && p.leaderKey !== leaderKey) return false
    return true
  }

  private givePromise (epoch: Epoch, leaderKey: string): void {
    this.promise = { epoch, leaderKey, until: this.now + this.cfg.promiseMs }
    this.raiseHighest(epoch)
  }

  // ---------------------------------------------------------------------------------------------------------
  // Quorums

  /** Members of a configuration that still count, from this member's knowledge at `now`. */
  private baseOf (c: ConfigRef, replacedLeaderKey: string | undefined): MemberInfo[] {
    return c.members.filter(m => !this.discounted(memberKey(m), replacedLeaderKey))
  }

  private discounted (k: string, replacedLeaderKey: string | undefined): boolean {
    return this.discountReason(k, replacedLeaderKey) !== undefined
  }

  /**
   * Why a member no longer counts, if it does not: it left gracefully (`left`), it died while promised to my
   * leadership (`promised-to-me`), or it died and nothing more is known (`died`: the replaced leader, or a death
   * verified FT + margin ago). The last kind says nothing about what the dead process knew: see `quorumOk`.
   */
  private discountReason (k: string, replacedLeaderKey: string | undefined): 'left' | 'promised-to-me' | 'died' | undefined {
    if (this.left.has(k)) return 'left'
    const deadAt = this.dead.get(k)
    if (deadAt === undefined) return undefined
    if (k === replacedLeaderKey) return 'died'
    // Refused connections are evidence, not proof (a partition that resets connections looks the same): such a
    // member keeps counting, except as the leader being replaced, where the lease arithmetic covers it.
    if (this.onlyRefused.has(k)) return undefined
    // A leader may drop a dead member at once if that member was promised to it when it died: its last promise
    // supported this leadership only.
    const h = this.health.get(k)
    if (this.lead !== undefined && h?.lastPromiseAck !== undefined && deadAt - h.lastPromiseAck < this.cfg.failureTimeoutMs) return 'promised-to-me'
    // A dead member's last promise has run out FT + margin after its death was verified.
    if (this.now - deadAt >= this.cfg.promiseMs) return 'died'
    return undefined
  }

  /**
   * Joint quorums over `configs`. A configuration of which more than one member is discounted for having died
   * (`died` above) also needs promises from a majority of `VECTIS_CLUSTER_SIZE`, as when all its members are gone:
   * the dead may have committed a newer configuration without me before dying, and their restarted processes carry
   * it on (persisted); discounting one dead member keeps my quorum meeting every quorum of the same configuration
   * (deaths are final), discounting two does not (docs/cluster-protocol.md, "Configurations and quorums").
   */
  private quorumOk (configs: ConfigRef[], acks: Set<string>, replacedLeaderKey?: string): boolean {
    if (this.cfg.quorum === 'none') return true
    return jointQuorum(configs, acks, {
      clusterSize: this.cfg.clusterSize,
      bootstrap: this.committed === undefined,
      discounted: (k) => this.discounted(k, replacedLeaderKey),
      discountedAsDead: (k) => this.discountReason(k, replacedLeaderKey) === 'died'
    })
  }

  private quorumConfigs (proposed: ViewData): ConfigRef[] {
    const list: ConfigRef[] = []
    const add = (c: ConfigRef | undefined): void => {
      if (c !== undefined && !list.some(x => x.id.counter === c.id.counter && x.id.coordinator === c.id.coordinator)) list.push(c)
    }
    add(this.committed)
    add(this.pending)
    add({ id: proposed.id, members: proposed.members })
    return list
  }

  // ---------------------------------------------------------------------------------------------------------
  // Tick

  private onTick (): void {
    this.expireRounds()
    if (this.handingOver !== undefined && this.now >= this.handingOver.until) this.handingOver = undefined
    if (this.leaving === 'requested' || this.leaving === 'handover') return
    if (this.view === undefined) {
      this.tickViewless()
      return
    }
    if (!this.inViewKey(this.myKey)) {
      this.dropView('not a member of my view')
      return
    }
    this.probeRefusing()
    if (this.isCoordinator()) this.tickCoordinator()
    else this.tickMember()
  }

  /**
   * A member that left my view while its connections were being refused (the killed leader, excluded by the
   * takeover) is still probed until the refusals verify its death: the election after a crash needs that proof
   * from its voters, and they would otherwise stop probing it with the view that no longer holds it.
   */
  private probeRefusing (): void {
    for (const [k, h] of this.health) {
      if (h.refusedSince === undefined || this.dead.has(k) || this.inViewKey(k)) continue
      if (this.now - (h.lastRefused ?? h.refusedSince) > this.cfg.refusedDeathMs) {
        // No refusal for a while (it times out instead, or moved): nothing to prove by probing on.
        this.health.delete(k)
        continue
      }
      this.probe(h)
    }
  }

  /** Direct probe (dial-back): a `hello` to the member's address, one at a time, at most every HB/5. */
  private probe (h: Health): void {
    if (h.probeInFlight === true || (h.lastProbe !== undefined && this.now - h.lastProbe < this.cfg.heartbeatMs / 5)) return
    h.lastProbe = this.now
    h.probeInFlight = true
    this.send(h.member.address, { ...this.envelope(), type: 'hello', summary: this.summary() }, { kind: 'hello', address: h.member.address, expect: h.member })
  }

  private checkLease (): void {
    if (this.lead === undefined) return
    if (this.cfg.quorum === 'none') {
      if (!this.isCoordinator()) this.demote('view-change')
      return
    }
    if (this.now >= this.lead.expiry) this.demote('lease-expired')
  }

  private demote (reason: DemotionReason): void {
    if (this.lead === undefined) return
    const epoch = this.lead.epoch
    const leaseEnd = Math.min(this.now, this.lead.expiry)
    this.lead = undefined
    this.log('info', 'leadership ended', { epoch, reason })
    this.emit({ type: 'leader:demoted', epoch, reason, leaseEnd })
  }

  private becomeLeader (epoch: Epoch, expiry: number): void {
    this.lead = { epoch, expiry, since: this.now }
    this.raiseHighest(epoch)
    this.log('info', 'leadership started', { epoch, leaseMs: expiry - this.now })
    this.emit({ type: 'leader:elected', epoch })
  }

  private expireRounds (): void {
    for (const [no, r] of this.rounds) {
      if (r.resolved || this.now - r.sentAt > this.cfg.requestTimeoutMs * 2 + this.cfg.heartbeatMs) {
        if (!r.resolved) this.failRound(r)
        this.rounds.delete(no)
      }
    }
    for (const [k, t] of this.founderFailed) if (t <= this.now) this.founderFailed.delete(k)
  }

  // --- no view yet: discovery, join, cold start

  private tickViewless (): void {
    this.helloDiscovered(this.cfg.heartbeatMs)
    if (this.proposal !== undefined) {
      if (this.now - this.proposal.sentAt > this.firstContactMs()) this.decideProposal()
      return
    }
    // Bound to a founder's proposal: wait for its install (or for the binding to run out) and follow no one else,
    // so that the founder's view never holds a member that is in another view.
    if (this.holds(this.acceptedFounder)) return
    if (this.forced) {
      // Forced new cluster: after the settle time (the hellos tell the counters in use), this member alone forms a
      // primary view numbered above every counter heard of, so the others accept it and join.
      if (this.now - this.startedAt >= this.cfg.coldStartSettleMs) this.install([this.me], {})
      return
    }
    const recent = this.cfg.failureTimeoutMs
    // 1. Join the best view a live peer reports.
    let best: { view: ViewData, s: ViewSummary } | undefined
    for (const p of this.peers.values()) {
      if (p.summary?.view === undefined || this.now - p.lastHeard > recent) continue
      if (!speaksForItsView(p.member, p.summary)) continue
      if (best === undefined || rankCompare(p.summary, best.s) > 0) best = { view: p.summary.view, s: p.summary }
    }
    if (best !== undefined) {
      const coord = best.view.members[0]
      if (coord !== undefined && this.now - this.lastJoinSent >= this.cfg.heartbeatMs) {
        this.lastJoinSent = this.now
        this.sendJoin(coord, [this.me], true)
      }
      return
    }
    // 2. Cold start: nobody has a view. Defer to the lowest (name, peer id) among the view-less members heard
    // recently; that founder forms one view holding all of them once the settle time has passed.
    const candidates: MemberInfo[] = [this.me]
    for (const p of this.peers.values()) {
      if (p.member === undefined || p.summary === undefined || p.summary.view !== undefined) continue
      if (this.now - p.lastHeard > recent || this.founderFailed.has(memberKey(p.member))) continue
      candidates.push(p.member)
    }
    candidates.sort(byNameThenPeer)
    const founder = candidates[0]!
    if (memberKey(founder) === this.myKey) {
      this.founderSince = undefined
      if (this.now - this.startedAt < this.cfg.coldStartSettleMs) return
      // Not while a coordinator may be admitting me, or another founder I gave way to may propose to me.
      if (this.holds(this.joinedTo) && this.joinedTo.toView) return
      if (this.holds(this.deferTo)) return
      const members = new Map<string, MemberInfo>()
      for (const m of candidates) members.set(memberKey(m), m)
      for (const m of this.joinRequests.values()) members.set(memberKey(m), m)
      const ordered = [...members.values()].filter(m => memberKey(m) !== this.myKey).sort(byNameThenPeer)
      // The first view needs a majority of the expected replicas: two such views would share a member, and a
      // member accepts one proposal at a time, so one view forms even when founders do not hear of each other.
      if (ordered.length + 1 < this.foundingQuorum()) {
        if (this.waitingLogged !== ordered.length + 1) {
          this.waitingLogged = ordered.length + 1
          this.log('info', 'waiting for a majority of the cluster size to found the first view', { members: ordered.length + 1, need: this.foundingQuorum() })
        }
        return
      }
      this.joinRequests.clear()
      if (ordered.length === 0) {
        this.log('info', 'founding the first view', { members: 1 })
        this.install([this.me], {})
        return
      }
      this.propose(ordered)
      return
    }
    const fk = memberKey(founder)
    if (this.founderSince?.key !== fk) this.founderSince = { key: fk, since: this.now }
    if (this.now - this.founderSince.since > this.cfg.founderWaitMs) {
      // The founder did not form a view in time (crashed, cut off): try the next one for a while.
      this.founderFailed.set(fk, this.now + 4 * this.cfg.founderWaitMs)
      this.founderSince = undefined
      return
    }
    if (this.now - this.lastJoinSent >= this.cfg.heartbeatMs) {
      this.lastJoinSent = this.now
      this.sendJoin(founder, [this.me], false)
    }
  }

  /**
   * Cold start: propose the founding view to the candidates instead of installing it. Installing at once would
   * make a view holding members that may already be in another view (an older answer said they had none), and two
   * views of more than one member would coexist. The view is installed only with the candidates that accepted,
   * and not at all when one of them answers that it is in a view (I join that view instead).
   */
  private propose (candidates: MemberInfo[]): void {
    const no = ++this.nextProposalNo
    this.proposal = { no, sentAt: this.now, waiting: new Set(candidates.map(memberKey)), accepted: new Map(), conflict: undefined }
    const view: ViewData = { id: { coordinator: this.me.name, counter: Math.max(this.maxCounter, this.maxApplied) + 1 }, members: [this.me, ...candidates], epoch: this.highestEpoch }
    const msg: InstallMessage = { ...this.envelope(), type: 'install', view, claim: false, configCounter: this.configCounter(), propose: true }
    this.log('info', 'proposing the first view', { members: view.members.map(m => m.name) })
    for (const m of candidates) this.send(m.address, msg, { kind: 'propose', proposal: no, target: m }, this.firstContactMs())
  }

  private onProposeResult (p: Extract<Purpose, { kind: 'propose' }>, r: Extract<MembershipInput, { type: 'send-result' }>): void {
    const pr = this.proposal
    if (pr?.no !== p.proposal) return
    const k = memberKey(p.target)
    pr.waiting.delete(k)
    if (r.ok) {
      const rep = r.reply
      if (memberKey(rep.from) === k && rep.ok) pr.accepted.set(k, p.target)
      else if (rep.summary.view?.members[0] !== undefined) pr.conflict = { who: rep.summary.view.members[0], hasView: true }
      else if (rep.reason === 'promised' && rep.redirect !== undefined) {
        // Bound to a coordinator it asked to join (redirect has a view) or to another founder.
        const toView = this.peers.get(rep.redirect.address)?.summary?.view !== undefined || rep.joinedView === true
        if (pr.conflict?.hasView !== true) pr.conflict = { who: rep.redirect, hasView: toView }
      }
    }
    if (pr.waiting.size === 0) this.decideProposal()
  }

  private decideProposal (): void {
    const pr = this.proposal!
    this.proposal = undefined
    if (this.view !== undefined) return
    if (pr.conflict !== undefined) {
      // A candidate is in a view already, or bound to another founder's proposal: a view of mine would be a rival.
      // Join that view, or that founder when it is lower than me (it admits joiners while it proposes), and found
      // nothing for a while. A higher founder gives way in turn when it meets a member bound to me: I propose again
      // after a heartbeat, when its acceptors are free.
      const c = pr.conflict
      this.log('info', 'first view not founded: another one is forming', { other: c.who.name, hasView: c.hasView, accepted: pr.accepted.size })
      this.releaseProposal(pr.accepted.values())
      if (memberKey(c.who) !== this.myKey && (c.hasView || byNameThenPeer(c.who, this.me) < 0)) {
        this.deferTo = { founder: c.who, until: this.now + this.bindingMs() }
        this.lastJoinSent = this.now
        this.sendJoin(c.who, [this.me], c.hasView)
      } else {
        this.deferTo = { founder: c.who, until: this.now + this.cfg.heartbeatMs }
      }
      return
    }
    if (pr.accepted.size === 0) {
      this.log('info', 'first view not founded: no candidate accepted', { unanswered: pr.waiting.size })
      return
    }
    if (pr.accepted.size + 1 < this.foundingQuorum()) {
      this.log('info', 'first view not founded: too few accepted', { accepted: pr.accepted.size, unanswered: pr.waiting.size })
      this.releaseProposal(pr.accepted.values())
      return
    }
    // Only who accepted: members that asked to join meanwhile are admitted right after (they join my view).
    const members = [...pr.accepted.values()].sort(byNameThenPeer)
    this.log('info', 'founding the first view', { members: members.length + 1 })
    this.install([this.me, ...members], {})
  }

  /**
   * Members (founder included) a first view needs: a majority of `VECTIS_CLUSTER_SIZE` with quorum `majority`
   * (the size a primary view needs anyway), 1 with quorum `none` (every view leads there; a split is the
   * documented risk).
   */
  private foundingQuorum (): number {
    return this.cfg.quorum === 'majority' ? majorityOf(this.cfg.clusterSize) : 1
  }

  /**
   * Deadline of a view-less member's requests (hellos, proposals): 2 × request timeout, as a first contact at cold
   * start (dial, handshake) on a machine busy starting many members is slow. Well inside the binding, so a
   * founder's install reaches who accepted while it is still bound.
   */
  private firstContactMs (): number { return 2 * this.cfg.requestTimeoutMs }

  /** A time-bound state (binding, deferral, redirection) still in force. */
  private holds<T extends { until: number }> (b: T | undefined): b is T { return b !== undefined && b.until > this.now }

  /** How long accepting a proposal (or asking a coordinator to join) binds a view-less member. */
  private bindingMs (): number { return 2 * this.cfg.requestTimeoutMs + 2 * this.cfg.heartbeatMs }

  /** My founding proposal is dropped: who accepted it is free again at once (else when its binding runs out). */
  private releaseProposal (accepted: Iterable<MemberInfo>): void {
    this.joinRequests.clear()
    for (const m of accepted) {
      this.send(m.address, { ...this.envelope(), type: 'release', released: this.highestEpoch, founding: true }, { kind: 'release', target: m })
    }
  }

  private helloDiscovered (every: number, skipMembers = false): void {
    for (const a of this.discovered) {
      if (skipMembers && this.view?.members.some(m => m.address === a) === true) continue
      const p = this.peers.get(a) ?? { lastHeard: -Infinity, lastHello: -Infinity }
      if (this.now - p.lastHello < every) continue
      // View-less: a peer that spoke to me lately (its hello carried its summary) needs no hello back; on a machine
      // starting many members at once this halves the discovery traffic. First contacts (dial, handshake) get
      // longer than a request on an open connection.
      if (this.view === undefined && this.now - p.lastHeard < every) continue
      p.lastHello = this.now
      this.peers.set(a, p)
      this.send(a, { ...this.envelope(), type: 'hello', summary: this.summary() }, { kind: 'hello', address: a }, this.view === undefined ? this.firstContactMs() : this.cfg.requestTimeoutMs)
    }
  }

  /**
   * `toView`: `to` is (said to be) the coordinator of a view, not a view-less founder. A view-less member that asks
   * to join is bound to that view (or founder) for a while: it accepts no other founder's proposal meanwhile, and
   * founds no view of its own while a coordinator may be admitting it, or it could end up in two views.
   */
  private sendJoin (to: MemberInfo, joiners: MemberInfo[], toView: boolean): void {
    if (this.view === undefined) this.joinedTo = { coord: to, toView, until: this.now + this.bindingMs() }
    this.send(to.address, { ...this.envelope(), type: 'join', joiners, summary: this.summary() }, { kind: 'join', to })
  }

  // --- coordinator

  private tickCoordinator (): void {
    const view = this.view!
    // Merge: look for views outside mine, slowly.
    if (this.now >= this.nextMergeScanAt) {
      this.nextMergeScanAt = this.now + 2 * this.cfg.heartbeatMs * (0.8 + 0.4 * this.random())
      this.helloDiscovered(2 * this.cfg.heartbeatMs, true)
      if (this.tryMerge()) return
    }
    if (this.handingOver !== undefined) return
    if (this.cfg.quorum === 'none' && this.lead === undefined) {
      // Quorum `none`: the coordinator leads (again, e.g. after a hand-over that did not happen).
      const e = this.newEpoch()
      this.raiseHighest(e)
      this.becomeLeader(e, Number.POSITIVE_INFINITY)
    }
    // Failure detection of the members.
    for (const m of view.members) {
      if (memberKey(m) === this.myKey) continue
      const h = this.healthOf(m)
      if (this.now - h.lastHeard > this.cfg.failureTimeoutMs) this.suspect(m, 'silence')
      if (h.suspectedSince !== undefined) this.verify(m, h)
    }
    if (this.lead === undefined) this.probeConfigMembers()
    const installing = [...this.rounds.values()].some(r => r.kind === 'install' && !r.resolved)
    if (!installing) {
      const next = this.nextMembers()
      if (next !== undefined) {
        this.install(next, {})
        return
      }
      if (this.reelect && this.isLeader(this.now)) {
        this.reelect = false
        this.install(view.members, { reelect: true })
        return
      }
      this.reelect = false
      if (this.cfg.quorum === 'majority' && this.lead === undefined && this.now >= this.electionBackoffUntil &&
        this.potentialQuorum(view.members, undefined)) {
        // Coordinator without a lease: run an election (re-install the same members under a new epoch).
        this.install(view.members, {})
        return
      }
    }
    if (this.now >= this.nextHeartbeatAt) this.heartbeatRound()
  }

  /**
   * A coordinator without a lease probes the members of the configurations it must count that are outside its view:
   * a dead one is then verified (refused, or another incarnation answers) and stops counting in time.
   */
  private probeConfigMembers (): void {
    for (const c of [this.committed, this.pending]) {
      for (const m of c?.members ?? []) {
        const k = memberKey(m)
        if (k === this.myKey || this.inViewKey(k) || (this.dead.has(k) && !this.onlyRefused.has(k))) continue
        const h = this.healthOf(m)
        if (h.lastProbe !== undefined && this.now - h.lastProbe < this.cfg.heartbeatMs / 2) continue
        h.lastProbe = this.now
        this.send(m.address, { ...this.envelope(), type: 'hello', summary: this.summary() }, { kind: 'hello', address: m.address, expect: m })
      }
    }
  }

  /** The members of the next view if it must change (joins, leaves, exclusions), else undefined. */
  private nextMembers (): MemberInfo[] | undefined {
    const view = this.view!
    let changed = this.forceReinstall
    this.forceReinstall = false
    const keep: MemberInfo[] = []
    for (const m of view.members) {
      const k = memberKey(m)
      if (k === this.myKey) { keep.push(m); continue }
      const h = this.health.get(k)
      if (this.left.has(k) || this.dead.has(k) || h?.departed === true || (h !== undefined && this.verifiedUnreachable(h))) {
        changed = true
        continue
      }
      keep.push(m)
    }
    for (const j of this.joinRequests.values()) {
      const k = memberKey(j)
      if (keep.some(m => memberKey(m) === k) || this.dead.has(k) || this.left.has(k)) continue
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

  private potentialQuorum (members: MemberInfo[], replacedLeaderKey: string | undefined): boolean {
    if (this.cfg.quorum === 'none') return false
    const alive = new Set<string>()
    for (const m of members) {
      const k = memberKey(m)
      if (k === this.myKey || this.health.get(k)?.suspectedSince === undefined) alive.add(k)
    }
    const proposed: ViewData = { id: { coordinator: this.me.name, counter: this.maxCounter + 1 }, members, epoch: this.highestEpoch }
    return this.quorumOk(this.quorumConfigs(proposed), alive, replacedLeaderKey)
  }

  private nextViewCounter (): number {
    this.maxCounter = Math.max(this.maxCounter, this.maxApplied, this.view?.id.counter ?? 0) + 1
    this.dirty = true
    return this.maxCounter
  }

  /** Installs a new view with me as coordinator; claims (asks for promises) when it can lead. */
  private install (members: MemberInfo[], opts: { handoverFrom?: Epoch, replacedLeaderKey?: string, reelect?: boolean }): void {
    const counter = this.nextViewCounter()
    let claim = false
    let election = false
    let epoch = this.highestEpoch
    if (this.cfg.quorum === 'majority' && this.handingOver === undefined) {
      const view0: ViewData = { id: { coordinator: this.me.name, counter }, members, epoch }
      if (this.lead !== undefined && this.isLeader(this.now) && opts.reelect !== true) {
        claim = true
        epoch = this.lead.epoch
      } else {
        const e = this.newEpoch()
        if (this.canPromise(e, this.myKey, opts.handoverFrom, this.replacedBy) &&
          this.quorumOk(this.quorumConfigs(view0), new Set(members.map(memberKey)), opts.replacedLeaderKey)) {
          claim = true
          election = true
          epoch = e
        }
      }
    }
    if (this.forced) {
      // Forced new cluster: number the configuration above anything seen so the others accept it.
      this.forced = false
      this.committed = { id: { coordinator: this.me.name, counter }, members: [this.me] }
      this.dirty = true
    }
    const view: ViewData = { id: { coordinator: this.me.name, counter }, members: members.map(m => ({ ...m })), epoch }
    const configs = claim ? this.quorumConfigs(view) : []
    const configCounter = this.configCounter()
    this.applyView(view)
    if (claim) {
      this.pending = { id: view.id, members: view.members }
      if (election) {
        // Not yet my highest epoch: a claim that fails must not make me refuse the leader others elected
        // meanwhile at a lower number. Seen, so my next claim numbers above it.
        this.noteEpoch(epoch)
        this.promise = { epoch, leaderKey: this.myKey, until: this.now + this.cfg.promiseMs }
      } else {
        this.givePromise(epoch, this.myKey)
      }
    }
    const round = this.newRound('install', view, epoch, claim, election, configs)
    if (opts.handoverFrom !== undefined) round.handoverFrom = opts.handoverFrom
    const msg: InstallMessage = {
      ...this.envelope(),
      type: 'install',
      view,
      claim,
      configCounter
    }
    if (opts.handoverFrom !== undefined) msg.handoverFrom = opts.handoverFrom
    if (this.replacedBy !== undefined) msg.replacedBy = this.replacedBy
    for (const m of view.members) {
      if (memberKey(m) === this.myKey) continue
      this.send(m.address, msg, { kind: 'install', round: round.no, target: m })
    }
    this.log('info', 'installing view', { viewId: view.id, members: view.members.map(m => m.name), claim, epoch })
    this.nextHeartbeatAt = this.now + this.cfg.heartbeatMs * (0.9 + 0.2 * this.random())
    this.evaluateRound(round)
  }

  private newRound (kind: 'heartbeat' | 'install', view: ViewData, epoch: Epoch, claim: boolean, election: boolean, configs: ConfigRef[]): Round {
    const r: Round = {
      no: ++this.nextRoundNo,
      kind,
      sentAt: this.now,
      epoch,
      claim,
      election,
      view,
      configs,
      targets: new Map(view.members.filter(m => memberKey(m) !== this.myKey).map(m => [memberKey(m), m])),
      acks: new Set(claim ? [this.myKey] : []),
      answered: new Set(),
      hardFail: new Set(),
      promised: new Set(),
      resolved: false
    }
    this.rounds.set(r.no, r)
    return r
  }

  private heartbeatRound (): void {
    const view = this.view!
    this.nextHeartbeatAt = this.now + this.cfg.heartbeatMs * (0.9 + 0.2 * this.random())
    const leading = this.cfg.quorum === 'majority' && this.isLeader(this.now)
    const epoch = leading ? this.lead!.epoch : this.highestEpoch
    const configs: ConfigRef[] = []
    if (leading) {
      if (this.committed !== undefined) configs.push(this.committed)
      if (this.pending !== undefined && (this.committed === undefined || this.pending.id.counter !== this.committed.id.counter)) configs.push(this.pending)
      this.givePromise(epoch, this.myKey)
    }
    const round = this.newRound('heartbeat', view, epoch, leading, false, configs)
    const msg: HeartbeatMessage = { ...this.envelope(), type: 'heartbeat', viewId: view.id, round: round.no, claim: leading }
    if (leading && this.committed !== undefined) msg.committed = this.committed.id
    for (const m of round.targets.values()) this.send(m.address, msg, { kind: 'heartbeat', round: round.no, target: m })
    this.evaluateRound(round)
  }

  private evaluateRound (r: Round): void {
    if (r.resolved) return
    if (!r.claim) {
      if (r.answered.size + r.hardFail.size >= r.targets.size) r.resolved = true
      return
    }
    const replaced = r.election && this.replacedBy !== undefined ? memberKey(this.replacedBy.dead) : undefined
    if (this.quorumOk(r.configs, r.acks, replaced)) {
      r.resolved = true
      this.roundSucceeded(r)
      return
    }
    // Could the round still succeed with the members that have not answered?
    const possible = new Set(r.acks)
    for (const k of r.targets.keys()) if (!r.answered.has(k) && !r.hardFail.has(k)) possible.add(k)
    if (!this.quorumOk(r.configs, possible, replaced)) {
      r.resolved = true
      this.failRound(r, true)
    }
  }

  private roundSucceeded (r: Round): void {
    // Once handing over (or leaving), a late acknowledgement must not make or keep me leader: the successor may
    // already lead on the promises I passed on.
    if (this.handingOver !== undefined || this.leaving !== 'no') return
    const expiry = r.sentAt + this.cfg.leaseMs
    if (expiry <= this.now) return // acknowledged too late: the lease it would give has already run out
    if (r.election && this.lead !== undefined && compareEpochs(r.epoch, this.lead.epoch) > 0 &&
      this.view !== undefined && this.view.id.counter === r.view.id.counter && this.isCoordinator()) {
      // Re-election under a higher epoch (a member had promised to a higher failed claim and refused mine).
      this.demote('superseded')
    }
    if (r.election) {
      const replaced = this.replacedBy !== undefined ? memberKey(this.replacedBy.dead) : undefined
      this.log('debug', 'election won', {
        configs: r.configs.map(c => `${c.id.coordinator}#${c.id.counter}[${c.members.map(m => `${m.name}/${m.incarnation}${this.discounted(memberKey(m), replaced) ? '(gone)' : ''}`).join(',')}]`),
        acks: [...r.acks],
        replaced,
        left: [...this.left],
        onlyRefused: [...this.onlyRefused]
      })
      if (this.lead === undefined && this.view !== undefined && this.view.id.counter === r.view.id.counter && this.isCoordinator()) {
        this.becomeLeader(r.epoch, expiry)
      }
    } else if (this.lead !== undefined && sameEpoch(this.lead.epoch, r.epoch)) {
      if (expiry > this.lead.expiry) this.lead.expiry = expiry
    }
    // Commit: the round's quorums included the current view (its install, or a later heartbeat while it was
    // pending, e.g. when the install's own acknowledgements were lost).
    const coversView = r.configs.some(c => this.view !== undefined && c.id.counter === this.view.id.counter && c.id.coordinator === this.view.id.coordinator)
    if (coversView && !this.isPrimaryView() && this.lead !== undefined && sameEpoch(this.lead.epoch, r.epoch) &&
      this.view !== undefined && this.view.id.counter === r.view.id.counter) {
      this.committed = { id: r.view.id, members: r.view.members }
      this.pending = undefined
      this.dirty = true
      this.emit({ type: 'view:installed', view: this.view, primary: true })
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
      if (this.promise !== undefined && sameEpoch(this.promise.epoch, r.epoch) && this.lead === undefined) this.promise = undefined
      if (this.pending !== undefined && this.pending.id.counter === r.view.id.counter) this.pending = undefined
      // Refused only by members still promised to the old leader: they are proving its death as I did (a crash
      // seen by all at once), so try again soon. Any other refusal may be a rival candidate: back off.
      const onlyPromised = r.hardFail.size > 0 && [...r.hardFail].every(k => r.promised.has(k))
      this.electionBackoffUntil = this.now + (onlyPromised ? this.cfg.heartbeatMs / 5 : this.cfg.heartbeatMs) * (1 + this.random())
      return
    }
    // A leader that cannot reach a majority at all (refusals, closed connections, refusing members) steps down
    // at once rather than waiting for its lease to run out.
    if (definite && this.lead !== undefined && sameEpoch(this.lead.epoch, r.epoch) && r.no === this.latestClaimRoundNo()) {
      this.demote('lost-quorum')
      this.electionBackoffUntil = this.now + this.cfg.heartbeatMs * (1 + this.random())
    }
  }

  private latestClaimRoundNo (): number {
    let n = 0
    for (const r of this.rounds.values()) if (r.claim && r.no > n) n = r.no
    return n
  }

  private tryMerge (): boolean {
    const mine = this.summary()
    let best: ViewSummary | undefined
    for (const p of this.peers.values()) {
      const s = p.summary
      if (s?.view === undefined || this.now - p.lastHeard > this.cfg.failureTimeoutMs) continue
      if (!speaksForItsView(p.member, p.summary)) continue
      if (s.view.id.counter === this.view!.id.counter && s.view.id.coordinator === this.view!.id.coordinator) continue
      if (s.view.members[0] === undefined || memberKey(s.view.members[0]) === this.myKey) continue
      if (rankCompare(s, mine) <= 0) continue
      if (best === undefined || rankCompare(s, best) > 0) best = s
    }
    if (best?.view === undefined) return false
    // A leader (majority mode) never merges away: the other side comes to it. With quorum `none` every coordinator
    // leads, and the better-ranked view absorbs the other (its leader steps down).
    if (this.cfg.quorum === 'majority' && this.isLeader(this.now)) return false
    const coord = best.view.members[0]!
    this.log('info', 'merging my view into a better one', { into: best.view.id, mine: this.view!.id })
    // Until that view takes mine in, joiners go there: admitting them here would grow a view that is going away
    // while the other one exists.
    this.mergingInto = { coord, until: this.now + 4 * this.cfg.heartbeatMs }
    this.sendJoin(coord, this.view!.members, true)
    return true
  }

  // --- member (not coordinator)

  private tickMember (): void {
    const view = this.view!
    const coord = view.members[0]!
    const hc = this.healthOf(coord)
    if (this.now - hc.lastHeard > this.cfg.failureTimeoutMs) this.suspect(coord, 'silence')
    if (hc.suspectedSince === undefined) return
    // The coordinator is suspected: verify it, and every member older than me, before taking over.
    const myIndex = view.members.findIndex(m => memberKey(m) === this.myKey)
    let allOlderFailed = true
    for (let i = 0; i < myIndex; i++) {
      const m = view.members[i]!
      const h = this.healthOf(m)
      if (i > 0 && h.suspectedSince === undefined) this.suspect(m, 'coordinator failed')
      this.verify(m, h)
      if (!this.dead.has(memberKey(m)) && !this.verifiedUnreachable(h) && !(i > 0 && this.followsAnotherView(m))) allOlderFailed = false
    }
    if (!allOlderFailed || this.handingOver !== undefined) return
    if ([...this.rounds.values()].some(r => r.kind === 'install' && !r.resolved)) return
    if (this.now < this.electionBackoffUntil) return
    // Take over as coordinator: the view without the failed older members.
    const older = new Set(view.members.slice(0, myIndex).map(memberKey))
    const members = view.members.filter(m => !older.has(memberKey(m)))
    const replaced = this.dead.has(memberKey(coord)) ? memberKey(coord) : undefined
    this.log('info', 'coordinator failed: taking over', { coordinator: coord.name })
    this.install(members, replaced !== undefined ? { replacedLeaderKey: replaced } : {})
    this.electionBackoffUntil = this.now + this.cfg.heartbeatMs
  }

  /** `m` said lately that it is in another view than mine, without me: it will not take over mine. */
  private followsAnotherView (m: MemberInfo): boolean {
    const p = this.peers.get(m.address)
    const v = p?.summary?.view
    if (p?.member === undefined || memberKey(p.member) !== memberKey(m) || v === undefined || this.view === undefined) return false
    if (this.now - p.lastHeard > this.cfg.failureTimeoutMs) return false
    // Same coordinator, another counter: the same line of views, one of us a view ahead (a join was being
    // installed when the coordinator died). It is older than me in it and takes over: not "another view".
    if (v.id.coordinator === this.view.id.coordinator) return false
    // A newer view that holds me (it took over and its install is on its way to me) is mine to come, not another
    // one; an older one it is stuck in is.
    return !(v.id.counter > this.view.id.counter && v.members.some(x => memberKey(x) === this.myKey))
  }

  /** Verification before exclusion: a direct probe (dial-back) and indirect probes through other members. */
  private verify (m: MemberInfo, h: Health): void {
    if (this.dead.has(memberKey(m)) && !this.onlyRefused.has(memberKey(m))) return
    this.probe(h)
    if (h.lastPing === undefined || this.now - h.lastPing >= this.cfg.heartbeatMs) {
      h.lastPing = this.now
      const helpers = this.view!.members.filter(x => memberKey(x) !== this.myKey && memberKey(x) !== memberKey(m) &&
        this.health.get(memberKey(x))?.suspectedSince === undefined)
      // Two helpers, picked with the (seeded) random source.
      for (let i = 0; i < 2 && helpers.length > 0; i++) {
        const idx = Math.floor(this.random() * helpers.length)
        const helper = helpers.splice(idx, 1)[0]!
        const withinMs = Math.max(0, Math.min(2 * this.cfg.heartbeatMs, this.now - (h.suspectedSince ?? this.now)))
        const msg: PingReqMessage = { ...this.envelope(), type: 'ping-req', target: m.address, withinMs }
        this.send(helper.address, msg, { kind: 'ping-req', helper, suspect: m })
      }
    }
  }

  private verifiedUnreachable (h: Health): boolean {
    if (this.dead.has(memberKey(h.member))) return true
    if (h.suspectedSince === undefined || h.directFailedAt === undefined) return false
    if (this.now - h.suspectedSince < this.cfg.heartbeatMs) return false
    if (h.indirectFoundAt !== undefined && this.now - h.indirectFoundAt < this.cfg.failureTimeoutMs) return false
    const helpers = this.view?.members.filter(x => memberKey(x) !== this.myKey && memberKey(x) !== memberKey(h.member) &&
      this.health.get(memberKey(x))?.suspectedSince === undefined).length ?? 0
    if (helpers === 0) return true
    return h.indirectUnreachableAt !== undefined && h.indirectUnreachableAt - h.suspectedSince >= this.cfg.heartbeatMs / 2
  }

  private dropView (why: string): void {
    this.log('info', 'leaving my view', { why, viewId: this.view?.id })
    if (this.lead !== undefined) this.demote('superseded')
    this.view = undefined
  }

  // ---------------------------------------------------------------------------------------------------------
  // Applying views

  private applyView (view: ViewData): void {
    const old = this.view
    this.view = view
    this.noteCounter(view.id.counter)
    if (view.id.counter > this.maxApplied) {
      this.maxApplied = view.id.counter
      this.dirty = true
    }
    const keys = new Set(view.members.map(memberKey))
    for (const m of old?.members ?? []) {
      const k = memberKey(m)
      if (keys.has(k)) continue
      this.emit({ type: 'member:left', member: m, reason: this.left.has(k) ? 'left' : this.dead.has(k) ? 'dead' : 'excluded' })
      const h = this.health.get(k)
      this.health.delete(k)
      // Excluded while its connections are refused: the streak goes on (probeRefusing) until it proves the death.
      if (h?.refusedSince !== undefined && !this.dead.has(k)) {
        this.health.set(k, { member: h.member, lastHeard: h.lastHeard, refusedSince: h.refusedSince, ...(h.lastRefused !== undefined ? { lastRefused: h.lastRefused } : {}) })
      }
    }
    for (const m of view.members) {
      const h = this.healthOf(m)
      h.departed = false
      if (old === undefined || !old.members.some(x => memberKey(x) === memberKey(m))) this.clearSuspicion(h)
    }
    // A new view restarts the clocks of the coordinator's failure detector.
    const c = view.members[0]!
    if (memberKey(c) !== this.myKey) this.clearSuspicion(this.healthOf(c))
    this.founderSince = undefined
    this.acceptedFounder = undefined
    this.joinedTo = undefined
    this.deferTo = undefined
    this.waitingLogged = 0
    this.proposal = undefined
    if (memberKey(c) !== this.myKey) {
      this.mergingInto = undefined
      // Joins I accepted while view-less (as a founder) are stale: who still wants in asks my coordinator.
      this.joinRequests.clear()
    }
    this.emit({ type: 'view:installed', view, primary: this.isPrimaryView() })
    if (this.cfg.quorum === 'none') {
      if (this.isCoordinator() && this.lead === undefined) {
        const e = this.newEpoch()
        this.raiseHighest(e)
        this.becomeLeader(e, Number.POSITIVE_INFINITY)
      } else if (!this.isCoordinator() && this.lead !== undefined) {
        this.demote('view-change')
      }
    } else if (this.lead !== undefined && !this.isCoordinator()) {
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
    this.noteEpoch(msg.epoch)
    switch (msg.type) {
      case 'hello': this.onHello(msg); break
      case 'join': this.onJoin(msg); break
      case 'install': this.onInstall(msg); break
      case 'heartbeat': this.onHeartbeat(msg); break
      case 'release': this.onRelease(msg); break
      case 'leave': this.onLeaveMsg(msg); break
      case 'handover': this.onHandover(msg); break
      case 'ping-req': this.onPingReq(msg); break
    }
  }

  private onHello (msg: HelloMessage): void {
    this.learnSummary(msg.from, msg.summary)
    this.reply(msg, true)
  }

  private onJoin (msg: JoinMessage): void {
    this.learnSummary(msg.from, msg.summary)
    if (this.view === undefined) {
      // Cold start: a view-less member joins the founder it deferred to; accept if I would found, else redirect.
      // While I propose the first view, I admit every joiner right after installing it.
      const lower = msg.joiners.some(j => byNameThenPeer(j, this.me) < 0)
      if (!lower || this.proposal !== undefined) {
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
    if (this.leaving !== 'no' || this.handingOver !== undefined) {
      this.reply(msg, false, 'leaving')
      return
    }
    if (this.holds(this.mergingInto)) {
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
      this.dead.delete(k)
      this.left.delete(k)
      this.joinRequests.set(k, j)
    }
    this.reply(msg, true)
  }

  private onInstall (msg: InstallMessage): void {
    const v = msg.view
    const fromKey = memberKey(msg.from)
    if (msg.propose === true) { this.onProposal(msg); return }
    if (this.view === undefined && this.holds(this.acceptedFounder) &&
      memberKey(this.acceptedFounder.founder) !== fromKey) {
      // Bound to another founder's proposal: that founder may install a view holding me.
      this.reply(msg, false, 'promised', { redirect: this.acceptedFounder.founder })
      return
    }
    this.noteCounter(v.id.counter)
    if (v.id.counter <= Math.max(this.view?.id.counter ?? 0, this.maxApplied)) {
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
          this.reply(msg, false, compareEpochs(v.epoch, this.highestEpoch) < 0 ? 'stale-epoch' : 'promised')
          return
        }
        if (msg.configCounter < this.configCounter() && !(this.pending !== undefined && this.pending.id.counter === v.id.counter)) {
          this.reply(msg, false, 'older-config')
          return
        }
      } else if (this.holds(this.promise) && this.promise.leaderKey !== fromKey &&
        !this.dead.has(this.promise.leaderKey)) {
        // Promised to a live leader: do not follow a coordinator that cannot lead.
        this.reply(msg, false, 'promised')
        return
      }
    }
    this.applyView(v)
    this.healthOf(msg.from).lastHeard = this.now
    if (msg.claim && this.cfg.quorum === 'majority') {
      this.givePromise(v.epoch, fromKey)
      this.pending = { id: v.id, members: v.members }
    }
    this.reply(msg, true, undefined, { promise: msg.claim && this.cfg.quorum === 'majority' })
  }

  /**
   * A founder's proposal (cold start). Accepted only by a view-less member that is not bound to another founder;
   * a member proposing itself gives way only to a lower founder. A member in a view refuses: its answer (the reply
   * carries its view summary) tells the founder that view, which the founder then joins.
   */
  private onProposal (msg: InstallMessage): void {
    const fromKey = memberKey(msg.from)
    if (this.view !== undefined || this.leaving !== 'no' || this.forced) {
      this.reply(msg, false, 'stale-view')
      return
    }
    if (!msg.view.members.some(m => memberKey(m) === this.myKey) || msg.view.members[0] === undefined ||
      memberKey(msg.view.members[0]) !== fromKey) {
      this.reply(msg, false, 'invalid')
      return
    }
    if (this.holds(this.acceptedFounder) && memberKey(this.acceptedFounder.founder) !== fromKey) {
      // The proposer learns which founder I follow and joins it instead of founding a rival view.
      this.reply(msg, false, 'promised', { redirect: this.acceptedFounder.founder })
      return
    }
    if (this.holds(this.joinedTo) && this.joinedTo.toView && memberKey(this.joinedTo.coord) !== fromKey) {
      // I asked a coordinator to join its view: the proposer should join it too.
      this.reply(msg, false, 'promised', { redirect: this.joinedTo.coord, joinedView: true })
      return
    }
    if (this.proposal !== undefined) {
      if (byNameThenPeer(msg.from, this.me) >= 0) {
        this.reply(msg, false, 'promised', { redirect: this.me })
        return
      }
      // A lower founder proposes to me while I propose: give way (my proposal is dropped, who accepted it is
      // released and accepts the lower founder's next proposal).
      this.log('info', 'first view proposal dropped for a lower founder', { founder: msg.from.name })
      this.releaseProposal(this.proposal.accepted.values())
      this.proposal = undefined
    }
    this.acceptedFounder = { founder: msg.from, until: this.now + this.bindingMs() }
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
    this.healthOf(msg.from).lastHeard = this.now
    let promised = false
    if (msg.claim && this.cfg.quorum === 'majority') {
      if (!this.canPromise(msg.epoch, fromKey)) {
        this.reply(msg, false, compareEpochs(msg.epoch, this.highestEpoch) < 0 ? 'stale-epoch' : 'promised')
        return
      }
      this.givePromise(msg.epoch, fromKey)
      promised = true
      if (msg.committed !== undefined && msg.committed.counter === view.id.counter && msg.committed.coordinator === view.id.coordinator &&
        !this.isPrimaryView()) {
        this.committed = { id: view.id, members: view.members }
        this.pending = undefined
        this.dirty = true
        this.emit({ type: 'view:installed', view, primary: true })
      }
    }
    this.reply(msg, true, undefined, { promise: promised })
  }

  private onRelease (msg: ReleaseMessage): void {
    if (msg.founding === true) {
      if (this.acceptedFounder !== undefined && memberKey(this.acceptedFounder.founder) === memberKey(msg.from)) this.acceptedFounder = undefined
      this.reply(msg, true)
      return
    }
    if (this.promise !== undefined && sameEpoch(this.promise.epoch, msg.released) && this.promise.leaderKey === memberKey(msg.from)) {
      this.promise = undefined
      if (this.pending !== undefined && this.pending.id.coordinator === msg.from.name) this.pending = undefined
    }
    this.reply(msg, true)
  }

  private onLeaveMsg (msg: ClusterRequest): void {
    const k = memberKey(msg.from)
    // A member that left never acts again: a certain death. It stops counting at once for the leader it was
    // promised to (it acknowledged my rounds), otherwise once its last promise has run out.
    this.markDead(msg.from, 'left')
    if (this.view !== undefined && this.isCoordinator() && this.inViewKey(k)) {
      if (this.lead !== undefined) this.left.add(k)
      this.reply(msg, true)
      return
    }
    this.reply(msg, false, 'not-coordinator', this.coordinator() !== undefined ? { redirect: this.coordinator()! } : {})
  }

  private onHandover (msg: HandoverMessage): void {
    const view = this.view
    if (view === undefined || memberKey(view.members[0]!) !== memberKey(msg.from) || !this.inViewKey(this.myKey)) {
      this.reply(msg, false, 'not-member')
      return
    }
    this.reply(msg, true)
    const fromKey = memberKey(msg.from)
    if (msg.leaving) this.left.add(fromKey)
    // The old leader consented: start at once (the promises it holds move to me through `handoverFrom`).
    const rest = view.members.filter(m => memberKey(m) !== this.myKey && memberKey(m) !== fromKey)
    const members = msg.leaving ? [this.me, ...rest] : [this.me, ...rest, msg.from]
    this.install(members, { handoverFrom: msg.handedOver })
  }

  private onPingReq (msg: PingReqMessage): void {
    const p = this.peers.get(msg.target)
    // Heard from it since the asker began to suspect it (not before: a process killed a moment ago spoke to all).
    const window = Math.min(2 * this.cfg.heartbeatMs, msg.withinMs ?? 2 * this.cfg.heartbeatMs)
    const fresh = p?.member !== undefined && this.now - p.lastHeard < window
    if (fresh) {
      this.reply(msg, true, undefined, { found: p.member! })
      return
    }
    // Not heard lately: probe it now, so the next request gets a fresh answer.
    const state = p ?? { lastHeard: -Infinity, lastHello: -Infinity }
    if (this.now - state.lastHello >= this.cfg.heartbeatMs / 2) {
      state.lastHello = this.now
      this.peers.set(msg.target, state)
      this.send(msg.target, { ...this.envelope(), type: 'hello', summary: this.summary() }, { kind: 'hello', address: msg.target })
    }
    this.reply(msg, false, 'unreachable')
  }

  // ---------------------------------------------------------------------------------------------------------
  // Send results

  private onSendResult (r: Extract<MembershipInput, { type: 'send-result' }>): void {
    const purpose = this.inflight.get(r.id)
    if (purpose === undefined) return
    this.inflight.delete(r.id)
    if (r.ok) {
      const rep = r.reply
      if (rep.cluster !== this.cfg.clusterName) return
      this.heard(rep.from)
      this.noteEpoch(rep.epoch)
      this.learnSummary(rep.from, rep.summary)
    }
    switch (purpose.kind) {
      case 'hello': this.onHelloResult(purpose, r); break
      case 'join': this.onJoinResult(purpose, r); break
      case 'propose': this.onProposeResult(purpose, r); break
      case 'install':
      case 'heartbeat': this.onRoundResult(purpose, r); break
      case 'release': break
      case 'leave':
        if (!r.ok || !r.reply.ok) {
          // The coordinator did not take it: tell every other member (best effort) so they stop counting on me.
          for (const m of this.view?.members ?? []) {
            if (memberKey(m) === this.myKey || m.address === this.coordinator()?.address) continue
            this.send(m.address, { ...this.envelope(), type: 'leave' }, { kind: 'release', target: m })
          }
        }
        this.finishLeave()
        break
      case 'handover':
        if (purpose.leaving) {
          if (!r.ok || !r.reply.ok) {
            for (const m of this.view?.members ?? []) {
              if (memberKey(m) === this.myKey) continue
              this.send(m.address, { ...this.envelope(), type: 'leave' }, { kind: 'release', target: m })
            }
          }
          this.finishLeave()
        }
        break
      case 'ping-req': this.onPingResult(purpose, r); break
    }
  }

  private targetAt (address: string): MemberInfo | undefined {
    return this.knownMembers().find(m => m.address === address)
  }

  private onHelloResult (p: Extract<Purpose, { kind: 'hello' }>, r: Extract<MembershipInput, { type: 'send-result' }>): void {
    const expected = p.expect ?? this.targetAt(p.address)
    const h = expected !== undefined ? this.health.get(memberKey(expected)) : undefined
    if (h !== undefined) h.probeInFlight = false
    if (r.ok) {
      const found = r.reply.from
      if (expected !== undefined && memberKey(found) !== memberKey(expected) && found.address === p.address) {
        // Dial-back found another process at the address: the expected incarnation is gone.
        this.markDead(expected, 'dial-back found another incarnation')
        this.replacedBy = { dead: expected, found }
      }
      // My own view moved on without me? (I was excluded while cut off or paused.)
      const s = r.reply.summary
      if (this.view !== undefined && expected !== undefined && memberKey(found) === memberKey(this.view.members[0]!) &&
        s.view !== undefined && s.view.id.counter > this.view.id.counter && !s.view.members.some(m => memberKey(m) === this.myKey)) {
        this.dropView('excluded by my coordinator')
      }
      return
    }
    if (expected === undefined) return
    if (r.error === 'refused' || r.error === 'closed') this.noteRefused(expected)
    if (h?.suspectedSince !== undefined) h.directFailedAt = this.now
  }

  private onJoinResult (p: Extract<Purpose, { kind: 'join' }>, r: Extract<MembershipInput, { type: 'send-result' }>): void {
    if (!r.ok) {
      if (this.view === undefined && this.founderSince?.key === memberKey(p.to) && (r.error === 'refused' || r.error === 'closed')) {
        this.founderFailed.set(memberKey(p.to), this.now + 4 * this.cfg.founderWaitMs)
        this.founderSince = undefined
      }
      return
    }
    if (!r.reply.ok && r.reply.redirect !== undefined && this.view === undefined) {
      this.lastJoinSent = this.now
      this.sendJoin(r.reply.redirect, [this.me], true)
    } else if (!r.reply.ok && this.joinedTo !== undefined && memberKey(this.joinedTo.coord) === memberKey(p.to)) {
      this.joinedTo = undefined
    }
  }

  private onRoundResult (p: Extract<Purpose, { kind: 'install' | 'heartbeat' }>, r: Extract<MembershipInput, { type: 'send-result' }>): void {
    const k = memberKey(p.target)
    const round = p.round !== undefined ? this.rounds.get(p.round) : undefined
    const h = this.inViewKey(k) ? this.healthOf(p.target) : undefined
    if (r.ok) {
      const rep = r.reply
      if (memberKey(rep.from) !== k) {
        // Someone else answers at the address: the target is gone.
        this.markDead(p.target, 'another process answered')
        round?.hardFail.add(k)
      } else if (rep.ok) {
        if (h !== undefined) {
          this.clearSuspicion(h)
          if (rep.promise === true) h.lastPromiseAck = this.now
        }
        round?.answered.add(k)
        if (rep.promise === true && round?.claim === true) round.acks.add(k)
      } else {
        round?.answered.add(k)
        round?.hardFail.add(k)
        if (rep.reason === 'promised') round?.promised.add(k)
        if (h !== undefined) h.lastHeard = this.now
        this.onNack(p.target, rep)
      }
    } else {
      if (r.error === 'refused' || r.error === 'closed') {
        round?.hardFail.add(k)
        if (h !== undefined) {
          this.suspect(p.target, r.error)
          this.noteRefused(p.target)
        }
      } else {
        round?.answered.add(k)
      }
    }
    if (round !== undefined) this.evaluateRound(round)
  }

  private onNack (target: MemberInfo, rep: ReplyMessage): void {
    const h = this.health.get(memberKey(target))
    switch (rep.reason) {
      case 'need-view': {
        // The member missed an install: send the current one again (at most once per heartbeat).
        const k = memberKey(target)
        const last = this.installResent.get(k) ?? -Infinity
        if (this.view !== undefined && this.isCoordinator() && this.now - last >= this.cfg.heartbeatMs) {
          this.installResent.set(k, this.now)
          const claim = this.cfg.quorum === 'majority' && this.isLeader(this.now)
          const msg: InstallMessage = {
            ...this.envelope(), type: 'install', view: this.view, claim, configCounter: this.configCounter()
          }
          this.send(target.address, msg, { kind: 'install', target })
        }
        break
      }
      case 'stale-view':
      case 'not-member': {
        // It follows a newer view (another coordinator): it departed from mine; merging brings it back.
        const s = rep.summary
        if (h !== undefined && s.view !== undefined && this.view !== undefined &&
          (s.view.id.counter !== this.view.id.counter || s.view.id.coordinator !== this.view.id.coordinator)) {
          h.departed = true
        }
        break
      }
      case 'leaving':
        this.left.add(memberKey(target))
        break
      case 'stale-epoch':
        // A member of my view knows a higher epoch (a failed claim it promised to): lead on under a higher one.
        if (this.lead !== undefined && compareEpochs(rep.epoch, this.lead.epoch) > 0 && this.inViewKey(memberKey(target))) this.reelect = true
        break
      default:
        break
    }
  }

  private onPingResult (p: Extract<Purpose, { kind: 'ping-req' }>, r: Extract<MembershipInput, { type: 'send-result' }>): void {
    const h = this.health.get(memberKey(p.suspect))
    if (h === undefined || h.suspectedSince === undefined) return
    if (!r.ok) return
    const found = r.reply.found
    if (r.reply.ok && found !== undefined) {
      if (memberKey(found) === memberKey(p.suspect)) h.indirectFoundAt = this.now
      else if (found.address === p.suspect.address) {
        this.markDead(p.suspect, 'indirect probe found another incarnation')
        this.replacedBy = { dead: p.suspect, found }
      }
    } else if (r.reply.reason === 'unreachable') {
      h.indirectUnreachableAt = this.now
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Other inputs

  private onDisconnected (peerId: string): void {
    for (const m of this.view?.members ?? []) {
      if (m.peerId !== peerId || memberKey(m) === this.myKey) continue
      // Fast path: a closed connection is a suspicion at once, verified before exclusion.
      if (this.isCoordinator() || memberKey(m) === memberKey(this.view!.members[0]!)) {
        this.suspect(m, 'disconnected')
        this.verify(m, this.healthOf(m))
      }
    }
  }

  private onExternalDeath (name: string, incarnation: string | undefined): void {
    if (incarnation !== undefined) this.externalDead.add(`${name}/${incarnation}`)
    for (const m of this.knownMembers()) {
      if (m.name !== name || memberKey(m) === this.myKey) continue
      if (incarnation !== undefined) {
        if (m.incarnation === incarnation) this.markDead(m, 'external')
        continue
      }
      // Without an incarnation ("pod vectis-1 restarted"), only an incarnation that went quiet is meant: a new
      // one of the same pod that already speaks must not be taken for the dead one.
      const h = this.health.get(memberKey(m))
      const heardLately = h !== undefined && this.now - h.lastHeard < this.cfg.heartbeatMs && h.suspectedSince === undefined
      if (!heardLately) this.markDead(m, 'external')
    }
  }

  private onLeave (): void {
    if (this.leaving !== 'no') return
    if (this.view === undefined || this.view.members.length === 1) {
      this.demote('shutdown')
      this.finishLeave()
      return
    }
    if (this.isCoordinator()) {
      this.leaving = 'handover'
      this.handOver(undefined, true)
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
    if (!this.isCoordinator() || this.view === undefined || this.leaving !== 'no') {
      this.log('warn', 'leadership transfer ignored: not the coordinator', { to })
      return
    }
    this.handOver(to, false)
  }

  private handOver (to: string | undefined, leaving: boolean): void {
    const view = this.view!
    const candidates = view.members.filter(m => memberKey(m) !== this.myKey && this.health.get(memberKey(m))?.suspectedSince === undefined)
    const successor = to !== undefined ? candidates.find(m => m.name === to) : candidates[0]
    if (successor === undefined) {
      this.log('warn', 'no successor to hand over to', { to })
      if (leaving) this.finishLeave()
      return
    }
    const epoch = this.lead?.epoch ?? this.highestEpoch
    if (this.lead !== undefined) this.demote('handover')
    for (const r of this.rounds.values()) r.resolved = true
    // Until the successor installs its view, do not lead or install again.
    this.handingOver = { until: this.now + this.cfg.promiseMs }
    const msg: HandoverMessage = { ...this.envelope(), type: 'handover', leaving, handedOver: epoch }
    this.send(successor.address, msg, { kind: 'handover', target: successor, leaving })
    this.log('info', 'handing over', { to: successor.name, epoch, leaving })
  }
}
