/**
 * What a member knows of the cluster's configurations and numbering, the part of its state that is persisted:
 * the last committed primary view, a newer claimed one it promised for (pending), the highest epoch it promised to
 * or led, the highest epoch it heard of, and the highest view counters seen and applied. Everything here only moves
 * forward; a change marks the state dirty and the machine persists it before acting on anything else.
 * docs/cluster-protocol.md, "Configurations and quorums", says why each is kept.
 */
import { ZERO_EPOCH, compareEpochs, type Epoch } from '../../common/epoch.js'
import type { ConfigRef, MemberInfo, ViewData, ViewSummary } from '../messages.js'
import type { PersistedClusterState } from './types.js'
import { sameViewId } from './view.js'

const copyConfig = (c: ConfigRef): ConfigRef => ({ id: { ...c.id }, members: c.members.map(m => ({ ...m })) })

export class ConfigState {
  /** The last primary view known committed: quorums count against it. */
  private committedRef: ConfigRef | undefined
  /**
   * A claimed view I applied (and promised for, or claimed myself) whose commit I have not heard of. Persisted: a
   * restarted voter still counts it, or it could vote for a candidate that knows only an older configuration.
   */
  private pendingRef: ConfigRef | undefined
  /** Highest epoch I promised to or led; lower epochs are refused. */
  private highest: Epoch
  /** Highest epoch heard of (failed claims included): new claims are numbered above it. */
  private seen: Epoch
  /** Highest view counter seen: a new view is numbered above it, so a counter is never reused. */
  private counterSeen: number
  /** Highest view counter applied: a member (any incarnation) never applies an older view. */
  private counterApplied: number
  /** `VECTIS_FORCE_NEW_CLUSTER`, until this member's first view is installed. */
  private forcing: boolean
  private dirty = false

  constructor (persisted: PersistedClusterState | undefined, forceNewCluster: boolean) {
    this.highest = persisted?.highestEpoch ?? ZERO_EPOCH
    this.seen = this.highest
    this.counterSeen = persisted?.maxCounter ?? 0
    this.counterApplied = persisted?.maxApplied ?? 0
    this.committedRef = persisted?.committed
    const pending = persisted?.pending
    if (pending !== undefined && pending.id.counter > (this.committedRef?.id.counter ?? 0)) this.pendingRef = pending
    this.forcing = forceNewCluster
  }

  get committed (): ConfigRef | undefined { return this.committedRef }
  get pending (): ConfigRef | undefined { return this.pendingRef }
  get highestEpoch (): Epoch { return this.highest }
  get seenEpoch (): Epoch { return this.seen }
  get maxCounter (): number { return this.counterSeen }
  get maxApplied (): number { return this.counterApplied }
  /** A forced new cluster whose first view is not installed yet. */
  get forced (): boolean { return this.forcing }

  /**
   * The operator's way out (`VECTIS_FORCE_NEW_CLUSTER`): `me` alone is the new primary configuration, numbered
   * above every counter this member saw; the old one is forgotten.
   */
  forgetForNewCluster (me: MemberInfo): void {
    this.counterSeen += 1
    this.committedRef = { id: { coordinator: me.name, counter: this.counterSeen }, members: [me] }
    this.pendingRef = undefined
    this.dirty = true
  }

  /** The forced configuration is numbered as the first view it installs (above everything heard meanwhile). */
  installForced (me: MemberInfo, counter: number): void {
    this.forcing = false
    this.committedRef = { id: { coordinator: me.name, counter }, members: [me] }
    this.dirty = true
  }

  /** The highest configuration counter known, committed or pending. */
  configCounter (): number {
    return Math.max(this.committedRef?.id.counter ?? 0, this.pendingRef?.id.counter ?? 0)
  }

  noteCounter (c: number): void {
    if (c > this.counterSeen) {
      this.counterSeen = c
      this.dirty = true
    }
  }

  noteApplied (c: number): void {
    if (c > this.counterApplied) {
      this.counterApplied = c
      this.dirty = true
    }
  }

  noteEpoch (e: Epoch | undefined): void {
    if (e !== undefined && compareEpochs(e, this.seen) > 0) this.seen = e
  }

  raiseHighest (e: Epoch): void {
    this.noteEpoch(e)
    if (compareEpochs(e, this.highest) > 0) {
      this.highest = e
      this.dirty = true
    }
  }

  /** An epoch for a new claim by `leader`: above every epoch seen or promised. */
  newEpoch (leader: string): Epoch {
    const base = compareEpochs(this.seen, this.highest) > 0 ? this.seen : this.highest
    return { number: base.number + 1, leader }
  }

  /** The counter of a view this member installs now: above everything seen, applied and `current`. */
  nextViewCounter (current: number): number {
    this.counterSeen = Math.max(this.counterSeen, this.counterApplied, current) + 1
    this.dirty = true
    return this.counterSeen
  }

  /** The counter a founding proposal would get (not reserved: the install takes the next counter). */
  proposalCounter (): number { return Math.max(this.counterSeen, this.counterApplied) + 1 }

  /**
   * Learns configurations from another member's summary. Safe: a committed primary view was acknowledged by a
   * quorum, and a pending one only makes my quorums stricter; it keeps candidates from being refused for knowing
   * less. Returns the configurations adopted (their members may include earlier incarnations of mine).
   */
  adopt (s: ViewSummary): ConfigRef[] {
    const adopted: ConfigRef[] = []
    if (s.committed !== undefined && s.committed.id.counter > (this.committedRef?.id.counter ?? 0)) {
      this.committedRef = copyConfig(s.committed)
      adopted.push(this.committedRef)
      if (this.pendingRef !== undefined && this.pendingRef.id.counter <= this.committedRef.id.counter) this.pendingRef = undefined
      this.dirty = true
    }
    if (s.pending !== undefined && s.pending.id.counter > this.configCounter()) {
      this.setPending(copyConfig(s.pending))
      adopted.push(this.pendingRef!)
    }
    return adopted
  }

  setPending (c: ConfigRef | undefined): void {
    if (c === this.pendingRef) return
    this.pendingRef = c
    this.dirty = true
  }

  /** `view` is the committed primary view now. */
  commit (view: ViewData): void {
    this.committedRef = { id: view.id, members: view.members }
    this.pendingRef = undefined
    this.dirty = true
  }

  isPrimary (view: ViewData | undefined): boolean {
    return sameViewId(this.committedRef?.id, view?.id)
  }

  /** The configurations a claim for `proposed` needs quorums of: the committed, the pending and the proposed one. */
  quorumConfigs (proposed: ViewData): ConfigRef[] {
    const list: ConfigRef[] = []
    const add = (c: ConfigRef | undefined): void => {
      if (c !== undefined && !list.some(x => sameViewId(x.id, c.id))) list.push(c)
    }
    add(this.committedRef)
    add(this.pendingRef)
    add({ id: proposed.id, members: proposed.members })
    return list
  }

  /** The configurations a lease round needs quorums of: the committed one and a pending one beside it. */
  leaseConfigs (): ConfigRef[] {
    const configs: ConfigRef[] = []
    if (this.committedRef !== undefined) configs.push(this.committedRef)
    if (this.pendingRef !== undefined && (this.committedRef === undefined || this.pendingRef.id.counter !== this.committedRef.id.counter)) configs.push(this.pendingRef)
    return configs
  }

  /** Members of the committed and pending configurations. */
  configMembers (): MemberInfo[] {
    return [...this.committedRef?.members ?? [], ...this.pendingRef?.members ?? []]
  }

  snapshot (member: MemberInfo): PersistedClusterState {
    return {
      highestEpoch: this.highest,
      maxCounter: this.counterSeen,
      maxApplied: this.counterApplied,
      ...(this.committedRef !== undefined ? { committed: this.committedRef } : {}),
      ...(this.pendingRef !== undefined ? { pending: this.pendingRef } : {}),
      member
    }
  }

  /** Whether something changed since the last call (and must be persisted before acting). */
  takeDirty (): boolean {
    const d = this.dirty
    this.dirty = false
    return d
  }
}
