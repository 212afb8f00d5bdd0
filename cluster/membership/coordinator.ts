/**
 * The coordinator's duties (docs/cluster-protocol.md, "Views" and "Leadership"): it watches the members, installs
 * the views (joins, leaves, exclusions, merges), runs the rounds (installs and heartbeats; with a claim, elections
 * and lease renewals), and hands leadership over. It works over the member's shared context (`MemberContext`);
 * what is its own is the pacing of heartbeats and merge scans and the re-sends of installs.
 */
import { compareEpochs, sameEpoch, type Epoch } from '../../common/epoch.js'
import {
  memberKey, type HandoverMessage, type HeartbeatMessage, type InstallMessage, type JoinMessage, type MemberInfo, type ReleaseMessage,
  type ReplyMessage, type ViewData, type ViewSummary
} from '../messages.js'
import type { MemberContext, Purpose } from './context.js'
import type { MembershipInput } from './types.js'
import { rankCompare, sameViewId, speaksForItsView } from './view.js'
import type { Round } from './votes.js'

type SendResult = Extract<MembershipInput, { type: 'send-result' }>

export class Coordinator {
  private nextHeartbeatAt: number
  private nextMergeScanAt: number
  /** A member asked to join although my view holds it (it lost my view): reinstall, numbered above all seen. */
  private forceReinstall = false
  private readonly installResent = new Map<string, number>()

  constructor (private readonly c: MemberContext) {
    // Jittered start of the periodic work, so members do not act in lockstep.
    this.nextHeartbeatAt = c.now + c.cfg.heartbeatMs * c.random() * 0.2
    this.nextMergeScanAt = c.now
  }

  tick (view: ViewData): void {
    // Merge: look for views outside mine, slowly.
    if (this.c.now >= this.nextMergeScanAt) {
      this.nextMergeScanAt = this.c.now + 2 * this.c.cfg.heartbeatMs * (0.8 + 0.4 * this.c.random())
      this.c.helloDiscovered(2 * this.c.cfg.heartbeatMs, true)
      if (this.tryMerge(view)) return
    }
    if (this.c.votes.handingOver) return
    if (this.c.cfg.quorum === 'none' && !this.c.votes.leading) this.c.leadWithoutQuorum()
    // Failure detection of the members.
    for (const m of view.members) {
      if (memberKey(m) === this.c.myKey) continue
      if (this.c.fd.silence(m, this.c.now) > this.c.cfg.failureTimeoutMs) this.c.suspect(m, 'silence')
      if (this.c.fd.isSuspected(memberKey(m))) this.c.verify(m, view)
    }
    if (!this.c.votes.leading) this.probeConfigMembers()
    if (!this.c.votes.installing()) {
      const next = this.nextMembers(view)
      if (next !== undefined) {
        this.install(next, {})
        return
      }
      if (this.c.votes.takeReelection() && this.c.isLeader(this.c.now)) {
        this.install(view.members, { reelect: true })
        return
      }
      if (this.c.cfg.quorum === 'majority' && !this.c.votes.leading && this.c.votes.mayElect(this.c.now) &&
        this.c.potentialQuorum(view.members, undefined)) {
        // Coordinator without a lease: run an election (re-install the same members under a new epoch).
        this.install(view.members, {})
        return
      }
    }
    if (this.c.now >= this.nextHeartbeatAt) this.heartbeatRound(view)
  }

  /**
   * A coordinator without a lease probes the members of the configurations it must count that are outside its view:
   * a dead one is then verified (refused, or another incarnation answers) and stops counting in time.
   */
  private probeConfigMembers (): void {
    for (const m of this.c.configs.configMembers()) {
      const k = memberKey(m)
      if (k === this.c.myKey || this.c.inViewKey(k) || this.c.fd.certainlyDead(k)) continue
      if (this.c.fd.configProbeDue(m, this.c.now)) this.c.sendProbe(m)
    }
  }

  /** The members of the next view if it must change (joins, leaves, exclusions), else undefined. */
  private nextMembers (view: ViewData): MemberInfo[] | undefined {
    let changed = this.forceReinstall
    this.forceReinstall = false
    const keep: MemberInfo[] = []
    for (const m of view.members) {
      const k = memberKey(m)
      if (k === this.c.myKey) { keep.push(m); continue }
      if (this.c.fd.gone(k, this.c.now, view.members)) {
        changed = true
        continue
      }
      keep.push(m)
    }
    for (const j of this.c.joinRequests.values()) {
      const k = memberKey(j)
      if (keep.some(m => memberKey(m) === k) || this.c.fd.isDead(k) || this.c.fd.hasLeft(k)) continue
      // A restarted member replaces its old incarnation and joins last.
      for (let i = keep.length - 1; i >= 0; i--) {
        const m = keep[i]!
        if (m.name === j.name && memberKey(m) !== this.c.myKey) { this.c.markDead(m, 'replaced'); keep.splice(i, 1) }
      }
      keep.push(j)
      changed = true
    }
    this.c.joinRequests.clear()
    return changed ? keep : undefined
  }

  /** Installs a new view with me as coordinator; claims (asks for promises) when it can lead. */
  install (members: MemberInfo[], opts: { handoverFrom?: Epoch, replacedLeaderKey?: string, reelect?: boolean }): void {
    const counter = this.c.configs.nextViewCounter(this.c.view?.id.counter ?? 0)
    let claim = false
    let election = false
    let epoch = this.c.configs.highestEpoch
    if (this.c.cfg.quorum === 'majority' && !this.c.votes.handingOver) {
      const view0: ViewData = { id: { coordinator: this.c.me.name, counter }, members, epoch }
      const leaderEpoch = this.c.votes.leaderEpoch
      if (leaderEpoch !== undefined && this.c.isLeader(this.c.now) && opts.reelect !== true) {
        claim = true
        epoch = leaderEpoch
      } else {
        const e = this.c.configs.newEpoch(this.c.me.name)
        if (this.c.canPromise(e, this.c.myKey, opts.handoverFrom, this.c.fd.replacedBy) &&
          this.c.quorumOk(this.c.configs.quorumConfigs(view0), new Set(members.map(memberKey)), opts.replacedLeaderKey)) {
          claim = true
          election = true
          epoch = e
        }
      }
    }
    // Forced new cluster: number the configuration above anything seen so the others accept it.
    if (this.c.configs.forced) this.c.configs.installForced(this.c.me, counter)
    const view: ViewData = { id: { coordinator: this.c.me.name, counter }, members: members.map(m => ({ ...m })), epoch }
    const configs = claim ? this.c.configs.quorumConfigs(view) : []
    const configCounter = this.c.configs.configCounter()
    this.c.applyView(view)
    if (claim) {
      this.c.configs.setPending({ id: view.id, members: view.members })
      if (election) {
        // Not yet my highest epoch: a claim that fails must not make me refuse the leader others elected
        // meanwhile at a lower number. Seen, so my next claim numbers above it.
        this.c.configs.noteEpoch(epoch)
        this.c.votes.give(epoch, this.c.myKey, this.c.now)
      } else {
        this.c.givePromise(epoch, this.c.myKey)
      }
    }
    const round = this.c.votes.newRound('install', view, epoch, claim, election, configs, this.c.now)
    if (opts.handoverFrom !== undefined) round.handoverFrom = opts.handoverFrom
    const msg: InstallMessage = { ...this.c.envelope(), type: 'install', view, claim, configCounter }
    if (opts.handoverFrom !== undefined) msg.handoverFrom = opts.handoverFrom
    const replacedBy = this.c.fd.replacedBy
    if (replacedBy !== undefined) msg.replacedBy = replacedBy
    for (const m of view.members) {
      if (memberKey(m) === this.c.myKey) continue
      this.c.send(m.address, msg, { kind: 'install', round: round.no, target: m })
    }
    this.c.log('info', 'installing view', { viewId: view.id, members: view.members.map(m => m.name), claim, epoch })
    this.nextHeartbeatAt = this.c.now + this.c.cfg.heartbeatMs * (0.9 + 0.2 * this.c.random())
    this.evaluateRound(round)
  }

  private heartbeatRound (view: ViewData): void {
    this.nextHeartbeatAt = this.c.now + this.c.cfg.heartbeatMs * (0.9 + 0.2 * this.c.random())
    const leaderEpoch = this.c.cfg.quorum === 'majority' && this.c.isLeader(this.c.now) ? this.c.votes.leaderEpoch : undefined
    const leading = leaderEpoch !== undefined
    const epoch = leaderEpoch ?? this.c.configs.highestEpoch
    const configs = leading ? this.c.configs.leaseConfigs() : []
    if (leading) this.c.givePromise(epoch, this.c.myKey)
    const round = this.c.votes.newRound('heartbeat', view, epoch, leading, false, configs, this.c.now)
    const msg: HeartbeatMessage = { ...this.c.envelope(), type: 'heartbeat', viewId: view.id, round: round.no, claim: leading }
    const committed = this.c.configs.committed
    if (leading && committed !== undefined) msg.committed = committed.id
    for (const m of round.targets.values()) this.c.send(m.address, msg, { kind: 'heartbeat', round: round.no, target: m })
    this.evaluateRound(round)
  }

  private evaluateRound (r: Round): void {
    const replacedBy = this.c.fd.replacedBy
    const replaced = r.election && replacedBy !== undefined ? memberKey(replacedBy.dead) : undefined
    const outcome = this.c.votes.evaluate(r, acks => this.c.quorumOk(r.configs, acks, replaced))
    if (outcome === 'succeeded') this.roundSucceeded(r)
    else if (outcome === 'failed') this.failRound(r, true)
  }

  private roundSucceeded (r: Round): void {
    // Once handing over (or leaving), a late acknowledgement must not make or keep me leader: the successor may
    // already lead on the promises I passed on.
    if (this.c.votes.handingOver || this.c.leaving !== 'no') return
    const expiry = r.sentAt + this.c.cfg.leaseMs
    if (expiry <= this.c.now) return // acknowledged too late: the lease it would give has already run out
    const sameView = this.c.view !== undefined && this.c.view.id.counter === r.view.id.counter && this.c.isCoordinator()
    const leaderEpoch = this.c.votes.leaderEpoch
    if (r.election && leaderEpoch !== undefined && compareEpochs(r.epoch, leaderEpoch) > 0 && sameView) {
      // Re-election under a higher epoch (a member had promised to a higher failed claim and refused mine).
      this.c.demote('superseded')
    }
    if (r.election) {
      const replacedBy = this.c.fd.replacedBy
      const replaced = replacedBy !== undefined ? memberKey(replacedBy.dead) : undefined
      const fd = this.c.fd.debugState(this.c.now)
      this.c.log('debug', 'election won', {
        configs: r.configs.map(c => `${c.id.coordinator}#${c.id.counter}[${c.members.map(m => `${m.name}/${m.incarnation}${this.c.fd.discountReason(memberKey(m), replaced, this.c.now, this.c.votes.leading) !== undefined ? '(gone)' : ''}`).join(',')}]`),
        acks: [...r.acks],
        replaced,
        left: fd.left,
        onlyRefused: fd.onlyRefused
      })
      if (!this.c.votes.leading && sameView) this.c.becomeLeader(r.epoch, expiry)
    } else {
      this.c.votes.extend(r.epoch, expiry)
    }
    // Commit: the round's quorums included the current view (its install, or a later heartbeat while it was
    // pending, e.g. when the install's own acknowledgements were lost).
    const view = this.c.view
    const coversView = view !== undefined && r.configs.some(c => sameViewId(c.id, view.id))
    if (coversView && !this.c.isPrimaryView() && sameEpoch(this.c.votes.leaderEpoch, r.epoch) && view.id.counter === r.view.id.counter) {
      this.c.configs.commit(r.view)
      this.c.emit({ type: 'view:installed', view, primary: true })
      // Tell the members at once that their view is primary: at the next tick, or now when this round took over a
      // hand-over, whose old leader waits for my claim to report the hand-over done.
      if (r.handoverFrom !== undefined) this.heartbeatRound(view)
      else this.nextHeartbeatAt = this.c.now
    }
  }

  failRound (r: Round, definite = false): void {
    r.resolved = true
    if (!r.claim) return
    if (r.election) {
      // Abandon the claim: release the promises it got so a later candidate need not wait for them to expire.
      const release: ReleaseMessage = { ...this.c.envelope(), type: 'release', released: r.epoch }
      for (const k of r.acks) {
        if (k === this.c.myKey) continue
        const m = r.targets.get(k)
        if (m !== undefined) this.c.send(m.address, release, { kind: 'release', target: m })
      }
      const pending = this.c.configs.pending
      if (pending !== undefined && pending.id.counter === r.view.id.counter) this.c.configs.setPending(undefined)
      this.c.votes.electionFailed(r, this.c.now, this.c.random())
      return
    }
    // A leader that cannot reach a majority at all (refusals, closed connections, refusing members) steps down
    // at once rather than waiting for its lease to run out.
    if (definite && sameEpoch(this.c.votes.leaderEpoch, r.epoch) && r.no === this.c.votes.latestClaimRoundNo()) {
      this.c.demote('lost-quorum')
      this.c.votes.backOff(this.c.now + this.c.cfg.heartbeatMs * (1 + this.c.random()))
    }
  }

  private tryMerge (view: ViewData): boolean {
    const mine = this.c.summary()
    let best: ViewSummary | undefined
    for (const p of this.c.peers.values()) {
      const s = p.summary
      if (s?.view === undefined || this.c.now - p.lastHeard > this.c.cfg.failureTimeoutMs) continue
      if (!speaksForItsView(p.member, p.summary)) continue
      if (sameViewId(s.view.id, view.id)) continue
      if (s.view.members[0] === undefined || memberKey(s.view.members[0]) === this.c.myKey) continue
      if (rankCompare(s, mine) <= 0) continue
      if (best === undefined || rankCompare(s, best) > 0) best = s
    }
    if (best?.view === undefined) return false
    // A leader (majority mode) never merges away: the other side comes to it. With quorum `none` every coordinator
    // leads, and the better-ranked view absorbs the other (its leader steps down).
    if (this.c.cfg.quorum === 'majority' && this.c.isLeader(this.c.now)) return false
    const coord = best.view.members[0]!
    this.c.log('info', 'merging my view into a better one', { into: best.view.id, mine: view.id })
    // Until that view takes mine in, joiners go there: admitting them here would grow a view that is going away
    // while the other one exists.
    this.c.mergingInto = { coord, until: this.c.now + 4 * this.c.cfg.heartbeatMs }
    this.c.sendJoin(coord, view.members, true)
    return true
  }

  roundResult (p: Extract<Purpose, { kind: 'install' | 'heartbeat' }>, r: SendResult): void {
    const k = memberKey(p.target)
    const round = this.c.votes.round(p.round)
    const inView = this.c.inViewKey(k)
    if (inView) this.c.fd.ensureWatched(p.target, this.c.now)
    if (r.ok) {
      const rep = r.reply
      if (memberKey(rep.from) !== k) {
        // Someone else answers at the address: the target is gone.
        this.c.markDead(p.target, 'another process answered')
        if (round !== undefined) this.c.votes.recordAnswer(round, k, 'gone')
      } else if (rep.ok) {
        if (inView) this.c.fd.answered(p.target, this.c.now, rep.promise === true)
        if (round !== undefined) this.c.votes.recordAnswer(round, k, rep.promise === true ? 'promise' : 'ack')
      } else {
        if (round !== undefined) this.c.votes.recordAnswer(round, k, rep.reason === 'promised' ? 'promised' : 'refused')
        if (inView) this.c.fd.touch(p.target, this.c.now)
        this.onNack(p.target, rep)
      }
    } else if (r.error === 'refused' || r.error === 'closed') {
      if (round !== undefined) this.c.votes.recordAnswer(round, k, 'gone')
      if (inView) {
        this.c.suspect(p.target, r.error)
        this.c.refused(p.target)
      }
    } else if (round !== undefined) {
      this.c.votes.recordAnswer(round, k, 'no-answer')
    }
    if (round !== undefined) this.evaluateRound(round)
  }

  private onNack (target: MemberInfo, rep: ReplyMessage): void {
    const k = memberKey(target)
    switch (rep.reason) {
      case 'need-view': {
        // The member missed an install: send the current one again (at most once per heartbeat).
        const last = this.installResent.get(k) ?? -Infinity
        const view = this.c.view
        if (view !== undefined && this.c.isCoordinator() && this.c.now - last >= this.c.cfg.heartbeatMs) {
          this.installResent.set(k, this.c.now)
          const claim = this.c.cfg.quorum === 'majority' && this.c.isLeader(this.c.now)
          const msg: InstallMessage = { ...this.c.envelope(), type: 'install', view, claim, configCounter: this.c.configs.configCounter() }
          this.c.send(target.address, msg, { kind: 'install', target })
        }
        break
      }
      case 'stale-view':
      case 'not-member': {
        // It follows a newer view (another coordinator): it departed from mine; merging brings it back.
        const s = rep.summary
        if (s.view !== undefined && this.c.view !== undefined && !sameViewId(s.view.id, this.c.view.id)) this.c.fd.markDeparted(k)
        break
      }
      case 'leaving':
        this.c.fd.markLeft(k)
        break
      case 'stale-epoch': {
        // A member of my view knows a higher epoch (a failed claim it promised to): lead on under a higher one.
        const leaderEpoch = this.c.votes.leaderEpoch
        if (leaderEpoch !== undefined && compareEpochs(rep.epoch, leaderEpoch) > 0 && this.c.inViewKey(k)) this.c.votes.wantReelection()
        break
      }
      default:
        break
    }
  }

  /** Whom to hand over to: `to`, or the oldest member after me; never a suspected one. Else why there is none. */
  successor (view: ViewData, to: string | undefined): MemberInfo | string {
    const others = view.members.filter(m => memberKey(m) !== this.c.myKey)
    const candidates = others.filter(m => !this.c.fd.isSuspected(memberKey(m)))
    if (to === undefined) return candidates[0] ?? (others.length === 0 ? 'there is no other member to hand over to' : 'every other member is suspected')
    const named = candidates.find(m => m.name === to)
    if (named !== undefined) return named
    return others.some(m => m.name === to) ? `${to} is suspected (not heard from lately)` : `no member named ${to} in the current view`
  }

  /** Hands over to `successor` (from `successor()`: a member, or why there is none). */
  handOver (successor: MemberInfo | string, leaving: boolean): void {
    if (typeof successor === 'string') {
      this.c.log('warn', 'no successor to hand over to', { reason: successor })
      if (leaving) this.c.finishLeave()
      return
    }
    const epoch = this.c.votes.leaderEpoch ?? this.c.configs.highestEpoch
    if (this.c.votes.leading) this.c.demote('handover')
    this.c.votes.resolveAll()
    // Until the successor leads (or the hand-over runs out), do not lead or install again.
    this.c.votes.startHandover(successor, epoch, this.c.now)
    const msg: HandoverMessage = { ...this.c.envelope(), type: 'handover', leaving, handedOver: epoch }
    this.c.send(successor.address, msg, { kind: 'handover', target: successor, leaving })
    this.c.log('info', 'handing over', { to: successor.name, epoch, leaving })
  }

  /** A join request to me as coordinator (a view-less member, or a coordinator merging its view into mine). */
  admit (msg: JoinMessage): void {
    if (this.c.leaving !== 'no' || this.c.votes.handingOver) {
      this.c.reply(msg, false, 'leaving')
      return
    }
    if (this.c.mergingInto !== undefined && this.c.mergingInto.until > this.c.now) {
      this.c.reply(msg, false, 'not-coordinator', { redirect: this.c.mergingInto.coord })
      return
    }
    for (const j of msg.joiners) {
      const k = memberKey(j)
      if (k === this.c.myKey) continue
      if (this.c.inViewKey(k)) {
        // It asks to join although my view holds it: it does not have my view (it moved to another one with a
        // counter as high). A new view, numbered above everything seen, brings it back.
        this.forceReinstall = true
        continue
      }
      this.c.fd.forgetDeparture(k)
      this.c.joinRequests.set(k, j)
    }
    this.c.reply(msg, true)
  }
}
