/**
 * Votes and leases: the promise this member gave (a vote for a candidate, or its acknowledgement of a leader's
 * lease round), its own leadership (epoch and lease expiry on its clock), the rounds it runs as coordinator (view
 * installs and heartbeats; with a claim, they ask for promises and renew the lease), the election back-off and the
 * hand-over in progress. docs/cluster-protocol.md, "Leadership", says why the lease cannot outlive its promises.
 */
import { compareEpochs, sameEpoch, type Epoch } from '../../common/epoch.js'
import type { DemotionReason } from '../leadership-api.js'
import { memberKey, provesReplacement, type ConfigRef, type MemberInfo, type Replacement, type ViewData } from '../messages.js'
import type { MembershipConfig } from './config.js'
import type { MembershipEvent } from './types.js'

/** A round of requests to the members of a view: an install, or a heartbeat; with `claim`, promises are asked. */
export interface Round {
  no: number
  kind: 'heartbeat' | 'install'
  sentAt: number
  epoch: Epoch
  claim: boolean
  /** A claim under a new epoch (an election), not the renewal of a lease. */
  election: boolean
  view: ViewData
  /** The configurations whose quorums the claim needs. */
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

/** My promise: to support `leaderKey` at `epoch` until `until` (my clock). */
interface PromiseGiven {
  epoch: Epoch
  leaderKey: string
  until: number
}

/** My leadership while I have one: the lease runs out at `expiry` (my clock). */
interface Leadership {
  epoch: Epoch
  expiry: number
}

export class Votes {
  private promise: PromiseGiven | undefined
  private lead: Leadership | undefined
  private readonly rounds = new Map<number, Round>()
  private nextRoundNo = 0
  /** No election before this (my clock). */
  private backoffUntil = 0
  /** A member of my view knows a higher epoch: lead on under a higher one at the next tick. */
  private reelectWanted = false
  /** Handing my leadership (at `epoch`) over to `to`: until it leads, or `until`, I neither lead nor install. */
  private handover: { until: number, to: MemberInfo, epoch: Epoch } | undefined

  constructor (private readonly cfg: MembershipConfig, private readonly myKey: string) {}

  // ---- my leadership

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

  /** Whether I hold a leadership (its lease may have run out: `isLeader` tells). */
  get leading (): boolean { return this.lead !== undefined }
  get leaderEpoch (): Epoch | undefined { return this.lead?.epoch }
  /** When the lease of my leadership runs out, if I have one. */
  get leaseExpiry (): number | undefined { return this.lead?.expiry }

  become (epoch: Epoch, expiry: number): MembershipEvent {
    this.lead = { epoch, expiry }
    return { type: 'leader:elected', epoch }
  }

  /** Ends my leadership, if I have one; `leaseEnd` is when the lease really ended (≤ now). */
  demote (reason: DemotionReason, now: number): Extract<MembershipEvent, { type: 'leader:demoted' }> | undefined {
    if (this.lead === undefined) return undefined
    const epoch = this.lead.epoch
    const leaseEnd = Math.min(now, this.lead.expiry)
    this.lead = undefined
    return { type: 'leader:demoted', epoch, reason, leaseEnd }
  }

  /** A lease round of my leadership at `epoch` was acknowledged by a quorum: the lease lasts until `expiry`. */
  extend (epoch: Epoch, expiry: number): void {
    if (this.lead !== undefined && sameEpoch(this.lead.epoch, epoch) && expiry > this.lead.expiry) this.lead.expiry = expiry
  }

  // ---- my promise

  /** The promise I hold now, if any. */
  promised (now: number): PromiseGiven | undefined {
    return this.promise !== undefined && this.promise.until > now ? this.promise : undefined
  }

  /** The leader (member key) of my last promise, whether or not it still binds me. */
  get lastPromisedTo (): string | undefined { return this.promise?.leaderKey }

  /**
   * Whether this member may promise its support to `leaderKey` for `epoch`: not while promised to another live leader
   * (unless that leader handed over, or is dead, or `evidence` shows another incarnation at its address), and never
   * below my highest epoch, nor at it for another leader.
   */
  canPromise (epoch: Epoch, leaderKey: string, highest: Epoch, now: number, isDead: (k: string) => boolean,
    handoverFrom?: Epoch, evidence?: Replacement): boolean {
    const p = this.promise
    if (p !== undefined && p.until > now && p.leaderKey !== leaderKey) {
      const handedOver = handoverFrom !== undefined && sameEpoch(handoverFrom, p.epoch)
      const leaderDead = isDead(p.leaderKey) ||
        (evidence !== undefined && memberKey(evidence.dead) === p.leaderKey && provesReplacement(evidence))
      if (!handedOver && !leaderDead) return false
    }
    // Lower epochs are ignored; a new leader needs a strictly higher epoch than any this member supported.
    const c = compareEpochs(epoch, highest)
    if (c < 0) return false
    if (c === 0 && p !== undefined && p.leaderKey !== leaderKey) return false
    return true
  }

  /** Promise to `leaderKey` at `epoch` for FT + margin (the caller raises its highest epoch to it). */
  give (epoch: Epoch, leaderKey: string, now: number): void {
    this.promise = { epoch, leaderKey, until: now + this.cfg.promiseMs }
  }

  /** `leaderKey` dropped its failed claim at `epoch`: my promise for it goes. True if it was mine. */
  release (epoch: Epoch, leaderKey: string): boolean {
    if (this.promise === undefined || !sameEpoch(this.promise.epoch, epoch) || this.promise.leaderKey !== leaderKey) return false
    this.promise = undefined
    return true
  }

  // ---- rounds

  newRound (kind: Round['kind'], view: ViewData, epoch: Epoch, claim: boolean, election: boolean, configs: ConfigRef[], now: number): Round {
    const r: Round = {
      no: ++this.nextRoundNo,
      kind,
      sentAt: now,
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

  round (no: number | undefined): Round | undefined { return no === undefined ? undefined : this.rounds.get(no) }

  /**
   * What member `k` answered in round `r`: acknowledged (`promise`: with a promise), refused (`promised`: still
   * promised to another leader), gone (another process answered, or the connection was refused or closed), or no
   * answer in time.
   */
  recordAnswer (r: Round, k: string, a: 'ack' | 'promise' | 'refused' | 'promised' | 'gone' | 'no-answer'): void {
    if (a === 'gone') { r.hardFail.add(k); return }
    r.answered.add(k)
    if (a === 'promise' && r.claim) r.acks.add(k)
    if (a === 'refused' || a === 'promised') r.hardFail.add(k)
    if (a === 'promised') r.promised.add(k)
  }

  /** An install round is still waiting for answers. */
  installing (): boolean {
    for (const r of this.rounds.values()) if (r.kind === 'install' && !r.resolved) return true
    return false
  }

  /** Rounds resolved or overdue are dropped; the overdue ones (unresolved) are returned, to be failed. */
  expire (now: number): Round[] {
    const overdue: Round[] = []
    for (const [no, r] of this.rounds) {
      if (r.resolved || now - r.sentAt > this.cfg.requestTimeoutMs * 2 + this.cfg.heartbeatMs) {
        if (!r.resolved) overdue.push(r)
        this.rounds.delete(no)
      }
    }
    return overdue
  }

  /** Every round is over (a hand-over passed my leadership on). */
  resolveAll (): void { for (const r of this.rounds.values()) r.resolved = true }

  /**
   * Where a round stands after an answer: a claim `succeeded` or `failed` once its quorums are met or no longer
   * possible (it is then resolved); a round without a claim is resolved once everyone answered.
   */
  evaluate (r: Round, quorumOk: (acks: Set<string>) => boolean): 'succeeded' | 'failed' | 'open' {
    if (r.resolved) return 'open'
    if (!r.claim) {
      if (r.answered.size + r.hardFail.size >= r.targets.size) r.resolved = true
      return 'open'
    }
    if (quorumOk(r.acks)) {
      r.resolved = true
      return 'succeeded'
    }
    // Could the round still succeed with the members that have not answered?
    const possible = new Set(r.acks)
    for (const k of r.targets.keys()) if (!r.answered.has(k) && !r.hardFail.has(k)) possible.add(k)
    if (!quorumOk(possible)) {
      r.resolved = true
      return 'failed'
    }
    return 'open'
  }

  /**
   * An election of mine failed: the promise I gave myself for it goes (unless I lead). Refused only by members still
   * promised to the old leader: they are proving its death as I did (a crash seen by all at once), so the next try
   * comes soon (`soon`); any other refusal may be a rival candidate: back off longer.
   */
  electionFailed (r: Round, now: number, jitter: number): void {
    r.resolved = true
    if (this.promise !== undefined && sameEpoch(this.promise.epoch, r.epoch) && this.lead === undefined) this.promise = undefined
    const onlyPromised = r.hardFail.size > 0 && [...r.hardFail].every(k => r.promised.has(k))
    this.backoffUntil = now + (onlyPromised ? this.cfg.heartbeatMs / 5 : this.cfg.heartbeatMs) * (1 + jitter)
  }

  /** The latest of my claim rounds: a lease renewal that fails for good ends my leadership only if it is the latest. */
  latestClaimRoundNo (): number {
    let n = 0
    for (const r of this.rounds.values()) if (r.claim && r.no > n) n = r.no
    return n
  }

  // ---- election pacing and hand-over

  mayElect (now: number): boolean { return now >= this.backoffUntil }
  backOff (until: number): void { this.backoffUntil = until }
  /** Elect at the next tick, whatever back-off was set (the leader I was promised to is proven dead). */
  electNow (now: number): void { this.backoffUntil = Math.min(this.backoffUntil, now) }

  wantReelection (): void { this.reelectWanted = true }
  /** Whether a re-election was wanted; the wish is consumed. */
  takeReelection (): boolean {
    const r = this.reelectWanted
    this.reelectWanted = false
    return r
  }

  startHandover (to: MemberInfo, epoch: Epoch, now: number): void { this.handover = { until: now + this.cfg.promiseMs, to, epoch } }
  get handingOver (): boolean { return this.handover !== undefined }

  /**
   * My successor `from` leads, if it is my successor: with quorum `majority` it claimed a lease at `epoch`, which must
   * be above the one I handed over; with quorum `none` (`claimed` false) it coordinates a view, and that is leading.
   * Returns the completed hand-over.
   */
  handoverDone (from: MemberInfo, epoch: Epoch, claimed: boolean): { to: MemberInfo, epoch: Epoch } | undefined {
    const h = this.handover
    if (h === undefined || memberKey(h.to) !== memberKey(from) || (claimed && compareEpochs(epoch, h.epoch) <= 0)) return undefined
    this.handover = undefined
    return { to: h.to, epoch }
  }

  /** The hand-over failed for good (the successor refused, or could not be reached): it is over. */
  handoverFailed (): MemberInfo | undefined {
    const to = this.handover?.to
    this.handover = undefined
    return to
  }

  /** At each tick: a hand-over whose successor did not lead within FT + margin is over; returns its target then. */
  expireHandover (now: number): MemberInfo | undefined {
    if (this.handover === undefined || now < this.handover.until) return undefined
    return this.handoverFailed()
  }

  /** For diagnostics. */
  debugState (now: number): Record<string, unknown> {
    return {
      promise: this.promise !== undefined ? `${this.promise.epoch.number}/${this.promise.leaderKey} for ${(this.promise.until - now).toFixed(0)}` : undefined,
      lead: this.lead !== undefined ? `${this.lead.epoch.number} for ${(this.lead.expiry - now).toFixed(0)}` : undefined,
      backoff: Math.max(0, this.backoffUntil - now).toFixed(0),
      handingOver: this.handover !== undefined
    }
  }
}
