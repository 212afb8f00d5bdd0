/**
 * The journal's prepared SQL statements (store/journal.ts, and the replica side in journal-replica.ts), prepared
 * once per database. A row of `transfers` is written whole: COLUMNS lists every column in one order.
 */
import type { Database, Statement } from 'better-sqlite3'
import type { LogRow, TransferRow } from './journal-records.js'

export const COLUMNS = 'id, transfer_id, server, partner, virtual_file, direction, status, bytes, sync_point, sync_offset, ' +
  'sha256, file_path, source, diagnostic, member, epoch, created_at, updated_at, finished_at, seq, initiator, request, attempts, next_attempt_at'
const VALUES = COLUMNS.split(', ').map((c) => `@${c}`).join(', ')
const SET_ALL = COLUMNS.split(', ').filter((c) => c !== 'id').map((c) => `${c} = excluded.${c}`).join(', ')

export interface JournalStatements {
  get: Statement<[string], TransferRow>
  upsert: Statement<TransferRow>
  upsertIfNewer: Statement<TransferRow>
  appendLog: Statement<[number, number, string, string | null, string]>
  appendLogAt: Statement<[number, number, number, string, string | null, string]>
  getLog: Statement<[number], LogRow>
  since: Statement<[number, number], LogRow>
  lastSeq: Statement<[], { seq: number }>
  restartable: Statement<[string, string, string, string, number], TransferRow>
  sent: Statement<[string, string, string, string], { n: number }>
  prunableTransfers: Statement<[number, number], { id: string }>
  prunableLog: Statement<[number, number], { seq: number, kind: string }>
  deleteIfOlder: Statement<[string, number]>
  horizon: Statement<[], { pruned_through: number }>
  raiseHorizon: Statement<[number]>
  appendEvent: Statement<[number, number, string]>
  position: Statement<[], { position: number }>
  setPosition: Statement<[number]>
  logRange: Statement<[number, number], LogRow>
  deleteLog: Statement<[number]>
  newestOf: Statement<[string], LogRow>
  deleteTransfer: Statement<[string]>
  inProgress: Statement<[], TransferRow>
  listPlace: Statement<[string], { created_at: number, rid: number }>
  events: Statement<[number], { id: number, at: number, epoch: number, data: string }>
  pruneEvents: Statement<[number, number]>
}

export function prepareJournalStatements (db: Database): JournalStatements {
  return {
    get: db.prepare(`SELECT ${COLUMNS} FROM transfers WHERE id = ?`),
    upsert: db.prepare(`INSERT INTO transfers (${COLUMNS}) VALUES (${VALUES}) ON CONFLICT (id) DO UPDATE SET ${SET_ALL}`),
    // (epoch, seq) is the order of the true history: a newer leadership's change wins over anything older.
    upsertIfNewer: db.prepare(`INSERT INTO transfers (${COLUMNS}) VALUES (${VALUES}) ON CONFLICT (id) DO UPDATE ` +
      `SET ${SET_ALL} WHERE excluded.epoch > transfers.epoch OR ` +
      '(excluded.epoch = transfers.epoch AND excluded.seq > transfers.seq)'),
    appendLog: db.prepare('INSERT INTO journal_log (at, epoch, kind, transfer_key, data) VALUES (?, ?, ?, ?, ?)'),
    appendLogAt: db.prepare('INSERT INTO journal_log (seq, at, epoch, kind, transfer_key, data) VALUES (?, ?, ?, ?, ?, ?)'),
    getLog: db.prepare('SELECT seq, at, epoch, kind, transfer_key, data FROM journal_log WHERE seq = ?'),
    since: db.prepare('SELECT seq, at, epoch, kind, transfer_key, data FROM journal_log WHERE seq > ? ORDER BY seq LIMIT ?'),
    // sqlite_sequence, not max(seq): the newest entries may have been pruned, their numbers are still used.
    lastSeq: db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'journal_log'"),
    restartable: db.prepare(`SELECT ${COLUMNS} FROM transfers WHERE server = ? AND partner = ? AND virtual_file = ? ` +
      "AND direction = ? AND transfer_id = ? AND status IN ('in-progress', 'interrupted') AND initiator = 'partner' " +
      'ORDER BY created_at DESC, rowid DESC LIMIT 1'),
    sent: db.prepare("SELECT 1 AS n FROM transfers WHERE partner = ? AND virtual_file = ? AND file_path = ? AND source = ? " +
      "AND direction = 'send' AND status = 'completed' AND initiator = 'partner' LIMIT 1"),
    prunableTransfers: db.prepare('SELECT id FROM transfers WHERE finished_at IS NOT NULL ' +
      "AND finished_at < ? AND status IN ('completed', 'failed', 'cancelled', 'unconfirmed') ORDER BY finished_at, id LIMIT ?"),
    // Keeps the newest entry of every row still present, so a member catching up from the start of the log
    // still receives every row.
    prunableLog: db.prepare('SELECT l.seq, l.kind FROM journal_log l WHERE l.at < ? AND ' +
      'NOT EXISTS (SELECT 1 FROM transfers t WHERE t.id = l.transfer_key AND t.seq = l.seq) ORDER BY l.seq LIMIT ?'),
    // A row changed after the prune entry (restored from a backup since) stays.
    deleteIfOlder: db.prepare('DELETE FROM transfers WHERE id = ? AND seq < ?'),
    horizon: db.prepare('SELECT pruned_through FROM replication WHERE id = 1'),
    raiseHorizon: db.prepare('UPDATE replication SET pruned_through = max(pruned_through, ?) WHERE id = 1'),
    appendEvent: db.prepare('INSERT INTO cluster_events (at, epoch, data) VALUES (?, ?, ?)'),
    position: db.prepare('SELECT position FROM replication WHERE id = 1'),
    setPosition: db.prepare('UPDATE replication SET position = ? WHERE id = 1'),
    logRange: db.prepare('SELECT seq, at, epoch, kind, transfer_key, data FROM journal_log WHERE seq > ? AND seq <= ? ORDER BY seq'),
    deleteLog: db.prepare('DELETE FROM journal_log WHERE seq = ?'),
    newestOf: db.prepare('SELECT seq, at, epoch, kind, transfer_key, data FROM journal_log WHERE transfer_key = ? ORDER BY seq DESC LIMIT 1'),
    deleteTransfer: db.prepare('DELETE FROM transfers WHERE id = ?'),
    // A partner's transfers: the queue resumes its own (transfer-queue.ts).
    inProgress: db.prepare(`SELECT ${COLUMNS} FROM transfers WHERE status = 'in-progress' AND initiator = 'partner' ORDER BY created_at, rowid`),
    listPlace: db.prepare('SELECT created_at, rowid AS rid FROM transfers WHERE id = ?'),
    events: db.prepare('SELECT id, at, epoch, data FROM cluster_events ORDER BY id DESC LIMIT ?'),
    pruneEvents: db.prepare('DELETE FROM cluster_events WHERE id IN (SELECT id FROM cluster_events WHERE at < ? ORDER BY id LIMIT ?)')
  }
}
