/**
 * What the PeSIT part needs from the rest of the daemon, as narrow interfaces: the transfer journal (store/)
 * and the metrics registry (daemon/). The daemon adapts its own objects to these.
 */

export type TransferDirection = 'receive' | 'send'
/** How one attempt of a transfer ended (the journal's `TransferStatus` also has `in-progress`). */
export const TRANSFER_OUTCOMES = ['completed', 'failed', 'interrupted'] as const
export type TransferOutcome = typeof TRANSFER_OUTCOMES[number]

export interface TransferBegin {
  /**
   * PeSIT transfer id (PI 13): chosen by the requester for a push, the server's earlier value for the restart of a
   * pull; omitted for a new pull, for which the journal allocates one (unique across the cluster)
   */
  pesitTransferId?: number
  direction: TransferDirection
  server: string
  partner: string
  file: string
  /** receive: final path the file will have once complete; send: the file sent */
  path: string
  /** send: identity of the source (`<size>:<mtimeMs>:<inode>`), so a file sent completely is not offered again */
  source?: string
  /** true when this attempt resumes an interrupted one (CREATE with PI 15 = 1 and a usable checkpoint) */
  restart: boolean
  /** sync point and byte offset the attempt starts from (0 unless resumed) */
  startSyncPoint: number
  startOffset: number
}

export interface TransferSyncPoint {
  syncPoint: number
  /** file offset the sync point stands for (= bytes received up to it) */
  offset: number
  articles: number
}

export interface TransferEnd {
  status: TransferOutcome
  bytes: number
  articles: number
  /** completed: final path and SHA-256 (lower-case hex) of the whole file */
  path?: string
  sha256?: string
  /** `Dt-rrr text` of the failure or interruption */
  diagnostic?: string
  message?: string
}

export interface TransferStarted {
  /** the journal row's key */
  id: string
  /** PI 13 of the transfer (the one given, or the one allocated) */
  transferId: number
}

export interface SentQuery {
  partner: string
  file: string
  path: string
  source: string
}

/**
 * One row per transfer (store/journal.ts maps onto it: begin or resume, recordSyncPoint, complete / interrupt /
 * fail). Calls are awaited in protocol order:
 *  - `begin` returns the row's key and PI 13; if it throws, the CREATE or SELECT is refused (D2-201);
 *  - `syncPoint` runs after the checkpoint is durable and BEFORE ACK(SYN): if it throws (e.g. not leader any
 *    more, or synchronous replication failed), the sync point is not acknowledged and the session is aborted;
 *  - `end` failures of a push are logged only: the file and its checkpoint are already durable; a pull's end is
 *    recorded before ACK(TRANS.END) and a failure aborts the session (an unrecorded send would be offered again).
 */
export interface TransferJournalPort {
  begin(t: TransferBegin): TransferStarted | Promise<TransferStarted>
  syncPoint(id: string, p: TransferSyncPoint): void | Promise<void>
  end(id: string, e: TransferEnd): void | Promise<void>
  /** true when `path` with this source identity was already sent completely to the partner under `file` */
  wasSent(q: SentQuery): boolean | Promise<boolean>
  /**
   * The servers are starting on this member: rows still in progress belong to attempts no process runs any more
   * (a leader that died or was deposed, or this member before a restart). Marks them interrupted, restartable;
   * returns how many.
   */
  interruptOrphans(): number | Promise<number>
  /**
   * A restart of a push that was already delivered (a replay, receive-replay.ts), about to be confirmed: the row of
   * that transfer, if it is still restartable (the leader that delivered died before completing it), is completed
   * with the delivered file's size and digest; a row completed already is left as it is. Awaited before
   * ACK(TRANS.END): with VECTIS_REPLICATION=sync it waits for a majority.
   */
  deliveredAgain(t: TransferBegin, file: { bytes: number, sha256: string, path: string }): void | Promise<void>
}

/** How far a transfer is between its sync points, for the consoles (not durable: the journal holds the sync points). */
export interface TransferProgress {
  /** file bytes stored or sent so far, from the start of the file */
  bytes: number
  /** the file's size: exact when sending, the size a requester announced (PI 42, whole KB) when receiving */
  expectedBytes?: number
}

/**
 * Live progress of this member's transfers, reported at every DTF received and every chunk sent: `update` is called
 * often and must be cheap (the daemon keeps the latest figure and publishes it a few times a second).
 */
export interface TransferProgressPort {
  /** `journalId`: the transfer's journal row */
  update(journalId: string, p: TransferProgress): void
}

/** Counters behind `vectis_pesit_*` and `vectis_transfer*` (docs/contract.md §4); every callback optional. */
export interface PesitMetrics {
  /** vectis_pesit_servers_running: +1 when a listener starts, -1 when it stops */
  serverRunning?(serverId: string, running: boolean): void
  /** vectis_pesit_connections_active */
  connectionOpened?(serverId: string): void
  connectionClosed?(serverId: string): void
  /**
   * vectis_transfers_total{direction,status}; vectis_transfer_duration_seconds{direction,status} (this attempt, from
   * its CREATE or SELECT on this member); vectis_transfer_failures_total{direction,diagnostic} when it did not complete
   */
  transferEnded?(direction: TransferDirection, status: TransferOutcome, end?: AttemptEnd): void
  /** vectis_transfer_bytes_total{direction}: file bytes, counted as they are stored or sent */
  transferBytes?(direction: TransferDirection, bytes: number): void
  /** vectis_pesit_peer_deviations_total{kind}: a departure from the protocol that was tolerated */
  peerDeviation?(kind: PeerDeviation): void
}

/** How an attempt ended, for the metrics. */
export interface AttemptEnd {
  durationSeconds: number
  /** `Dt-rrr` of a failure or interruption */
  diagnostic?: string
}

/** The departures from the protocol a server tolerates (docs/pesit.md §12), each counted. */
export const PEER_DEVIATIONS = ['idt-without-end-code', 'entity-over-negotiated-size', 'article-over-announced-length'] as const
export type PeerDeviation = typeof PEER_DEVIATIONS[number]

/** A journal that keeps nothing, for tools and tests that do not look at it. */
export const nullJournal: TransferJournalPort = {
  begin: (t) => ({ id: '', transferId: t.pesitTransferId ?? 1 }),
  syncPoint () {},
  end () {},
  wasSent: () => false,
  interruptOrphans: () => 0,
  deliveredAgain () {}
}
