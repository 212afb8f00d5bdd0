/**
 * The cluster wire messages: one discriminated union, JSON-serialisable (the transport sends JSON), every message
 * carrying the protocol version `v`, the cluster name, the sender's identity and the highest epoch it knows.
 *
 * Every request is answered by a `reply` (the transport's request/response): the reply is the acknowledgement the
 * lease and view rounds count. See `docs/cluster-protocol.md` for the rules.
 *
 * Versioning: a member sends `PROTOCOL_VERSION` and understands `PROTOCOL_VERSION` and `PROTOCOL_VERSION - 1`;
 * fields a version does not know are ignored, so a later version adds optional fields only. A message of a version
 * outside that window is refused (`decodeMessage`): the receiver logs one warning per peer and counts it
 * (`vectis_cluster_incompatible_peers_total`); the sender's request fails as invalid.
 */
import type { Epoch } from './leadership-api.js'

export const PROTOCOL_VERSION = 2
export const OLDEST_UNDERSTOOD_VERSION = PROTOCOL_VERSION - 1

/** A member: a process incarnation. A restarted process is a new member (new incarnation). */
export interface MemberInfo {
  name: string
  peerId: string
  incarnation: string
  /** "ip:port" of its cluster transport. */
  address: string
}

/** `(coordinator, counter)`: the counter continues from the highest ever seen and is never reused. */
export interface ViewId {
  coordinator: string
  counter: number
}

/** An installed (or proposed) view: members in age order, the first is the coordinator. */
export interface ViewData {
  id: ViewId
  members: MemberInfo[]
  /** The epoch under which the coordinator installed it (its leadership epoch when it claims to lead). */
  epoch: Epoch
}

/** What a member tells about its view in hellos and replies: enough to find views to merge. */
export interface ViewSummary {
  view?: ViewData
  /** Counter of the latest primary view this member knows to be committed. */
  committedCounter: number
  /** The sender is the coordinator of its view and holds a valid lease. */
  leading: boolean
  /** Highest view counter the sender has seen (so a new view can be numbered above it). */
  maxCounter: number
  /** The epoch the sender is promised to (votes / heartbeat acknowledgements), if that promise is still active. */
  promisedTo?: Epoch
  /** The latest primary view the sender knows committed, and a newer claimed one not known committed: a candidate
   * that knows less adopts them, so its quorums include every configuration a voter knows. */
  committed?: ConfigRef
  pending?: ConfigRef
  /** A heartbeat acknowledgement leaves out the member lists (`view`, `committed`, `pending`): nothing changed. */
  light?: boolean
}

interface Envelope {
  v: number
  cluster: string
  from: MemberInfo
  /** Highest epoch the sender knows. */
  epoch: Epoch
}

export function checkConfig (x: unknown, where: string): void {
  if (!isObject(x)) throw new InvalidMessageError(`${where}: expected {id, members}`)
  checkViewId(x.id, `${where}.id`)
  if (!Array.isArray(x.members)) throw new InvalidMessageError(`${where}.members: expected an array`)
  x.members.forEach((m, i) => { checkMember(m, `${where}.members[${i}]`) })
}

/** Discovery and dial-back probe: the reply carries the identity found at the address. */
export interface HelloMessage extends Envelope { type: 'hello', summary: ViewSummary }

/** Ask a coordinator to add members (one joiner, or a coordinator merging its whole view). */
export interface JoinMessage extends Envelope { type: 'join', joiners: MemberInfo[], summary: ViewSummary }

/** A configuration the installer counts quorums against: a committed primary view or a pending one. */
export interface ConfigRef {
  id: ViewId
  members: MemberInfo[]
}

/**
 * The coordinator installs a view. With `claim`, it also asks each receiver for a promise (a vote): not to support
 * any other leader for FT + margin. A claim with a new epoch is an election.
 */
export interface InstallMessage extends Envelope {
  type: 'install'
  view: ViewData
  claim: boolean
  /** Counter of the newest configuration the installer knows (voters refuse installers that know less). */
  configCounter: number
  /** Set by a successor the old leader named: receivers promised to this epoch may move their promise. */
  handoverFrom?: Epoch
  /**
   * Cold start: a founding view proposed, not installed. A view-less receiver that accepts binds itself to this
   * founder for a while; the founder then installs the view of the members that accepted.
   */
  propose?: boolean
  /** Objective evidence that the previous leader's process is gone: another incarnation answers at its address. */
  replacedBy?: Replacement
}

/** Evidence that `dead`'s process is gone: `found`, another incarnation, answered at its address. */
export interface Replacement { dead: MemberInfo, found: MemberInfo }

/** Whether `r` proves `r.dead` gone: another incarnation than it, at its very address. */
export function provesReplacement (r: Replacement): boolean {
  return r.found.address === r.dead.address && memberKey(r.found) !== memberKey(r.dead)
}

/** The coordinator's heartbeat round; with `claim`, an acknowledgement renews the promise (the leader's lease). */
export interface HeartbeatMessage extends Envelope {
  type: 'heartbeat'
  viewId: ViewId
  round: number
  claim: boolean
  /** The primary view the leader knows committed (members learn that their view became primary). */
  committed?: ViewId
}

/** An installer that failed to gather a quorum abandons its claim; receivers drop the promise it got. */
export interface ReleaseMessage extends Envelope {
  type: 'release'
  released: Epoch
  /** Cold start: the sender dropped its founding proposal; who accepted it is free again (`released` is unused). */
  founding?: boolean
}

/** Graceful leave of a member (sent to its coordinator). */
export interface LeaveMessage extends Envelope { type: 'leave' }

/** The leader hands the lease to `successor`; `epoch` of the envelope is the leadership being handed over. */
export interface HandoverMessage extends Envelope { type: 'handover', leaving: boolean, handedOver: Epoch }

/** Indirect probe: "can you reach the member at `target`?" (the reply's `found` says whom it found). */
export interface PingReqMessage extends Envelope {
  type: 'ping-req'
  target: string
  /**
   * "Have you heard from it within the last `withinMs`?": the time since the asker began to suspect it, so an answer
   * from before the suspicion (a killed process spoke to everyone a moment earlier) does not count. Older members
   * use 2 × HB.
   */
  withinMs?: number
}

export type ReplyReason =
  | 'wrong-cluster' | 'unsupported-version' | 'stale-view' | 'stale-epoch' | 'promised' | 'not-member'
  | 'not-coordinator' | 'older-config' | 'need-view' | 'unreachable' | 'leaving' | 'invalid'

export interface ReplyMessage extends Envelope {
  type: 'reply'
  ok: boolean
  reason?: ReplyReason
  /** The acknowledgement carries a promise (counts for a quorum). */
  promise?: boolean
  summary: ViewSummary
  /** For `join` sent to a non-coordinator: where to go instead. */
  redirect?: MemberInfo
  /** With `promised` to a founding proposal: `redirect` is a coordinator the replier asked to join (it has a view). */
  joinedView?: boolean
  /** For `ping-req`: the identity that answered at the target address. */
  found?: MemberInfo
}

export type ClusterRequest =
  | HelloMessage | JoinMessage | InstallMessage | HeartbeatMessage | ReleaseMessage | LeaveMessage
  | HandoverMessage | PingReqMessage

export type ClusterMessage = ClusterRequest | ReplyMessage

export type ClusterMessageType = ClusterMessage['type']

const TYPES: ReadonlySet<string> = new Set<ClusterMessageType>([
  'hello', 'join', 'install', 'heartbeat', 'release', 'leave', 'handover', 'ping-req', 'reply'
])

export class InvalidMessageError extends Error {
  override name = 'InvalidMessageError'
  constructor (message = 'invalid cluster message', options?: ErrorOptions) { super(message, options) }
}

export function isObject (x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x)
}

export function checkMember (x: unknown, where: string): void {
  if (!isObject(x) || typeof x.name !== 'string' || typeof x.peerId !== 'string' ||
    typeof x.incarnation !== 'string' || typeof x.address !== 'string') {
    throw new InvalidMessageError(`${where}: expected {name, peerId, incarnation, address} strings`)
  }
}

export function checkEpoch (x: unknown, where: string): void {
  if (!isObject(x) || typeof x.number !== 'number' || !Number.isInteger(x.number) || x.number < 0 ||
    typeof x.leader !== 'string') {
    throw new InvalidMessageError(`${where}: expected {number (integer >= 0), leader (string)}`)
  }
}

function checkViewId (x: unknown, where: string): void {
  if (!isObject(x) || typeof x.coordinator !== 'string' || typeof x.counter !== 'number' || !Number.isInteger(x.counter)) {
    throw new InvalidMessageError(`${where}: expected {coordinator (string), counter (integer)}`)
  }
}

function checkView (x: unknown, where: string): void {
  if (!isObject(x)) throw new InvalidMessageError(`${where}: expected a view object`)
  checkViewId(x.id, `${where}.id`)
  if (!Array.isArray(x.members) || x.members.length === 0) throw new InvalidMessageError(`${where}.members: expected a non-empty array`)
  x.members.forEach((m, i) => { checkMember(m, `${where}.members[${i}]`) })
  checkEpoch(x.epoch, `${where}.epoch`)
}

function checkSummary (x: unknown, where: string): void {
  if (!isObject(x) || typeof x.committedCounter !== 'number' || typeof x.leading !== 'boolean' ||
    typeof x.maxCounter !== 'number') {
    throw new InvalidMessageError(`${where}: expected {committedCounter, leading, maxCounter}`)
  }
  if (x.view !== undefined) checkView(x.view, `${where}.view`)
  if (x.promisedTo !== undefined) checkEpoch(x.promisedTo, `${where}.promisedTo`)
  if (x.committed !== undefined) checkConfig(x.committed, `${where}.committed`)
  if (x.pending !== undefined) checkConfig(x.pending, `${where}.pending`)
}

/**
 * Validates a decoded JSON value as a cluster message of an understood version. Throws `InvalidMessageError`
 * naming the offending field; unknown extra fields are kept (a newer minor version may add optional ones).
 */
export function decodeMessage (x: unknown): ClusterMessage {
  if (!isObject(x)) throw new InvalidMessageError('expected a JSON object')
  if (typeof x.v !== 'number') throw new InvalidMessageError('v: expected a protocol version number')
  if (x.v < OLDEST_UNDERSTOOD_VERSION || x.v > PROTOCOL_VERSION) {
    throw new UnsupportedVersionError(x.v)
  }
  if (typeof x.type !== 'string' || !TYPES.has(x.type)) throw new InvalidMessageError(`type: unknown message type ${String(x.type)}`)
  if (typeof x.cluster !== 'string') throw new InvalidMessageError('cluster: expected a string')
  checkMember(x.from, 'from')
  checkEpoch(x.epoch, 'epoch')
  switch (x.type as ClusterMessageType) {
    case 'hello': checkSummary(x.summary, 'summary'); break
    case 'join':
      checkSummary(x.summary, 'summary')
      if (!Array.isArray(x.joiners) || x.joiners.length === 0) throw new InvalidMessageError('joiners: expected a non-empty array')
      x.joiners.forEach((m, i) => { checkMember(m, `joiners[${i}]`) })
      break
    case 'install':
      checkView(x.view, 'view')
      if (typeof x.claim !== 'boolean') throw new InvalidMessageError('claim: expected a boolean')
      if (typeof x.configCounter !== 'number') throw new InvalidMessageError('configCounter: expected a number')
      if (x.handoverFrom !== undefined) checkEpoch(x.handoverFrom, 'handoverFrom')
      if (x.propose !== undefined && typeof x.propose !== 'boolean') throw new InvalidMessageError('propose: expected a boolean')
      if (x.replacedBy !== undefined) {
        if (!isObject(x.replacedBy)) throw new InvalidMessageError('replacedBy: expected an object')
        checkMember(x.replacedBy.dead, 'replacedBy.dead')
        checkMember(x.replacedBy.found, 'replacedBy.found')
      }
      break
    case 'heartbeat':
      checkViewId(x.viewId, 'viewId')
      if (typeof x.round !== 'number' || typeof x.claim !== 'boolean') throw new InvalidMessageError('heartbeat: expected round (number) and claim (boolean)')
      if (x.committed !== undefined) checkViewId(x.committed, 'committed')
      break
    case 'release':
      checkEpoch(x.released, 'released')
      if (x.founding !== undefined && typeof x.founding !== 'boolean') throw new InvalidMessageError('founding: expected a boolean')
      break
    case 'leave': break
    case 'handover':
      if (typeof x.leaving !== 'boolean') throw new InvalidMessageError('leaving: expected a boolean')
      checkEpoch(x.handedOver, 'handedOver')
      break
    case 'ping-req':
      if (typeof x.target !== 'string') throw new InvalidMessageError('target: expected an address string')
      if (x.withinMs !== undefined && (typeof x.withinMs !== 'number' || !(x.withinMs >= 0))) throw new InvalidMessageError('withinMs: expected a number ≥ 0')
      break
    case 'reply':
      if (typeof x.ok !== 'boolean') throw new InvalidMessageError('ok: expected a boolean')
      checkSummary(x.summary, 'summary')
      if (x.redirect !== undefined) checkMember(x.redirect, 'redirect')
      if (x.joinedView !== undefined && typeof x.joinedView !== 'boolean') throw new InvalidMessageError('joinedView: expected a boolean')
      if (x.found !== undefined) checkMember(x.found, 'found')
      break
  }
  return x as unknown as ClusterMessage
}

export class UnsupportedVersionError extends InvalidMessageError {
  override name = 'UnsupportedVersionError'
  constructor (readonly version: number) {
    super(`protocol version ${version} not understood (this member speaks ${OLDEST_UNDERSTOOD_VERSION}..${PROTOCOL_VERSION})`)
  }
}

export function memberKey (m: MemberInfo): string {
  return `${m.name}/${m.peerId}/${m.incarnation}`
}
