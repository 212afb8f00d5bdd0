/**
 * Membership and leadership as one deterministic state machine: `handle(input, now)` returns the outputs (sends,
 * the reply to a received request, persistence, events, logs). No I/O, no timers, no randomness other than the
 * injected `random`; time only from `now` (the member's monotonic clock). The protocol, the rules and why the
 * invariants hold are in `docs/cluster-protocol.md`.
 *
 * The machine dispatches each input by role (no view, member, coordinator: `MemberContext.role`). Its parts each
 * own their state and take `now`: `ConfigState` (configurations, epochs, counters: what is persisted),
 * `PeerDirectory` (what each address said), `FailureDetector` (suspicions, probes, deaths, leaves), `Founding` (the
 * cold start), `Votes` (promises, leadership, rounds), `Coordinator` (views and rounds of a coordinator). The parts
 * return what to do; the context's outbox is the one place that sends and emits.
 *
 * NOT guaranteed by this module alone:
 * - with quorum `none`, that a single member leads (every view's coordinator does, as in JGroups);
 * - anything if members lie (non-Byzantine setting: the cluster secret keeps strangers out);
 * - safety under clock-rate errors larger than `maxClockDrift`, or under a partition that resets connections on one
 *   side only combined with a false "verified dead" from outside (see the protocol document);
 * - that `persist` outputs are durable: the driver must write them before executing the outputs that follow.
 */
import { compareEpochs, type Epoch } from '../../common/epoch.js'
import {
  memberKey, provesReplacement, type ClusterRequest, type HandoverMessage, type HeartbeatMessage, type InstallMessage, type JoinMessage,
  type MemberInfo, type PingReqMessage, type ReleaseMessage, type ViewData
} from '../messages.js'
import { resolveMembershipConfig, type MembershipConfig, type MembershipInit } from './config.js'
import { MemberContext, type Purpose } from './context.js'
import { Coordinator } from './coordinator.js'
import { nextIncarnation } from './incarnation.js'
import type { FoundingIntent } from './founding.js'
import type { MembershipComponents, MembershipInput, MembershipOutput, MembershipStatus, PersistedClusterState } from './types.js'
import { sameViewId } from './view.js'

type SendResult = Extract<MembershipInput, { type: 'send-result' }>

export class MembershipMachine {
  readonly cfg: MembershipConfig
  readonly me: MemberInfo
  private readonly c: MemberContext
  private readonly coordinating: Coordinator

  constructor (components: MembershipComponents, init: MembershipInit = {}, now = 0) {
    this.cfg = resolveMembershipConfig(init)
    this.me = { ...components.me, incarnation: nextIncarnation(components.persisted?.member?.incarnation, components.random) }
    this.c = new MemberContext(this.cfg, this.me, components.random, components.persisted, now)
    this.coordinating = new Coordinator(this.c)
  }

  // ---------------------------------------------------------------------------------------------------------
  // Public queries (synchronous, from `now`)

  /** True only while this member holds a valid lease at `now` (a leader woken from a pause is not leader). */
  isLeader (now: number): boolean { return this.c.isLeader(now) }
  leaseRemaining (now: number): number { return this.c.leaseRemaining(now) }
  currentView (): ViewData | undefined { return this.c.view }
  currentEpoch (): Epoch | undefined { return this.c.currentEpoch() }
  persistedState (): PersistedClusterState { return this.c.configs.snapshot(this.me) }
  status (now: number): MembershipStatus { return this.c.status(now) }
  /** By name, how long each member this one watches has been silent (none for the members it does not watch). */
  heartbeatAges (now: number): Map<string, number> { return this.c.heartbeatAges(now) }
  /** The leader this member follows (not itself) and when it last heard from it, on the clock of `now`. */
  leaderSign (now: number): { name: string, at: number } | undefined { return this.c.leaderSign(now) }
  /** Internal state for diagnostics (simulation failures, debug logs); not a stable interface. */
  debugState (now: number): Record<string, unknown> { return this.c.debugState(now) }

  // ---------------------------------------------------------------------------------------------------------
  // The one entry point

  handle (input: MembershipInput, now: number): MembershipOutput[] {
    if (now < this.c.now) now = this.c.now // a monotonic clock never goes back; be robust to a caller that does
    this.c.begin(now)
    if (this.c.leaving === 'done') {
      if (input.type === 'message') this.c.reply(input.msg, false, 'leaving')
      return this.c.flush()
    }
    switch (input.type) {
      case 'tick': this.onTick(); break
      case 'discovered': this.c.peers.setDiscovered(input.addresses, this.c.me.address); break
      case 'message': this.onMessage(input.msg); break
      case 'send-result': this.onSendResult(input); break
      case 'disconnected': this.onDisconnected(input.peerId); break
      case 'verified-dead': this.onExternalDeath(input.name, input.incarnation); break
      case 'leave': this.onLeave(); break
      case 'transfer': this.onTransfer(input.to); break
    }
    this.checkLease()
    return this.c.flush()
  }

  // ---------------------------------------------------------------------------------------------------------
  // Tick

  private onTick (): void {
    for (const r of this.c.votes.expire(this.c.now)) this.coordinating.failRound(r)
    this.c.founding.expire(this.c.now)
    const lapsed = this.c.votes.expireHandover(this.c.now)
    if (lapsed !== undefined && this.c.leaving === 'no') {
      this.c.emit({ type: 'handover:failed', to: lapsed, reason: `${lapsed.name} did not lead within ${this.cfg.promiseMs} ms` })
    }
    if (this.c.leaving === 'requested' || this.c.leaving === 'handover') return
    const role = this.c.role
    if (role.kind === 'joining') {
      this.tickJoining()
      return
    }
    if (!this.c.inViewKey(this.c.myKey)) {
      this.c.dropView('not a member of my view')
      return
    }
    // A member that left my view while its connections were being refused (the killed leader, excluded by the
    // takeover) is still probed until the refusals verify its death: the election after a crash needs that proof.
    for (const m of this.c.fd.refusingOutsideView(this.c.now, k => this.c.inViewKey(k))) this.c.sendProbe(m)
    if (role.kind === 'coordinator') this.coordinating.tick(role.view)
    else this.tickMember(role.view)
  }

  private checkLease (): void {
    const expiry = this.c.votes.leaseExpiry
    if (expiry === undefined) return
    if (this.c.cfg.quorum === 'none') {
      if (!this.c.isCoordinator()) this.c.demote('view-change')
      return
    }
    if (this.c.now >= expiry) this.c.demote('lease-expired')
  }

  // --- no view yet: discovery, join, cold start

  private tickJoining (): void {
    this.c.helloDiscovered(this.c.cfg.heartbeatMs)
    this.foundingDo(this.c.founding.tick(this.c.now, this.c.peers, this.c.joinRequests.values(), this.c.configs.forced))
  }

  private foundingDo (intents: FoundingIntent[]): void {
    for (const i of intents) {
      switch (i.do) {
        case 'join': this.c.sendJoin(i.to, [this.c.me], i.toView); break
        case 'propose': this.propose(i.no, i.candidates); break
        case 'release': this.releaseProposal(i.accepted); break
        case 'forget-joins': this.c.joinRequests.clear(); break
        case 'install': this.coordinating.install(i.members, {}); break
        case 'log': this.c.log('info', i.msg, i.fields); break
      }
    }
  }

  /** The founding view proposed to the candidates (installed only with those that accept: `Founding`). */
  private propose (no: number, candidates: MemberInfo[]): void {
    const view: ViewData = { id: { coordinator: this.c.me.name, counter: this.c.configs.proposalCounter() }, members: [this.c.me, ...candidates], epoch: this.c.configs.highestEpoch }
    const msg: InstallMessage = { ...this.c.envelope(), type: 'install', view, claim: false, configCounter: this.c.configs.configCounter(), propose: true }
    this.c.log('info', 'proposing the first view', { members: view.members.map(m => m.name) })
    for (const m of candidates) this.c.send(m.address, msg, { kind: 'propose', proposal: no, target: m }, this.c.founding.firstContactMs())
  }

  /** My founding proposal is dropped: who accepted it is free again at once (else when its binding runs out). */
  private releaseProposal (accepted: Iterable<MemberInfo>): void {
    this.c.joinRequests.clear()
    for (const m of accepted) {
      this.c.send(m.address, { ...this.c.envelope(), type: 'release', released: this.c.configs.highestEpoch, founding: true }, { kind: 'release', target: m })
    }
  }

  // --- member (not coordinator)

  private tickMember (view: ViewData): void {
    const coord = view.members[0]!
    if (this.c.fd.silence(coord, this.c.now) > this.c.cfg.failureTimeoutMs) this.c.suspect(coord, 'silence')
    if (!this.c.fd.isSuspected(memberKey(coord))) return
    // The coordinator is suspected: verify it, and every member older than me, before taking over.
    const myIndex = view.members.findIndex(m => memberKey(m) === this.c.myKey)
    let allOlderFailed = true
    for (let i = 0; i < myIndex; i++) {
      const m = view.members[i]!
      const k = memberKey(m)
      this.c.fd.ensureWatched(m, this.c.now)
      if (i > 0 && !this.c.fd.isSuspected(k)) this.c.suspect(m, 'coordinator failed')
      this.c.verify(m, view)
      if (!this.c.fd.isDead(k) && !this.c.fd.verifiedUnreachable(k, this.c.now, view.members) &&
        !(i > 0 && this.followsAnotherView(m, view))) allOlderFailed = false
    }
    if (!allOlderFailed || this.c.votes.handingOver) return
    if (this.c.votes.installing()) return
    if (!this.c.votes.mayElect(this.c.now)) return
    // Take over as coordinator: the view without the failed older members.
    const older = new Set(view.members.slice(0, myIndex).map(memberKey))
    const members = view.members.filter(m => !older.has(memberKey(m)))
    const replaced = this.c.fd.isDead(memberKey(coord)) ? memberKey(coord) : undefined
    this.c.log('info', 'coordinator failed: taking over', { coordinator: coord.name })
    this.coordinating.install(members, replaced !== undefined ? { replacedLeaderKey: replaced } : {})
    this.c.votes.backOff(this.c.now + this.c.cfg.heartbeatMs)
  }

  /** `m` said lately that it is in another view than mine, without me: it will not take over mine. */
  private followsAnotherView (m: MemberInfo, view: ViewData): boolean {
    const p = this.c.peers.get(m.address)
    const v = p?.summary?.view
    if (p?.member === undefined || memberKey(p.member) !== memberKey(m)) return false
    if (this.c.now - p.lastHeard > this.c.cfg.failureTimeoutMs) return false
    // Without a view (it lost mine while cut off, and is joining again) it cannot take over: it joins the view
    // of whoever does.
    if (v === undefined) return p.summary !== undefined
    // Same coordinator, another counter: the same line of views, one of us a view ahead (a join was being
    // installed when the coordinator died). It is older than me in it and takes over: not "another view".
    if (v.id.coordinator === view.id.coordinator) return false
    // A newer view that holds me (it took over and its install is on its way to me) is mine to come, not another
    // one; an older one it is stuck in is.
    return !(v.id.counter > view.id.counter && v.members.some(x => memberKey(x) === this.c.myKey))
  }

  // ---------------------------------------------------------------------------------------------------------
  // Messages

  private onMessage (msg: ClusterRequest): void {
    if (msg.cluster !== this.c.cfg.clusterName) {
      this.c.reply(msg, false, 'wrong-cluster')
      return
    }
    if (memberKey(msg.from) === this.c.myKey) {
      this.c.reply(msg, false, 'invalid')
      return
    }
    this.c.heard(msg.from)
    this.c.configs.noteEpoch(msg.epoch)
    switch (msg.type) {
      case 'hello':
        this.c.learnSummary(msg.from, msg.summary)
        this.c.reply(msg, true)
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
    this.c.learnSummary(msg.from, msg.summary)
    if (this.c.view === undefined) {
      if (this.c.founding.admitsJoiners(msg.joiners)) {
        for (const j of msg.joiners) this.c.joinRequests.set(memberKey(j), j)
        this.c.reply(msg, true)
      } else {
        this.c.reply(msg, false, 'not-coordinator')
      }
      return
    }
    if (!this.c.isCoordinator()) {
      this.c.reply(msg, false, 'not-coordinator', { redirect: this.c.coordinator()! })
      return
    }
    this.coordinating.admit(msg)
  }

  private onInstall (msg: InstallMessage): void {
    const v = msg.view
    const fromKey = memberKey(msg.from)
    if (msg.propose === true) { this.onProposal(msg); return }
    if (this.c.view === undefined) {
      // Bound to another founder's proposal: that founder may install a view holding me.
      const founder = this.c.founding.boundToOther(fromKey, this.c.now)
      if (founder !== undefined) {
        this.c.reply(msg, false, 'promised', { redirect: founder })
        return
      }
    }
    this.c.configs.noteCounter(v.id.counter)
    if (v.id.counter <= Math.max(this.c.view?.id.counter ?? 0, this.c.configs.maxApplied)) {
      this.c.reply(msg, false, 'stale-view')
      return
    }
    if (!v.members.some(m => memberKey(m) === this.c.myKey)) {
      this.c.reply(msg, false, 'not-member')
      return
    }
    if (v.members[0] === undefined || memberKey(v.members[0]) !== fromKey) {
      this.c.reply(msg, false, 'invalid')
      return
    }
    if (this.c.leaving !== 'no') {
      this.c.reply(msg, false, 'leaving')
      return
    }
    if (msg.replacedBy !== undefined && provesReplacement(msg.replacedBy)) {
      // Objective evidence (another incarnation answers at the old address): the old process is gone.
      this.c.markDead(msg.replacedBy.dead, 'replaced (reported)')
    }
    if (this.c.cfg.quorum === 'majority') {
      if (msg.claim) {
        if (!this.c.canPromise(v.epoch, fromKey, msg.handoverFrom, msg.replacedBy)) {
          this.c.reply(msg, false, compareEpochs(v.epoch, this.c.configs.highestEpoch) < 0 ? 'stale-epoch' : 'promised')
          return
        }
        const pending = this.c.configs.pending
        if (msg.configCounter < this.c.configs.configCounter() && !(pending !== undefined && pending.id.counter === v.id.counter)) {
          this.c.reply(msg, false, 'older-config')
          return
        }
      } else {
        const promisedTo = this.c.votes.promised(this.c.now)?.leaderKey
        if (promisedTo !== undefined && promisedTo !== fromKey && !this.c.fd.isDead(promisedTo)) {
          // Promised to a live leader: do not follow a coordinator that cannot lead.
          this.c.reply(msg, false, 'promised')
          return
        }
      }
    }
    this.c.applyView(v)
    this.c.fd.touch(msg.from, this.c.now)
    // Without a quorum every view's coordinator leads: my successor installing its view has taken over.
    if (this.c.cfg.quorum === 'none') this.reportHandover(this.c.votes.handoverDone(msg.from, v.epoch, false))
    if (msg.claim && this.c.cfg.quorum === 'majority') {
      this.c.givePromise(v.epoch, fromKey)
      this.c.configs.setPending({ id: v.id, members: v.members })
    }
    this.c.reply(msg, true, undefined, { promise: msg.claim && this.c.cfg.quorum === 'majority' })
  }

  /** A founder's proposal (cold start): `Founding.answerProposal` decides. */
  private onProposal (msg: InstallMessage): void {
    const open = this.c.view === undefined && this.c.leaving === 'no' && !this.c.configs.forced
    const answer = this.c.founding.answerProposal(msg, open, this.c.now)
    if (!answer.accept) {
      this.c.reply(msg, false, answer.reason, answer.extra)
      return
    }
    if (answer.release !== undefined) {
      this.c.log('info', 'first view proposal dropped for a lower founder', { founder: msg.from.name })
      this.releaseProposal(answer.release)
    }
    this.c.reply(msg, true)
  }

  /** A hand-over of mine that `Votes.handoverDone` found complete is reported. */
  private reportHandover (done: { to: MemberInfo, epoch: Epoch } | undefined): void {
    if (done !== undefined) this.c.emit({ type: 'handover:completed', to: done.to, epoch: done.epoch })
  }

  private onHeartbeat (msg: HeartbeatMessage): void {
    const fromKey = memberKey(msg.from)
    const view = this.c.view
    if (view === undefined) { this.c.reply(msg, false, 'need-view'); return }
    if (msg.viewId.counter < view.id.counter) { this.c.reply(msg, false, 'stale-view'); return }
    if (msg.viewId.counter > view.id.counter) { this.c.reply(msg, false, 'need-view'); return }
    if (msg.viewId.coordinator !== view.id.coordinator || memberKey(view.members[0]!) !== fromKey) {
      this.c.reply(msg, false, 'not-member')
      return
    }
    this.c.fd.touch(msg.from, this.c.now)
    let promised = false
    if (msg.claim && this.c.cfg.quorum === 'majority') {
      if (!this.c.canPromise(msg.epoch, fromKey)) {
        this.c.reply(msg, false, compareEpochs(msg.epoch, this.c.configs.highestEpoch) < 0 ? 'stale-epoch' : 'promised')
        return
      }
      this.c.givePromise(msg.epoch, fromKey)
      promised = true
      this.reportHandover(this.c.votes.handoverDone(msg.from, msg.epoch, true))
      if (sameViewId(msg.committed, view.id) && !this.c.isPrimaryView()) {
        this.c.configs.commit(view)
        this.c.emit({ type: 'view:installed', view, primary: true })
      }
    }
    this.c.reply(msg, true, undefined, { promise: promised })
  }

  private onRelease (msg: ReleaseMessage): void {
    if (msg.founding === true) {
      this.c.founding.released(msg.from)
    } else if (this.c.votes.release(msg.released, memberKey(msg.from))) {
      const pending = this.c.configs.pending
      if (pending !== undefined && pending.id.coordinator === msg.from.name) this.c.configs.setPending(undefined)
    }
    this.c.reply(msg, true)
  }

  private onLeaveMsg (msg: ClusterRequest): void {
    const k = memberKey(msg.from)
    // A member that left never acts again: a certain death. It stops counting at once for the leader it was
    // promised to (it acknowledged my rounds), otherwise once its last promise has run out.
    this.c.markDead(msg.from, 'left')
    if (this.c.isCoordinator() && this.c.inViewKey(k)) {
      if (this.c.votes.leading) this.c.fd.markLeft(k)
      this.c.reply(msg, true)
      return
    }
    const coord = this.c.coordinator()
    this.c.reply(msg, false, 'not-coordinator', coord !== undefined ? { redirect: coord } : {})
  }

  private onHandover (msg: HandoverMessage): void {
    const view = this.c.view
    if (view === undefined || memberKey(view.members[0]!) !== memberKey(msg.from) || !this.c.inViewKey(this.c.myKey)) {
      this.c.reply(msg, false, 'not-member')
      return
    }
    this.c.reply(msg, true)
    const fromKey = memberKey(msg.from)
    if (msg.leaving) this.c.fd.markLeft(fromKey)
    // The old leader consented: start at once (the promises it holds move to me through `handoverFrom`).
    const rest = view.members.filter(m => memberKey(m) !== this.c.myKey && memberKey(m) !== fromKey)
    const members = msg.leaving ? [this.c.me, ...rest] : [this.c.me, ...rest, msg.from]
    this.coordinating.install(members, { handoverFrom: msg.handedOver })
  }

  private onPingReq (msg: PingReqMessage): void {
    // Heard from it since the asker began to suspect it (not before: a process killed a moment ago spoke to all).
    const window = Math.min(2 * this.c.cfg.heartbeatMs, msg.withinMs ?? 2 * this.c.cfg.heartbeatMs)
    const found = this.c.peers.heardWithin(msg.target, this.c.now, window)
    if (found !== undefined) {
      this.c.reply(msg, true, undefined, { found })
      return
    }
    // Not heard lately: probe it now, so the next request gets a fresh answer.
    if (this.c.peers.helloDue(msg.target, this.c.now, this.c.cfg.heartbeatMs / 2, false)) {
      this.c.send(msg.target, this.c.hello(), { kind: 'hello', address: msg.target })
    }
    this.c.reply(msg, false, 'unreachable')
  }

  // ---------------------------------------------------------------------------------------------------------
  // Send results

  private onSendResult (r: SendResult): void {
    const purpose = this.c.takePurpose(r.id)
    if (purpose === undefined) return
    if (r.ok) {
      const rep = r.reply
      if (rep.cluster !== this.c.cfg.clusterName) return
      this.c.heard(rep.from)
      this.c.configs.noteEpoch(rep.epoch)
      this.c.learnSummary(rep.from, rep.summary)
    }
    switch (purpose.kind) {
      case 'hello': this.onHelloResult(purpose, r); break
      case 'join': this.onJoinResult(purpose, r); break
      case 'propose': this.foundingDo(this.c.founding.proposalAnswered(purpose.proposal, purpose.target, r.ok ? r.reply : undefined, this.c.peers, this.c.now)); break
      case 'install':
      case 'heartbeat': this.coordinating.roundResult(purpose, r); break
      case 'release':
      case 'farewell': break
      case 'leave':
        // The coordinator did not take it: tell every other member (best effort) so they stop counting on me.
        if (!r.ok || !r.reply.ok) this.farewell(this.c.coordinator()?.address)
        this.c.finishLeave()
        break
      case 'handover':
        if (purpose.leaving) {
          if (!r.ok || !r.reply.ok) this.farewell(undefined)
          this.c.finishLeave()
        } else if ((r.ok && !r.reply.ok) || (!r.ok && r.error === 'refused')) {
          // Refused, or not delivered at all: the successor will not take over. (A timeout may hide a delivered
          // request: then the outcome waits for the successor's claim, or for the hand-over's time to run out.)
          const to = this.c.votes.handoverFailed()
          this.c.emit({ type: 'handover:failed', to, reason: r.ok ? `${purpose.target.name} refused: ${r.reply.reason ?? 'no reason'}` : `${purpose.target.name} is not reachable` })
        }
        break
      case 'ping-req': this.onPingResult(purpose, r); break
    }
  }

  /** A leaving member's word to every member of its view but itself (and `except`, an address already told). */
  private farewell (except: string | undefined): void {
    for (const m of this.c.view?.members ?? []) {
      if (memberKey(m) === this.c.myKey || m.address === except) continue
      this.c.send(m.address, { ...this.c.envelope(), type: 'leave' }, { kind: 'farewell', target: m })
    }
  }

  private onHelloResult (p: Extract<Purpose, { kind: 'hello' }>, r: SendResult): void {
    const expected = p.expect ?? this.c.knownMembers().find(m => m.address === p.address)
    const watched = expected !== undefined && this.c.fd.probeReturned(memberKey(expected))
    if (r.ok) {
      const found = r.reply.from
      if (expected !== undefined && memberKey(found) !== memberKey(expected) && found.address === p.address) {
        // Dial-back found another process at the address: the expected incarnation is gone.
        this.c.markDead(expected, 'dial-back found another incarnation')
        this.c.fd.noteReplaced(expected, found)
      }
      // (A view that moved on without me was dropped already: onSendResult's learnSummary.)
      return
    }
    if (expected === undefined) return
    if (r.error === 'refused' || r.error === 'closed') this.c.refused(expected)
    if (watched) this.c.fd.directProbeFailed(memberKey(expected), this.c.now)
  }

  private onJoinResult (p: Extract<Purpose, { kind: 'join' }>, r: SendResult): void {
    if (!r.ok) {
      if (this.c.view === undefined) this.c.founding.joinFailed(p.to, r.error === 'refused' || r.error === 'closed', this.c.now)
      return
    }
    if (r.reply.ok) return
    const redirect = this.c.view === undefined ? r.reply.redirect : undefined
    this.foundingDo(this.c.founding.joinRefused(p.to, redirect, this.c.now))
  }

  private onPingResult (p: Extract<Purpose, { kind: 'ping-req' }>, r: SendResult): void {
    const k = memberKey(p.suspect)
    if (!this.c.fd.isSuspected(k) || !r.ok) return
    const found = r.reply.found
    if (r.reply.ok && found !== undefined) {
      if (memberKey(found) === k) this.c.fd.indirectResult(k, this.c.now, 'found')
      else if (found.address === p.suspect.address) {
        this.c.markDead(p.suspect, 'indirect probe found another incarnation')
        this.c.fd.noteReplaced(p.suspect, found)
      }
    } else if (r.reply.reason === 'unreachable') {
      this.c.fd.indirectResult(k, this.c.now, 'unreachable')
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Other inputs

  private onDisconnected (peerId: string): void {
    const view = this.c.view
    if (view === undefined) return
    for (const m of view.members) {
      if (m.peerId !== peerId || memberKey(m) === this.c.myKey) continue
      // Fast path: a closed connection is a suspicion at once, verified before exclusion.
      if (this.c.isCoordinator() || memberKey(m) === memberKey(view.members[0]!)) {
        this.c.suspect(m, 'disconnected')
        this.c.verify(m, view)
      }
    }
  }

  private onExternalDeath (name: string, incarnation: string | undefined): void {
    const { dead, probe } = this.c.fd.externalDeath(name, incarnation, this.c.knownMembers(), (k) => this.c.inViewKey(k), this.c.now)
    for (const m of dead) this.c.markDead(m, 'external')
    for (const m of probe) if (this.c.fd.directProbeDue(m, this.c.now)) this.c.sendProbe(m)
  }

  private onLeave (): void {
    if (this.c.leaving !== 'no') return
    const view = this.c.view
    if (view === undefined || view.members.length === 1) {
      this.c.demote('shutdown')
      this.c.finishLeave()
      return
    }
    if (this.c.isCoordinator()) {
      this.c.leaving = 'handover'
      this.coordinating.handOver(this.coordinating.successor(view, undefined), true)
      return
    }
    this.c.leaving = 'requested'
    this.c.send(this.c.coordinator()!.address, { ...this.c.envelope(), type: 'leave' }, { kind: 'leave' })
  }

  /**
   * The member a hand-over (to `to`, or to the next oldest) would go to now: a member of my view other than me that
   * is not suspected; or why there is none. Only a coordinator hands over.
   */
  handoverTarget (to?: string): MemberInfo | string {
    const r = this.c.role
    if (r.kind !== 'coordinator' || this.c.leaving !== 'no') return 'this member is not the coordinator of its view'
    return this.coordinating.successor(r.view, to)
  }

  private onTransfer (to: string | undefined): void {
    const target = this.handoverTarget(to)
    if (typeof target === 'string') {
      this.c.log('warn', 'leadership transfer refused', { to, reason: target })
      this.c.emit({ type: 'handover:failed', to: undefined, reason: target })
      return
    }
    this.coordinating.handOver(target, false)
  }
}
