/**
 * The journal's records (transfers, log entries, cluster events), their SQLite row shapes and the mapping and
 * checks between the two, shared by the journal's operations (journal.ts).
 */
import { InvalidTransferError, ReplicationConflictError } from './errors.js'

export type TransferDirection = 'receive' | 'send'
/**
 * `queued`: a transfer the cluster initiates, waiting for its next attempt; `cancelled`: cancelled before it ended;
 * `unconfirmed`: the partner answered a restart of it as if it had it already (D2-204): an operator checks.
 */
export type TransferStatus = 'queued' | 'in-progress' | 'interrupted' | 'completed' | 'failed' | 'cancelled' | 'unconfirmed'
export const TRANSFER_STATUSES: readonly TransferStatus[] = ['queued', 'in-progress', 'interrupted', 'completed', 'failed', 'cancelled', 'unconfirmed']
/** Final rows cannot change any more and are the ones retention prunes. */
export const FINAL_STATUSES: readonly TransferStatus[] = ['completed', 'failed', 'cancelled', 'unconfirmed']

/** `partner`: a partner called a server of this cluster; `cluster`: the cluster called the partner (its queue). */
export type TransferInitiator = 'partner' | 'cluster'

/** What the cluster was asked to do, for a transfer it initiates (the queue, docs/contract.md §3.7). */
export interface InitiatedRequest {
  /** PI 17: 0 urgent, 1 medium, 2 low */
  priority: number
  /** not started before this time (RFC 3339), if asked */
  notBefore?: string
  /** fetch: one file of the partner's virtual file (`FILEID/name` in PI 12) */
  remoteName?: string
  /** fetch: the local receive virtual file the fetched file lands in */
  into?: string
  /** send: article length and sync spacing proposed, fixed when queued so that every attempt restarts the same way */
  articleSize?: number
  articlesPerSync?: number
  /** send: the spacing the partner agreed to in the first attempt that reached it: later attempts restart with it */
  agreedArticlesPerSync?: number
  /** the schedule run that queued it */
  schedule?: { id: string, at: string }
  /** a send from a local send virtual file (a schedule's): its `afterSend` applies once the partner has the file */
  localFile?: string
}

export interface TransferRecord {
  /** Journal key `<epoch>-<serial>` (transfer-id.ts): unique across the cluster and across failovers. */
  id: string
  /** PeSIT PI 13: assigned by this server (SELECT) or chosen by the requester (CREATE). */
  transferId: number
  server: string
  partner: string
  virtualFile: string
  direction: TransferDirection
  status: TransferStatus
  /** Bytes of file data transferred so far. */
  bytes: number
  /** Last acknowledged sync point (0: none) and the file offset it stands for. */
  syncPoint: number
  syncOffset: number
  /** SHA-256 (lower-case hex) of a completed file. */
  sha256: string | null
  filePath: string | null
  /** A send's source identity (`<size>:<mtimeMs>:<inode>`), null for receives. */
  source: string | null
  diagnostic: string | null
  /** Member that last ran the transfer, and the epoch of the leadership under which it last changed. */
  member: string
  epoch: number
  createdAt: string
  updatedAt: string
  finishedAt: string | null
  /** Sequence number of the log entry of the last change. */
  seq: number
  initiator: TransferInitiator
  /** initiated rows only */
  request: InitiatedRequest | null
  /** attempts started (initiated rows; 0 for the others) */
  attempts: number
  /** a queued row: not started before this time */
  nextAttemptAt: string | null
}

export type ClusterEventType =
  'view:installed' | 'leader:elected' | 'leader:demoted' | 'epoch:raised' | 'member:suspected' | 'cluster:forced-new'

/** A cluster event as logged. Fields other than `type` and `epoch` are whatever the event has. */
export interface ClusterEvent {
  type: ClusterEventType
  epoch: number
  member?: string
  leader?: string
  viewId?: { coordinator: string, id: number }
  members?: string[]
  reason?: string
}

interface EntryBase { seq: number, at: string, epoch: number }
/** A change of a transfer: the row after it. */
export type TransferEntry = EntryBase & { kind: 'transfer', data: TransferRecord }
/** Retention on the leader: these final rows were pruned (every member removes them when it applies the entry). */
export type PruneEntry = EntryBase & { kind: 'prune', data: { ids: string[] } }
export type LogEntry = TransferEntry | PruneEntry
/** Ids in one prune entry at most (a retention batch is smaller). */
export const MAX_PRUNE_IDS = 10_000

/** A cluster event as this member recorded it (`id`: its local order). */
export interface ClusterEventEntry { id: number, at: string, epoch: number, data: ClusterEvent }

export interface TransferRow {
  id: string
  transfer_id: number
  server: string
  partner: string
  virtual_file: string
  direction: TransferDirection
  status: TransferStatus
  bytes: number
  sync_point: number
  sync_offset: number
  sha256: string | null
  file_path: string | null
  source: string | null
  diagnostic: string | null
  member: string
  epoch: number
  created_at: number
  updated_at: number
  finished_at: number | null
  seq: number
  initiator: TransferInitiator
  request: string | null
  attempts: number
  next_attempt_at: number | null
}

export interface LogRow { seq: number, at: number, epoch: number, kind: string, transfer_key: string | null, data: string }

/** What a new row is made of: its fixed fields, and nothing transferred yet. */
export type NewTransfer = Pick<TransferRecord, 'id' | 'transferId' | 'server' | 'partner' | 'virtualFile' | 'direction' | 'status' | 'filePath' |
  'source' | 'member' | 'epoch' | 'createdAt'> & Partial<Pick<TransferRecord, 'initiator' | 'request' | 'nextAttemptAt'>>

/** A new row: no byte, sync point or diagnostic yet; a partner's transfer unless said otherwise. */
export function newTransfer (t: NewTransfer): TransferRecord {
  return {
    bytes: 0,
    syncPoint: 0,
    syncOffset: 0,
    sha256: null,
    diagnostic: null,
    updatedAt: t.createdAt,
    finishedAt: null,
    seq: 0,
    initiator: 'partner',
    request: null,
    attempts: 0,
    nextAttemptAt: null,
    ...t
  }
}

/** The log keeps a row's snapshot without `seq`: the entry's own seq is the row's. */
export function withoutSeq (r: TransferRecord): Omit<TransferRecord, 'seq'> {
  const { seq: _seq, ...data } = r
  return data
}

export function iso (ms: number): string {
  return new Date(ms).toISOString()
}

export function toRecord (r: TransferRow): TransferRecord {
  return {
    id: r.id,
    transferId: r.transfer_id,
    server: r.server,
    partner: r.partner,
    virtualFile: r.virtual_file,
    direction: r.direction,
    status: r.status,
    bytes: r.bytes,
    syncPoint: r.sync_point,
    syncOffset: r.sync_offset,
    sha256: r.sha256,
    filePath: r.file_path,
    source: r.source,
    diagnostic: r.diagnostic,
    member: r.member,
    epoch: r.epoch,
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
    finishedAt: r.finished_at === null ? null : iso(r.finished_at),
    seq: r.seq,
    initiator: r.initiator,
    request: r.request === null ? null : JSON.parse(r.request) as InitiatedRequest,
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at === null ? null : iso(r.next_attempt_at)
  }
}

export function toRow (r: TransferRecord): TransferRow {
  return {
    id: r.id,
    transfer_id: r.transferId,
    server: r.server,
    partner: r.partner,
    virtual_file: r.virtualFile,
    direction: r.direction,
    status: r.status,
    bytes: r.bytes,
    sync_point: r.syncPoint,
    sync_offset: r.syncOffset,
    sha256: r.sha256,
    file_path: r.filePath,
    // Entries shipped by a release before schema 3 have no source.
    source: r.source ?? null,
    diagnostic: r.diagnostic,
    member: r.member,
    epoch: r.epoch,
    created_at: Date.parse(r.createdAt),
    updated_at: Date.parse(r.updatedAt),
    finished_at: r.finishedAt === null ? null : Date.parse(r.finishedAt),
    seq: r.seq,
    // Entries shipped by a release before schema 6 are a partner's transfers.
    initiator: r.initiator ?? 'partner',
    request: r.request == null ? null : JSON.stringify(r.request),
    attempts: r.attempts ?? 0,
    next_attempt_at: r.nextAttemptAt == null ? null : Date.parse(r.nextAttemptAt)
  }
}

export function toEntry (row: LogRow): LogEntry {
  if (row.kind === 'prune') return { seq: row.seq, at: iso(row.at), epoch: row.epoch, kind: 'prune', data: JSON.parse(row.data) as { ids: string[] } }
  return { seq: row.seq, at: iso(row.at), epoch: row.epoch, kind: 'transfer', data: { ...(JSON.parse(row.data) as Omit<TransferRecord, 'seq'>), seq: row.seq } }
}

/** The key of the row an entry changes (null for a prune entry), as the log's `transfer_key` column holds it. */
export function entryKey (e: LogEntry): string | null {
  return e.kind === 'transfer' ? e.data.id : null
}

/** The entry's `data` column. */
export function entryData (e: LogEntry): string {
  return JSON.stringify(e.kind === 'transfer' ? withoutSeq(e.data) : { ids: e.data.ids })
}

/** Shipped entries come from another process: check the shape before it reaches SQL constraints. */
export function validateEntry (e: LogEntry): void {
  const bad = (why: string): never => { throw new ReplicationConflictError(`malformed log entry ${String(e?.seq)}: ${why}`) }
  if (e === null || typeof e !== 'object') bad('not an object')
  if (!Number.isSafeInteger(e.seq) || e.seq < 1) bad('seq')
  if (!Number.isSafeInteger(e.epoch) || e.epoch < 0) bad('epoch')
  if (typeof e.at !== 'string' || Number.isNaN(Date.parse(e.at))) bad('at')
  if (e.kind === 'transfer') {
    const d = e.data
    if (d === null || typeof d !== 'object' || typeof d.id !== 'string' || d.id === '') bad('transfer id')
    if (!TRANSFER_STATUSES.includes(d.status)) bad('status')
    if (d.initiator !== undefined && d.initiator !== 'partner' && d.initiator !== 'cluster') bad('initiator')
    if (d.request != null && typeof d.request !== 'object') bad('request')
    if (Number.isNaN(Date.parse(d.createdAt)) || Number.isNaN(Date.parse(d.updatedAt))) bad('times')
  } else if (e.kind === 'prune') {
    const ids = (e.data as { ids?: unknown } | null)?.ids
    if (!Array.isArray(ids) || ids.length > MAX_PRUNE_IDS || !ids.every((id) => typeof id === 'string' && id !== '')) bad('pruned ids')
  } else {
    bad(`unknown kind ${String((e as { kind?: unknown }).kind)}`)
  }
}

export function checkText (name: string, v: unknown): void {
  if (typeof v !== 'string' || v.length === 0 || v.length > 4096) {
    throw new InvalidTransferError(`${name} must be a non-empty string of at most 4096 characters`)
  }
}

export function checkCount (name: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new InvalidTransferError(`${name} must be a non-negative integer, got ${String(v)}`)
  }
}
