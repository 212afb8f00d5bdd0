/**
 * A member without a view: joining a view a peer reports, or, when nobody has one, founding the first view
 * (docs/cluster-protocol.md, "Cold start"). The lowest view-less member (name, then peer id) founds: it proposes
 * the view to the others, who accept one proposal at a time (the acceptance binds them for a while), and installs
 * it with those that accepted, provided they are a majority of `VECTIS_CLUSTER_SIZE`. Two first views would then
 * share a member, which the binding forbids, so one view forms even when founders do not hear of each other.
 *
 * This part decides; the machine sends (joins, proposals, releases) and installs, as the intents returned say.
 */
import { memberKey, type InstallMessage, type MemberInfo, type ReplyMessage, type ViewSummary } from '../messages.js'
import type { MembershipConfig } from './config.js'
import type { PeerDirectory } from './peers.js'
import { majorityOf } from './quorum.js'
import { byNameThenPeer, rankCompare, speaksForItsView } from './view.js'

export type FoundingIntent =
  | { do: 'join', to: MemberInfo, toView: boolean }
  /** Proposal `no` of the first view to `candidates` (the founder first, then them). */
  | { do: 'propose', no: number, candidates: MemberInfo[] }
  /** A dropped proposal: who accepted it is free again at once; the join requests it gathered are dropped too. */
  | { do: 'release', accepted: MemberInfo[] }
  /** The join requests received so far are part of the view being founded: forget them. */
  | { do: 'forget-joins' }
  | { do: 'install', members: MemberInfo[] }
  | { do: 'log', msg: string, fields: Record<string, unknown> }

/** What to answer a founder's proposal: refuse (with a reason and whom to follow instead), or accept. */
export type ProposalAnswer =
  | { accept: false, reason: 'stale-view' | 'invalid' | 'promised', extra?: Partial<ReplyMessage> }
  /** `release`: who had accepted my own proposal, dropped for the proposer's (undefined: I was not proposing). */
  | { accept: true, release: MemberInfo[] | undefined }

interface Proposal {
  no: number
  sentAt: number
  waiting: Set<string>
  accepted: Map<string, MemberInfo>
  conflict: { who: MemberInfo, hasView: boolean } | undefined
}

/** A time-bound state (binding, deferral) still in force. */
function holds<T extends { until: number }> (b: T | undefined, now: number): b is T { return b !== undefined && b.until > now }

export class Founding {
  private readonly myKey: string
  /** The founder I defer to, and since when (it must found within `founderWaitMs`). */
  private founderSince: { key: string, since: number } | undefined
  /** As founder: the founding view proposed to the candidates, waiting for their answers. */
  private proposal: Proposal | undefined
  private nextProposalNo = 0
  /** As candidate: the founder whose proposal I accepted; I follow no one else until it runs out. */
  private acceptedFounder: { founder: MemberInfo, until: number } | undefined
  /** As joiner: the coordinator (or founder) I asked to join lately. */
  private joinedTo: { coord: MemberInfo, toView: boolean, until: number } | undefined
  /** The member count last logged as too few to found the first view. */
  private waitingLogged = 0
  /** A founder whose proposal conflicted with mine; I found nothing until this runs out. */
  private deferTo: { founder: MemberInfo, until: number } | undefined
  /** Founders that did not found in time (crashed, cut off): tried again once this runs out. */
  private readonly founderFailed = new Map<string, number>()
  private lastJoinSent = 0

  constructor (private readonly cfg: MembershipConfig, private readonly me: MemberInfo, private readonly startedAt: number) {
    this.myKey = memberKey(me)
  }

  /**
   * Deadline of a view-less member's requests (hellos, proposals): 2 × request timeout, as a first contact at cold
   * start (dial, handshake) on a machine busy starting many members is slow. Well inside the binding, so a
   * founder's install reaches who accepted while it is still bound.
   */
  firstContactMs (): number { return 2 * this.cfg.requestTimeoutMs }

  /** How long accepting a proposal (or asking a coordinator to join) binds a view-less member. */
  private bindingMs (): number { return 2 * this.cfg.requestTimeoutMs + 2 * this.cfg.heartbeatMs }

  /**
   * Members (founder included) a first view needs: a majority of `VECTIS_CLUSTER_SIZE` with quorum `majority`
   * (the size a primary view needs anyway), 1 with quorum `none` (every view leads there; a split is the
   * documented risk).
   */
  private foundingQuorum (): number {
    return this.cfg.quorum === 'majority' ? majorityOf(this.cfg.clusterSize) : 1
  }

  /** A view was applied: the cold start is over. */
  reset (): void {
    this.founderSince = undefined
    this.acceptedFounder = undefined
    this.joinedTo = undefined
    this.deferTo = undefined
    this.waitingLogged = 0
    this.proposal = undefined
  }

  /** Founders that failed are tried again once their time runs out. */
  expire (now: number): void {
    for (const [k, t] of this.founderFailed) if (t <= now) this.founderFailed.delete(k)
  }

  /**
   * One tick without a view. `forced`: a forced new cluster founds alone once the settle time has passed (the hellos
   * tell the counters in use, so its view is numbered above them). `joinRequests`: who asked me to join meanwhile.
   */
  tick (now: number, peers: PeerDirectory, joinRequests: Iterable<MemberInfo>, forced: boolean): FoundingIntent[] {
    if (this.proposal !== undefined) {
      return now - this.proposal.sentAt > this.firstContactMs() ? this.decide(now) : []
    }
    // Bound to a founder's proposal: wait for its install (or for the binding to run out) and follow no one else,
    // so that the founder's view never holds a member that is in another view.
    if (holds(this.acceptedFounder, now)) return []
    if (forced) return now - this.startedAt >= this.cfg.coldStartSettleMs ? [{ do: 'install', members: [this.me] }] : []
    const recent = this.cfg.failureTimeoutMs
    // 1. Join the best view a live peer reports.
    let best: { coord: MemberInfo | undefined, s: ViewSummary } | undefined
    for (const p of peers.values()) {
      if (p.summary?.view === undefined || now - p.lastHeard > recent) continue
      if (!speaksForItsView(p.member, p.summary)) continue
      if (best === undefined || rankCompare(p.summary, best.s) > 0) best = { coord: p.summary.view.members[0], s: p.summary }
    }
    if (best !== undefined) {
      if (best.coord !== undefined && now - this.lastJoinSent >= this.cfg.heartbeatMs) {
        this.lastJoinSent = now
        return [{ do: 'join', to: best.coord, toView: true }]
      }
      return []
    }
    // 2. Cold start: nobody has a view. Defer to the lowest (name, peer id) among the view-less members heard
    // recently; that founder forms one view holding all of them once the settle time has passed.
    const candidates: MemberInfo[] = [this.me]
    for (const p of peers.values()) {
      if (p.member === undefined || p.summary === undefined || p.summary.view !== undefined) continue
      if (now - p.lastHeard > recent || this.founderFailed.has(memberKey(p.member))) continue
      candidates.push(p.member)
    }
    candidates.sort(byNameThenPeer)
    const founder = candidates[0]!
    if (memberKey(founder) === this.myKey) return this.found(now, candidates, joinRequests)
    const fk = memberKey(founder)
    if (this.founderSince?.key !== fk) this.founderSince = { key: fk, since: now }
    if (now - this.founderSince.since > this.cfg.founderWaitMs) {
      // The founder did not form a view in time (crashed, cut off): try the next one for a while.
      this.founderFailed.set(fk, now + 4 * this.cfg.founderWaitMs)
      this.founderSince = undefined
      return []
    }
    if (now - this.lastJoinSent >= this.cfg.heartbeatMs) {
      this.lastJoinSent = now
      return [{ do: 'join', to: founder, toView: false }]
    }
    return []
  }

  /** I am the lowest view-less member: found the first view once I may. */
  private found (now: number, candidates: MemberInfo[], joinRequests: Iterable<MemberInfo>): FoundingIntent[] {
    this.founderSince = undefined
    if (now - this.startedAt < this.cfg.coldStartSettleMs) return []
    // Not while a coordinator may be admitting me, or another founder I gave way to may propose to me.
    if (holds(this.joinedTo, now) && this.joinedTo.toView) return []
    if (holds(this.deferTo, now)) return []
    const members = new Map<string, MemberInfo>()
    for (const m of candidates) members.set(memberKey(m), m)
    for (const m of joinRequests) members.set(memberKey(m), m)
    const ordered = [...members.values()].filter(m => memberKey(m) !== this.myKey).sort(byNameThenPeer)
    // The first view needs a majority of the expected replicas: two such views would share a member, and a
    // member accepts one proposal at a time, so one view forms even when founders do not hear of each other.
    if (ordered.length + 1 < this.foundingQuorum()) {
      if (this.waitingLogged === ordered.length + 1) return []
      this.waitingLogged = ordered.length + 1
      return [{ do: 'log', msg: 'waiting for a majority of the cluster size to found the first view', fields: { members: ordered.length + 1, need: this.foundingQuorum() } }]
    }
    if (ordered.length === 0) {
      return [{ do: 'forget-joins' }, { do: 'log', msg: 'founding the first view', fields: { members: 1 } }, { do: 'install', members: [this.me] }]
    }
    // Propose rather than install: installing at once would make a view holding members that may already be in
    // another view (an older answer said they had none), and two views of more than one member would coexist. The
    // view is installed only with the candidates that accepted, and not at all when one of them answers that it is
    // in a view (I join that view instead).
    const no = ++this.nextProposalNo
    this.proposal = { no, sentAt: now, waiting: new Set(ordered.map(memberKey)), accepted: new Map(), conflict: undefined }
    return [{ do: 'forget-joins' }, { do: 'propose', no, candidates: ordered }]
  }

  /** A candidate answered proposal `no` (or did not: `reply` undefined). */
  proposalAnswered (no: number, target: MemberInfo, reply: ReplyMessage | undefined, peers: PeerDirectory, now: number): FoundingIntent[] {
    const pr = this.proposal
    if (pr?.no !== no) return []
    const k = memberKey(target)
    pr.waiting.delete(k)
    if (reply !== undefined) {
      if (memberKey(reply.from) === k && reply.ok) pr.accepted.set(k, target)
      else if (reply.summary.view?.members[0] !== undefined) pr.conflict = { who: reply.summary.view.members[0], hasView: true }
      else if (reply.reason === 'promised' && reply.redirect !== undefined) {
        // Bound to a coordinator it asked to join (redirect has a view) or to another founder.
        const toView = peers.get(reply.redirect.address)?.summary?.view !== undefined || reply.joinedView === true
        if (pr.conflict?.hasView !== true) pr.conflict = { who: reply.redirect, hasView: toView }
      }
    }
    return pr.waiting.size === 0 ? this.decide(now) : []
  }

  /** Every candidate answered, or the answers are overdue: found the view, or give way. */
  private decide (now: number): FoundingIntent[] {
    const pr = this.proposal!
    this.proposal = undefined
    if (pr.conflict !== undefined) {
      // A candidate is in a view already, or bound to another founder's proposal: a view of mine would be a rival.
      // Join that view, or that founder when it is lower than me (it admits joiners while it proposes), and found
      // nothing for a while. A higher founder gives way in turn when it meets a member bound to me: I propose again
      // after a heartbeat, when its acceptors are free.
      const c = pr.conflict
      const out: FoundingIntent[] = [
        { do: 'log', msg: 'first view not founded: another one is forming', fields: { other: c.who.name, hasView: c.hasView, accepted: pr.accepted.size } },
        { do: 'release', accepted: [...pr.accepted.values()] }
      ]
      if (memberKey(c.who) !== this.myKey && (c.hasView || byNameThenPeer(c.who, this.me) < 0)) {
        this.deferTo = { founder: c.who, until: now + this.bindingMs() }
        this.lastJoinSent = now
        out.push({ do: 'join', to: c.who, toView: c.hasView })
      } else {
        this.deferTo = { founder: c.who, until: now + this.cfg.heartbeatMs }
      }
      return out
    }
    if (pr.accepted.size === 0) {
      return [{ do: 'log', msg: 'first view not founded: no candidate accepted', fields: { unanswered: pr.waiting.size } }]
    }
    if (pr.accepted.size + 1 < this.foundingQuorum()) {
      return [
        { do: 'log', msg: 'first view not founded: too few accepted', fields: { accepted: pr.accepted.size, unanswered: pr.waiting.size } },
        { do: 'release', accepted: [...pr.accepted.values()] }
      ]
    }
    // Only who accepted: members that asked to join meanwhile are admitted right after (they join my view).
    const members = [...pr.accepted.values()].sort(byNameThenPeer)
    return [{ do: 'log', msg: 'founding the first view', fields: { members: members.length + 1 } }, { do: 'install', members: [this.me, ...members] }]
  }

  /**
   * A founder's proposal. Accepted only by a view-less member that is not bound to another founder; a member
   * proposing itself gives way only to a lower founder. `open`: this member has no view, is not leaving and not
   * forcing a new cluster; otherwise it refuses, and its answer (the reply carries its view summary) tells the
   * founder the view to join instead.
   */
  answerProposal (msg: InstallMessage, open: boolean, now: number): ProposalAnswer {
    const fromKey = memberKey(msg.from)
    if (!open) return { accept: false, reason: 'stale-view' }
    if (!msg.view.members.some(m => memberKey(m) === this.myKey) || msg.view.members[0] === undefined ||
      memberKey(msg.view.members[0]) !== fromKey) {
      return { accept: false, reason: 'invalid' }
    }
    if (holds(this.acceptedFounder, now) && memberKey(this.acceptedFounder.founder) !== fromKey) {
      // The proposer learns which founder I follow and joins it instead of founding a rival view.
      return { accept: false, reason: 'promised', extra: { redirect: this.acceptedFounder.founder } }
    }
    if (holds(this.joinedTo, now) && this.joinedTo.toView && memberKey(this.joinedTo.coord) !== fromKey) {
      // I asked a coordinator to join its view: the proposer should join it too.
      return { accept: false, reason: 'promised', extra: { redirect: this.joinedTo.coord, joinedView: true } }
    }
    let release: MemberInfo[] | undefined
    if (this.proposal !== undefined) {
      if (byNameThenPeer(msg.from, this.me) >= 0) return { accept: false, reason: 'promised', extra: { redirect: this.me } }
      // A lower founder proposes to me while I propose: give way (my proposal is dropped, who accepted it is
      // released and accepts the lower founder's next proposal).
      release = [...this.proposal.accepted.values()]
      this.proposal = undefined
    }
    this.acceptedFounder = { founder: msg.from, until: now + this.bindingMs() }
    return { accept: true, release }
  }

  /** The founder whose proposal binds me, when it is not `fromKey` (an install from another must be refused). */
  boundToOther (fromKey: string, now: number): MemberInfo | undefined {
    return holds(this.acceptedFounder, now) && memberKey(this.acceptedFounder.founder) !== fromKey ? this.acceptedFounder.founder : undefined
  }

  /** `from` dropped the founding proposal I accepted. */
  released (from: MemberInfo): void {
    if (this.acceptedFounder !== undefined && memberKey(this.acceptedFounder.founder) === memberKey(from)) this.acceptedFounder = undefined
  }

  /**
   * Cold start: a view-less member joins the founder it deferred to. I admit the joiners if I would found (no lower
   * joiner), or while I propose (they are admitted right after my view is installed).
   */
  admitsJoiners (joiners: MemberInfo[]): boolean {
    return !joiners.some(j => byNameThenPeer(j, this.me) < 0) || this.proposal !== undefined
  }

  /**
   * I asked `to` to join (`toView`: it is said to be the coordinator of a view, not a view-less founder). A view-less
   * member that asks to join is bound to that view (or founder) for a while: it accepts no other founder's proposal
   * meanwhile, and founds no view of its own while a coordinator may be admitting it, or it could end up in two views.
   */
  joinSent (to: MemberInfo, toView: boolean, now: number): void {
    this.joinedTo = { coord: to, toView, until: now + this.bindingMs() }
  }

  /** A join of mine to `to` could not be delivered (`connectionFailed`: refused or closed), or was refused. */
  joinFailed (to: MemberInfo, connectionFailed: boolean, now: number): void {
    if (connectionFailed && this.founderSince?.key === memberKey(to)) {
      this.founderFailed.set(memberKey(to), now + 4 * this.cfg.founderWaitMs)
      this.founderSince = undefined
    }
  }

  /** `to` refused my join: redirected to another (the caller joins it), or not bound to `to` any longer. */
  joinRefused (to: MemberInfo, redirect: MemberInfo | undefined, now: number): FoundingIntent[] {
    if (redirect !== undefined) {
      this.lastJoinSent = now
      return [{ do: 'join', to: redirect, toView: true }]
    }
    if (this.joinedTo !== undefined && memberKey(this.joinedTo.coord) === memberKey(to)) this.joinedTo = undefined
    return []
  }
}
