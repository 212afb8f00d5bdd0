/**
 * The PeSIT part's journal port backed by the member's store: one journal row per transfer, a sync point recorded
 * (durably, before the ACK(SYN) that depends on it: the store commits synchronously; a refusal, e.g. the lease is
 * gone, stops the ACK), the end with the SHA-256 the receiver computed while storing the file. A restarted
 * transfer continues the row of its interrupted attempt (transfer/journal-adapter.ts).
 */
import type { Logger } from './logger.js'
import type { Store } from '../store/store.js'
import type { Leadership } from '../cluster/leadership-api.js'
import type { TransferBegin, TransferEnd, TransferJournalPort, TransferSyncPoint } from '../transfer/ports.js'
import { journalPortFromStore } from '../transfer/journal-adapter.js'

export class StoreTransferJournal implements TransferJournalPort {
  private readonly port: TransferJournalPort
  private readonly log: Logger

  constructor (components: { store: Store, leadership: Leadership, logger: Logger }, init: { member: string }) {
    this.log = components.logger.child({ component: 'daemon:transfer-journal' })
    // The store opens its database in start(): read the journal lazily.
    this.port = journalPortFromStore(() => components.store.journal, {
      member: init.member,
      epoch: () => components.leadership.currentEpoch()?.number ?? 0
    })
  }

  begin (t: TransferBegin): string | Promise<string> { return this.port.begin(t) }

  syncPoint (id: string, p: TransferSyncPoint): void | Promise<void> { return this.port.syncPoint(id, p) }

  end (id: string, e: TransferEnd): void | Promise<void> {
    if (e.status === 'completed' && e.sha256 === undefined) this.log.warn({ id }, 'completed transfer reported without SHA-256')
    return this.port.end(id, e)
  }
}
