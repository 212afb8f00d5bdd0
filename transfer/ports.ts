/**
 * What the PeSIT part needs from the rest of the daemon, as narrow interfaces: the transfer journal (store/)
 * and the metrics registry (daemon/). The daemon adapts its own objects to these.
 */

export type TransferDirection = 'receive' | 'send'
export type TransferStatus = 'completed' | 'failed' | 'interrupted'

export interface TransferBegin {
  /** journal id: from `allocateTransferId` (cluster-unique, epoch-derived) or a local counter */
  id: number
  /** PeSIT transfer id (PI 13) chosen by the requester for a push */
  pesitTransferId: number
  direction: TransferDirection
  server: string
  partner: string
  file: string
  /** true when this attempt resumes an interrupted one */
  restart: boolean
  /** byte offset the attempt starts from (0 unless resumed) */
  startOffset: number
  startedAt: Date
}

export interface TransferProgress {
  bytes: number
  articles: number
  syncPoint: number
}

export interface TransferEnd {
  status: TransferStatus
  bytes: number
  articles: number
  /** final path of a completed received file */
  path?: string
  /** `Dt-rrr text` of the failure */
  diagnostic?: string
  message?: string
  endedAt: Date
}

/**
 * One row per transfer attempt. Calls are awaited in protocol order; a journal failure is logged and does not
 * fail the transfer (the durable checkpoint, not the journal, is the restart state).
 */
export interface TransferJournalPort {
  begin(t: TransferBegin): void | Promise<void>
  update(id: number, p: TransferProgress): void | Promise<void>
  end(id: number, e: TransferEnd): void | Promise<void>
}

/** Counters behind `vectis_pesit_*` and `vectis_transfer*` (SPEC §4); every callback optional. */
export interface PesitMetrics {
  /** vectis_pesit_servers_running: +1 when a listener starts, -1 when it stops */
  serverRunning?(serverId: string, running: boolean): void
  /** vectis_pesit_connections_active */
  connectionOpened?(serverId: string): void
  connectionClosed?(serverId: string): void
  /** vectis_transfers_total{direction,status} */
  transferEnded?(direction: TransferDirection, status: TransferStatus): void
  /** vectis_transfer_bytes_total{direction}: file bytes, counted as they are stored or sent */
  transferBytes?(direction: TransferDirection, bytes: number): void
}

/** A journal that keeps nothing, for tools and tests that do not look at it. */
export const nullJournal: TransferJournalPort = { begin () {}, update () {}, end () {} }
