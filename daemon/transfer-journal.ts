/**
 * The PeSIT part's journal port backed by the member's store: one journal row per transfer, a sync point recorded
 * (durably, before the ACK(SYN) that depends on it: the store commits synchronously), the end with the SHA-256 of a
 * completed file. A restarted transfer continues the row of its interrupted attempt.
 */
import { createReadStream } from 'node:fs'
import { createHash } from 'node:crypto'
import type { Logger } from './logger.js'
import type { Store } from '../store/store.js'
import type { Leadership } from '../cluster/leadership-api.js'
import type { TransferBegin, TransferEnd, TransferJournalPort, TransferProgress } from '../transfer/ports.js'

async function sha256File (path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer)
  return h.digest('hex')
}

export class StoreTransferJournal implements TransferJournalPort {
  /** PeSIT-side handle → journal row id ("<epoch>-<serial>"). */
  private readonly rows = new Map<number, string>()
  private next = 1
  private readonly log: Logger

  constructor (private readonly components: { store: Store, leadership: Leadership, logger: Logger }, private readonly init: { member: string }) {
    this.log = components.logger.child({ component: 'daemon:transfer-journal' })
  }

  /** Handles for the PeSIT sessions; the journal row ids themselves derive from the epoch. */
  readonly allocate = (): number => this.next++

  begin (t: TransferBegin): void {
    const journal = this.components.store.journal
    const epoch = this.components.leadership.currentEpoch()?.number ?? 0
    if (t.restart) {
      const prior = journal.findRestartable({ server: t.server, partner: t.partner, virtualFile: t.file, direction: t.direction, transferId: t.pesitTransferId })
      if (prior !== undefined) {
        journal.resume(prior.id, { member: this.init.member, epoch, syncPoint: prior.syncPoint, offset: t.startOffset })
        this.rows.set(t.id, prior.id)
        return
      }
    }
    const rec = journal.begin({ epoch, member: this.init.member, server: t.server, partner: t.partner, virtualFile: t.file, direction: t.direction, transferId: t.pesitTransferId })
    this.rows.set(t.id, rec.id)
  }

  update (id: number, p: TransferProgress): void {
    const row = this.rows.get(id)
    if (row === undefined) return
    this.components.store.journal.recordSyncPoint(row, { syncPoint: p.syncPoint, offset: p.bytes, bytes: p.bytes })
  }

  async end (id: number, e: TransferEnd): Promise<void> {
    const row = this.rows.get(id)
    if (row === undefined) return
    this.rows.delete(id)
    const journal = this.components.store.journal
    const diagnostic = [e.diagnostic, e.message].filter((x) => x !== undefined && x !== '').join(': ') || 'unknown'
    if (e.status === 'completed') {
      let sha256: string
      try {
        if (e.path === undefined) throw new Error('the receiver reported no final path')
        sha256 = await sha256File(e.path)
      } catch (err) {
        this.log.warn({ err, row, path: e.path }, 'could not hash the received file; journal row left without completion')
        journal.update(row, { bytes: e.bytes, diagnostic: `completed, but hashing failed: ${(err as Error).message}` })
        return
      }
      journal.complete(row, { bytes: e.bytes, sha256, filePath: e.path })
    } else if (e.status === 'interrupted') {
      journal.interrupt(row, diagnostic)
    } else {
      journal.fail(row, diagnostic)
    }
  }
}
