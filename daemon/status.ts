/**
 * The JSON of `GET /api/cluster/status` (docs/contract.md §3.5) and of the transfer events (§3.8). Types only, in a
 * module without Node code: the web console (console/api.ts) reads the same shapes.
 */
import type { ClusterStatus, StatusMember } from '../cluster/cluster-api.js'
import type { TransferRecord } from '../store/journal-records.js'

/** A member as the status shows it. */
export interface StatusMemberDetail extends StatusMember {
  journalSeq: number | null
  heartbeatAgeMs: number | null
  labelled: boolean | null
}

export interface ServerStatus {
  id: string
  port: number
  tls: boolean
  running: boolean
  /** PeSIT connections open on this listener of this member now (0 where it does not listen). */
  connections: number
}

/** The cluster part of the status, with this member's view of each member and its own journal position. */
export type MemberClusterStatus = Omit<ClusterStatus, 'members'> & { members: StatusMemberDetail[], journal: { seq: number, lagEntries: number } }

/** The whole answer. */
export type StatusAnswer = MemberClusterStatus & { servers: ServerStatus[] }

/**
 * A journal row as a `transfer` event carries it: while in progress, `bytes` is the live figure (it may be ahead of
 * the last sync point) and `expectedBytes` the file's size when known (exact when sending, as announced when
 * receiving: PI 42, whole KB). Neither is journaled.
 */
export type LiveTransferRecord = TransferRecord & { expectedBytes?: number }
