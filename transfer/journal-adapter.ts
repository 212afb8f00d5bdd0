/**
 * The store's transfer journal (store/journal.ts) behind the PeSIT part's narrow TransferJournalPort.
 *
 * A CREATE with the restart flag and a usable checkpoint resumes the journal row of the interrupted attempt
 * (same server, partner, virtual file, direction and PI 13), also when another member started it; a new CREATE
 * that reuses the PI 13 of an unfinished row marks that row failed (it can never be resumed any more).
 */
import type { Journal } from '../store/journal.js'
import { DIAG, formatDiagnostic } from './diagnostics.js'
import { NotReplicatedError } from './errors.js'
import type { SentQuery, TransferBegin, TransferEnd, TransferJournalPort, TransferStarted, TransferSyncPoint } from './ports.js'

export type JournalForPesit = Pick<Journal, 'begin' | 'resume' | 'findRestartable' | 'recordSyncPoint' | 'complete' | 'interrupt' | 'fail' | 'wasSent' | 'inProgress'>

export interface JournalAdapterContext {
  /** this member's name (POD_NAME) */
  member: string
  /** the epoch of the current leadership */
  epoch: () => number
  /**
   * `VECTIS_REPLICATION=sync`: resolves once the journal up to `seq` is on a majority of the members; the sync
   * points and completions a partner is told of wait for it (a rejection becomes NotReplicatedError).
   */
  replicated?: (seq: number) => Promise<void>
}

/** `journal` may be a getter, for a store that opens its database only when started. */
export function journalPortFromStore (source: JournalForPesit | (() => JournalForPesit), ctx: JournalAdapterContext): TransferJournalPort {
  const j = (): JournalForPesit => typeof source === 'function' ? source() : source
  const replicated = async (seq: number): Promise<void> => {
    if (ctx.replicated === undefined) return
    try {
      await ctx.replicated(seq)
    } catch (err) {
      throw new NotReplicatedError((err as Error).message, { cause: err })
    }
  }
  /** The unfinished row of the transfer `t` names (server, partner, virtual file, direction, PI 13), if any. */
  const restartable = (journal: JournalForPesit, t: TransferBegin): ReturnType<JournalForPesit['findRestartable']> => t.pesitTransferId === undefined
    ? undefined
    : journal.findRestartable({ server: t.server, partner: t.partner, virtualFile: t.file, direction: t.direction, transferId: t.pesitTransferId })
  return {
    begin (t: TransferBegin): TransferStarted {
      const journal = j()
      const previous = restartable(journal, t)
      if (previous !== undefined) {
        if (t.restart) {
          const row = journal.resume(previous.id, { member: ctx.member, epoch: ctx.epoch(), syncPoint: t.startSyncPoint, offset: t.startOffset })
          return { id: row.id, transferId: row.transferId }
        }
        journal.fail(previous.id, 'superseded: a new transfer reused its PeSIT transfer id')
      }
      const row = journal.begin({
        epoch: ctx.epoch(), member: ctx.member, server: t.server, partner: t.partner, virtualFile: t.file,
        direction: t.direction, filePath: t.path,
        ...(t.pesitTransferId !== undefined ? { transferId: t.pesitTransferId } : {}),
        ...(t.source !== undefined ? { source: t.source } : {})
      })
      return { id: row.id, transferId: row.transferId }
    },
    async syncPoint (id: string, p: TransferSyncPoint): Promise<void> {
      const r = j().recordSyncPoint(id, { syncPoint: p.syncPoint, offset: p.offset, bytes: p.offset })
      await replicated(r.seq)
    },
    interruptOrphans (): number {
      const journal = j()
      const orphans = journal.inProgress()
      for (const r of orphans) journal.interrupt(r.id, `${formatDiagnostic(DIAG.NETWORK_INCIDENT)}: the member that ran it (${r.member}) no longer does; resume it with a restart`)
      return orphans.length
    },
    async deliveredAgain (t: TransferBegin, file: { bytes: number, sha256: string, path: string }): Promise<void> {
      const journal = j()
      const row = restartable(journal, t)
      if (row === undefined) return // completed already (or pruned): nothing to record
      journal.resume(row.id, { member: ctx.member, epoch: ctx.epoch(), syncPoint: row.syncPoint, offset: row.syncOffset })
      const done = journal.complete(row.id, { bytes: file.bytes, sha256: file.sha256, filePath: file.path })
      await replicated(done.seq)
    },
    wasSent (q: SentQuery): boolean {
      return j().wasSent({ partner: q.partner, virtualFile: q.file, filePath: q.path, source: q.source })
    },
    async end (id: string, e: TransferEnd): Promise<void> {
      const journal = j()
      const diag = [e.diagnostic, e.message].filter((x) => x !== undefined && x !== '').join(': ') || e.status
      if (e.status === 'completed') {
        const r = journal.complete(id, { bytes: e.bytes, sha256: e.sha256 ?? '', ...(e.path !== undefined ? { filePath: e.path } : {}) })
        await replicated(r.seq)
      } else if (e.status === 'interrupted') {
        journal.interrupt(id, diag)
      } else {
        journal.fail(id, diag)
      }
    }
  }
}
