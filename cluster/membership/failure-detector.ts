/**
 * Failure detection: per watched member, when it was last heard, whether it is suspected and why, its refusal
 * streak, the direct and indirect probes of a suspicion; and the departures: verified deaths (certain, or evidence
 * only when proven by refused connections), deaths reported by an outside authority, graceful leaves.
 *
 * The machine decides when to watch, suspect and probe, and sends the probes; this part keeps the evidence and
 * answers what it proves (docs/cluster-protocol.md, "Failure detection" and "Verified death").
 */
import { memberKey, type MemberInfo, type Replacement } from '../messages.js'

interface Health {
  member: MemberInfo
  /** When its silence started: when it last spoke, or when I started watching it. */
  lastHeard: number
  /**
   * When it last spoke to me, or its clocks were (re)started as a member of my view (`clear`); undefined when only
   * watched (e.g. a configuration member probed, never heard).
   */
  spokeAt?: number
  /** Last acknowledgement that carried a promise to my leadership. */
  lastPromiseAck?: number
  suspectedSince?: number
  refusedSince?: number
  lastRefused?: number
  directFailedAt?: number
  indirectUnreachableAt?: number
  indirectFoundAt?: number
  lastPing?: number
  lastProbe?: number
  probeInFlight?: boolean
  /** It answered that it follows another view: it left mine (a merge brings it back). */
  departed?: boolean
}

export interface FailureDetectorTimings {
  heartbeatMs: number
  failureTimeoutMs: number
  /** How long a promise binds its giver: a dead member stops counting this long after its death was verified. */
  promiseMs: number
  /** Connections refused for this long verify a death. */
  refusedDeathMs: number
}

/** Why a member of a configuration no longer counts in its quorums (see `discountReason`). */
export type DiscountReason = 'left' | 'promised-to-me' | 'died'

export class FailureDetector {
  private readonly health = new Map<string, Health>()
  /** Verified deaths: member key → when verified (certain, or evidence when also in `onlyRefused`). */
  private readonly dead = new Map<string, number>()
  /** Deaths verified only by refused connections (revoked if the member speaks again). */
  private readonly onlyRefused = new Set<string>()
  /** `name/incarnation` reported dead by an outside authority (kept: the member may only become known later). */
  private readonly externalDead = new Set<string>()
  /** Members that left gracefully. */
  private readonly left = new Set<string>()
  /** The last proof that a member's process was replaced: another incarnation answered at its address. */
  private replaced: Replacement | undefined

  constructor (private readonly t: FailureDetectorTimings, private readonly myKey: string) {}

  // ---- watching

  /** The member's record, created (heard "now") when it is not watched yet. */
  private watch (m: MemberInfo, now: number): Health {
    const k = memberKey(m)
    let h = this.health.get(k)
    if (h === undefined) {
      h = { member: m, lastHeard: now }
      this.health.set(k, h)
    }
    return h
  }

  /** Watches `m` from now on if it is not watched yet. */
  ensureWatched (m: MemberInfo, now: number): void { this.watch(m, now) }

  /** How long `m` has been silent (a member not watched yet starts being watched now). */
  silence (m: MemberInfo, now: number): number { return now - this.watch(m, now).lastHeard }

  /** When I last heard from the member of key `k`, if I watch it. */
  lastHeard (k: string): number | undefined { return this.health.get(k)?.lastHeard }

  /** `m` spoke to me (a heartbeat, an install): its silence starts again. */
  touch (m: MemberInfo, now: number): void {
    const h = this.watch(m, now)
    h.lastHeard = now
    h.spokeAt = now
  }

  isSuspected (k: string): boolean { return this.health.get(k)?.suspectedSince !== undefined }

  suspected (): MemberInfo[] {
    return [...this.health.values()].filter(h => h.suspectedSince !== undefined).map(h => h.member)
  }

  /** Longest silence among `watched` (members without a record count as heard). */
  longestSilence (watched: MemberInfo[], now: number): number {
    let max = 0
    for (const m of watched) {
      const h = this.health.get(memberKey(m))
      if (h !== undefined) max = Math.max(max, now - h.lastHeard)
    }
    return max
  }

  /** True when `m` newly became suspected (the machine reports it). */
  suspect (m: MemberInfo, now: number): boolean {
    if (memberKey(m) === this.myKey) return false
    const h = this.watch(m, now)
    if (h.suspectedSince !== undefined) return false
    h.suspectedSince = now
    return true
  }

  /** Anything heard from `k` (its request or reply) clears a suspicion and revokes a death proven by refusals only. */
  heard (k: string, now: number): void {
    const h = this.health.get(k)
    if (h !== undefined) this.clear(h, now)
    if (this.onlyRefused.delete(k)) {
      // Refusals were evidence, not proof (a resetting partition): it speaks again, so it is alive.
      this.dead.delete(k)
    }
  }

  /** `m` answered a round: alive, and (with `promise`) promised to my leadership now. */
  answered (m: MemberInfo, now: number, promise: boolean): void {
    const h = this.watch(m, now)
    this.clear(h, now)
    if (promise) h.lastPromiseAck = now
  }

  private clear (h: Health, now: number): void {
    h.lastHeard = now
    h.spokeAt = now
    h.refusedSince = undefined
    h.lastRefused = undefined
    h.suspectedSince = undefined
    h.directFailedAt = undefined
    h.indirectUnreachableAt = undefined
  }

  /** A connection to `m` was refused or closed: its refusal streak goes on. True once it proves the death. */
  noteRefused (m: MemberInfo, now: number): boolean {
    const h = this.watch(m, now)
    if (h.refusedSince === undefined) h.refusedSince = now
    h.lastRefused = now
    return h.lastRefused - h.refusedSince >= this.t.refusedDeathMs
  }

  /** `k` answered that it follows another view. */
  markDeparted (k: string): void {
    const h = this.health.get(k)
    if (h !== undefined) h.departed = true
  }

  // ---- probes

  /** Whether to send a direct probe (dial-back) to `m` now: one at a time, at most every HB/5. */
  directProbeDue (m: MemberInfo, now: number): boolean {
    const h = this.watch(m, now)
    if (h.probeInFlight === true || (h.lastProbe !== undefined && now - h.lastProbe < this.t.heartbeatMs / 5)) return false
    h.lastProbe = now
    h.probeInFlight = true
    return true
  }

  /** A member of a configuration outside my view is probed at most every HB/2 (`probeConfigMembers`). */
  configProbeDue (m: MemberInfo, now: number): boolean {
    const h = this.watch(m, now)
    if (h.lastProbe !== undefined && now - h.lastProbe < this.t.heartbeatMs / 2) return false
    h.lastProbe = now
    return true
  }

  /** A direct probe of `k` came back (answered or not). False when `k` is not watched. */
  probeReturned (k: string): boolean {
    const h = this.health.get(k)
    if (h === undefined) return false
    h.probeInFlight = false
    return true
  }

  /** A direct probe of suspected `k` failed. */
  directProbeFailed (k: string, now: number): void {
    const h = this.health.get(k)
    if (h?.suspectedSince !== undefined) h.directFailedAt = now
  }

  /**
   * Whether to ask helpers for an indirect probe of suspected `m` now (at most every HB), and the window they should
   * answer for: "heard from it since I began to suspect it?" (a process killed a moment ago spoke to everyone).
   */
  indirectProbeDue (m: MemberInfo, now: number): { withinMs: number } | undefined {
    const h = this.watch(m, now)
    if (h.lastPing !== undefined && now - h.lastPing < this.t.heartbeatMs) return undefined
    h.lastPing = now
    return { withinMs: Math.max(0, Math.min(2 * this.t.heartbeatMs, now - (h.suspectedSince ?? now))) }
  }

  /** A helper's answer about suspected `k`: it heard from it lately (`found`), or could not reach it. */
  indirectResult (k: string, now: number, result: 'found' | 'unreachable'): void {
    const h = this.health.get(k)
    if (h?.suspectedSince === undefined) return
    if (result === 'found') h.indirectFoundAt = now
    else h.indirectUnreachableAt = now
  }

  /**
   * Members no longer in my view whose connections are being refused: probed on until the refusals prove the
   * death (the election after a crash needs that proof from its voters). A streak with no refusal for a while (it
   * times out instead, or moved) is dropped. Returns the members due for a direct probe now.
   */
  refusingOutsideView (now: number, inView: (k: string) => boolean): MemberInfo[] {
    const due: MemberInfo[] = []
    for (const [k, h] of this.health) {
      if (h.refusedSince === undefined || this.dead.has(k) || inView(k)) continue
      if (now - (h.lastRefused ?? h.refusedSince) > this.t.refusedDeathMs) {
        this.health.delete(k)
        continue
      }
      if (this.directProbeDue(h.member, now)) due.push(h.member)
    }
    return due
  }

  /**
   * A suspicion confirmed by probes: the direct probe failed, the suspicion is at least HB old, no helper heard from
   * it within FT, and (when `members` holds helpers: members other than me and it, not suspected) one helper could
   * not reach it for HB/2 of the suspicion.
   */
  verifiedUnreachable (k: string, now: number, members: MemberInfo[]): boolean {
    if (this.dead.has(k)) return true
    const h = this.health.get(k)
    if (h?.suspectedSince === undefined || h.directFailedAt === undefined) return false
    if (now - h.suspectedSince < this.t.heartbeatMs) return false
    if (h.indirectFoundAt !== undefined && now - h.indirectFoundAt < this.t.failureTimeoutMs) return false
    if (this.helpers(members, k).length === 0) return true
    return h.indirectUnreachableAt !== undefined && h.indirectUnreachableAt - h.suspectedSince >= this.t.heartbeatMs / 2
  }

  /** Whether a coordinator drops `k` from its next view: it left, died, departed, or is verified unreachable. */
  gone (k: string, now: number, members: MemberInfo[]): boolean {
    const h = this.health.get(k)
    return this.left.has(k) || this.dead.has(k) || h?.departed === true || (h !== undefined && this.verifiedUnreachable(k, now, members))
  }

  /** Of `members`, those not me, not `except` and not suspected: who can probe `except` for me. */
  helpers (members: MemberInfo[], except: string): MemberInfo[] {
    return members.filter(x => memberKey(x) !== this.myKey && memberKey(x) !== except && !this.isSuspected(memberKey(x)))
  }

  // ---- views

  /** `k` left my view: its record goes, except a refusal streak, which goes on until it proves the death. */
  leftView (k: string): void {
    const h = this.health.get(k)
    this.health.delete(k)
    if (h?.refusedSince !== undefined && !this.dead.has(k)) {
      this.health.set(k, { member: h.member, lastHeard: h.lastHeard, refusedSince: h.refusedSince, ...(h.lastRefused !== undefined ? { lastRefused: h.lastRefused } : {}) })
    }
  }

  /** `m` is in my new view (`isNew`: it was not in the previous one, so its clocks start again). */
  inView (m: MemberInfo, now: number, isNew: boolean): void {
    const h = this.watch(m, now)
    h.departed = false
    if (isNew) this.clear(h, now)
  }

  /** A new view restarts the clocks of the coordinator's failure detector. */
  restart (m: MemberInfo, now: number): void { this.clear(this.watch(m, now), now) }

  /** How a member that is not in my new view left it. */
  departure (k: string): 'left' | 'dead' | 'excluded' {
    return this.left.has(k) ? 'left' : this.dead.has(k) ? 'dead' : 'excluded'
  }

  // ---- deaths and leaves

  isDead (k: string): boolean { return this.dead.has(k) }
  /** Dead by proof, not only by refused connections. */
  certainlyDead (k: string): boolean { return this.dead.has(k) && !this.onlyRefused.has(k) }
  hasLeft (k: string): boolean { return this.left.has(k) }

  /**
   * Records a verified death; true when it is new (or proof replaces the evidence of refusals). Refusals alone are
   * evidence, kept apart; proof restarts the FT + margin before the death stops counting.
   */
  markDead (m: MemberInfo, how: string, now: number): boolean {
    const k = memberKey(m)
    if (k === this.myKey) return false
    if (how === 'refused') {
      if (this.dead.has(k)) return false
      this.onlyRefused.add(k)
    } else {
      const upgraded = this.onlyRefused.delete(k)
      if (this.dead.has(k) && !upgraded) return false
    }
    this.dead.set(k, now)
    return true
  }

  /** An earlier incarnation of mine (this process replaced it): certainly dead, recorded without further ado. */
  markOldSelf (m: MemberInfo, now: number): void {
    const k = memberKey(m)
    if (!this.dead.has(k)) this.dead.set(k, now)
  }

  /** An outside authority reported `m` dead (maybe before this member knew it). */
  reportedDead (m: MemberInfo): boolean { return this.externalDead.has(`${m.name}/${m.incarnation}`) }

  /**
   * An outside authority (Kubernetes) shows the process of pod `name` gone (deleted, or its container restarted), and
   * names its `incarnation` when the pod's annotation did: that one is dead (remembered: it may become known later).
   * A report can come late (a re-list after a gap in the watch), when a new process of the pod already speaks, so
   * for the other incarnations of the name (or all, without an incarnation) it is only evidence: one outside my view
   * that has not spoken lately is dead (an earlier process, e.g. in a configuration I restarted with); one in my view,
   * or that spoke lately, is returned in `probe`: the answer at its address tells (another incarnation proves it
   * replaced, refusals start the usual streak, the same one is alive).
   */
  externalDeath (name: string, incarnation: string | undefined, known: MemberInfo[], inView: (k: string) => boolean, now: number): { dead: MemberInfo[], probe: MemberInfo[] } {
    if (incarnation !== undefined) this.externalDead.add(`${name}/${incarnation}`)
    const dead: MemberInfo[] = []
    const probe: MemberInfo[] = []
    for (const m of known) {
      const k = memberKey(m)
      if (m.name !== name || k === this.myKey) continue
      if (m.incarnation === incarnation) {
        dead.push(m)
        continue
      }
      const h = this.health.get(k)
      const spokeLately = h?.spokeAt !== undefined && now - h.spokeAt < this.t.heartbeatMs && h.suspectedSince === undefined
      if (inView(k) || spokeLately) probe.push(m)
      else dead.push(m)
    }
    return { dead, probe }
  }

  /** `k` left gracefully. */
  markLeft (k: string): void { this.left.add(k) }

  /** `k` asks to join again: what was recorded of its departure no longer holds. */
  forgetDeparture (k: string): void {
    this.dead.delete(k)
    this.left.delete(k)
  }

  get replacedBy (): Replacement | undefined { return this.replaced }
  /** Another incarnation (`found`) answered at `dead`'s address: objective evidence, passed on to voters. */
  noteReplaced (dead: MemberInfo, found: MemberInfo): void { this.replaced = { dead, found } }

  /**
   * Why `k` no longer counts in a configuration's quorums, if it does not: it left gracefully (`left`), it died while
   * promised to my leadership (`promised-to-me`), or it died and nothing more is known (`died`: the replaced leader,
   * or a death verified FT + margin ago). The last kind says nothing about what the dead process knew.
   */
  discountReason (k: string, replacedLeaderKey: string | undefined, now: number, leading: boolean): DiscountReason | undefined {
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
    if (leading && h?.lastPromiseAck !== undefined && deadAt - h.lastPromiseAck < this.t.failureTimeoutMs) return 'promised-to-me'
    // A dead member's last promise has run out FT + margin after its death was verified.
    if (now - deadAt >= this.t.promiseMs) return 'died'
    return undefined
  }

  /** For diagnostics. */
  debugState (now: number): { dead: string[], left: string[], onlyRefused: string[] } {
    return {
      dead: [...this.dead].map(([k, t]) => `${k}@${(now - t).toFixed(0)}`),
      left: [...this.left],
      onlyRefused: [...this.onlyRefused]
    }
  }
}
