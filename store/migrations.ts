/**
 * The schema, as an ordered list of steps. `PRAGMA user_version` holds the version a database is at (0 = empty);
 * at start every step above it runs, all of them in one IMMEDIATE transaction, so a crash or an error in the
 * middle leaves the database at its old version, never half-migrated (SQLite DDL is transactional and
 * `user_version` is part of the transaction).
 *
 * Rules for adding a step: never edit a released step, append a new one with the next version; a step may only
 * add or transform (a release must be able to read what the previous release wrote); add its fixture to
 * test/unit/store-migrations.test.ts, which migrates a populated database from every earlier version.
 */
import type { Database } from 'better-sqlite3'

export interface Migration {
  version: number
  description: string
  up (db: Database): void
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'transfer journal: one row per transfer and the ordered change log',
    up (db) {
      db.exec(`
        CREATE TABLE transfers (
          id           TEXT PRIMARY KEY,      -- '<epoch>-<serial>', unique across the cluster forever
          transfer_id  INTEGER NOT NULL CHECK (transfer_id BETWEEN 1 AND 16777215), -- PeSIT PI 13
          server       TEXT NOT NULL,
          partner      TEXT NOT NULL,
          virtual_file TEXT NOT NULL,
          direction    TEXT NOT NULL CHECK (direction IN ('receive', 'send')),
          status       TEXT NOT NULL CHECK (status IN ('in-progress', 'interrupted', 'completed', 'failed')),
          bytes        INTEGER NOT NULL DEFAULT 0 CHECK (bytes >= 0),
          sync_point   INTEGER NOT NULL DEFAULT 0 CHECK (sync_point >= 0),
          sync_offset  INTEGER NOT NULL DEFAULT 0 CHECK (sync_offset >= 0),
          sha256       TEXT,
          file_path    TEXT,
          diagnostic   TEXT,
          member       TEXT NOT NULL,
          epoch        INTEGER NOT NULL,      -- epoch of the leader that last wrote the row
          created_at   INTEGER NOT NULL,      -- wall-clock ms
          updated_at   INTEGER NOT NULL,
          finished_at  INTEGER,
          seq          INTEGER NOT NULL       -- journal_log.seq of the last change
        );
        CREATE INDEX transfers_created ON transfers (created_at);
        CREATE INDEX transfers_status_created ON transfers (status, created_at);
        CREATE INDEX transfers_partner_created ON transfers (partner, created_at);
        CREATE INDEX transfers_finished ON transfers (finished_at) WHERE finished_at IS NOT NULL;

        -- AUTOINCREMENT: a seq is never reused, even after the newest entries were pruned.
        CREATE TABLE journal_log (
          seq          INTEGER PRIMARY KEY AUTOINCREMENT,
          at           INTEGER NOT NULL,
          kind         TEXT NOT NULL,
          transfer_key TEXT,
          data         TEXT NOT NULL
        );
      `)
    }
  },
  {
    version: 2,
    description: 'cluster state (epoch, view counter, primary view), transfer id counters, log entries carry their epoch',
    up (db) {
      db.exec(`
        CREATE TABLE cluster_state (
          id            INTEGER PRIMARY KEY CHECK (id = 1),
          epoch_number  INTEGER NOT NULL DEFAULT 0,
          epoch_leader  TEXT NOT NULL DEFAULT '',
          view_counter  INTEGER NOT NULL DEFAULT 0,
          primary_view  TEXT,
          updated_at    INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO cluster_state (id) VALUES (1);

        CREATE TABLE transfer_id_counters (
          epoch        INTEGER PRIMARY KEY,
          next_serial  INTEGER NOT NULL
        );
        CREATE INDEX transfers_transfer_id ON transfers (transfer_id);

        -- The epoch of the writer, so that a member receiving shipped entries can tell an old leader's
        -- unreplicated tail from the current leader's log. Version 1 entries hold a snapshot of the row, whose
        -- epoch is exactly the writer's.
        ALTER TABLE journal_log ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
        UPDATE journal_log SET epoch = COALESCE(json_extract(data, '$.epoch'), 0) WHERE kind = 'transfer';
        CREATE INDEX journal_log_transfer ON journal_log (transfer_key, seq) WHERE transfer_key IS NOT NULL;
        CREATE INDEX journal_log_at ON journal_log (at);
      `)
    }
  },
  {
    version: 3,
    description: 'the identity of the source file a send transferred, so a file sent completely is not offered again',
    up (db) {
      db.exec(`
        ALTER TABLE transfers ADD COLUMN source TEXT; -- send: '<size>:<mtimeMs>:<inode>' of the file read
        CREATE INDEX transfers_sent ON transfers (partner, virtual_file, file_path)
          WHERE direction = 'send' AND status = 'completed';
      `)
    }
  },
  {
    version: 4,
    description: 'the log holds only what is replicated (the leader\'s transfer changes) and how far it matches the leader\'s; each member\'s cluster events get a table of their own',
    up (db) {
      db.exec(`
        -- What this member saw of the cluster: local, never shipped (the log's sequence numbers are the leader's).
        CREATE TABLE cluster_events (
          id     INTEGER PRIMARY KEY AUTOINCREMENT,
          at     INTEGER NOT NULL,
          epoch  INTEGER NOT NULL,
          data   TEXT NOT NULL
        );
        INSERT INTO cluster_events (at, epoch, data)
          SELECT at, epoch, data FROM journal_log WHERE kind = 'cluster-event' ORDER BY seq;
        DELETE FROM journal_log WHERE kind = 'cluster-event';

        -- The log up to 'position' is the leader's (a leader: its own). A database from before replication holds
        -- only what this member wrote or received: taken as it is.
        CREATE TABLE replication (
          id        INTEGER PRIMARY KEY CHECK (id = 1),
          position  INTEGER NOT NULL
        );
        INSERT INTO replication (id, position) SELECT 1, COALESCE(max(seq), 0) FROM journal_log;
      `)
    }
  },
  {
    version: 5,
    description: 'retention is a replicated entry (kind \'prune\'); a member remembers the highest one it pruned from its log',
    up (db) {
      db.exec(`
        -- A member whose position is below the leader's pruned_through may have missed a prune entry.
        ALTER TABLE replication ADD COLUMN pruned_through INTEGER NOT NULL DEFAULT 0;
      `)
    }
  },
  {
    version: 6,
    description: 'transfers the cluster initiates: queued, cancelled and unconfirmed rows, who initiated a row, the request, attempts and when the next may start',
    up (db) {
      // SQLite cannot change a CHECK constraint in place: the table is rebuilt (rowids kept, they order the list).
      db.exec(`
        CREATE TABLE transfers_v6 (
          id              TEXT PRIMARY KEY,
          transfer_id     INTEGER NOT NULL CHECK (transfer_id BETWEEN 1 AND 16777215),
          server          TEXT NOT NULL,
          partner         TEXT NOT NULL,
          virtual_file    TEXT NOT NULL,
          direction       TEXT NOT NULL CHECK (direction IN ('receive', 'send')),
          status          TEXT NOT NULL CHECK (status IN ('queued', 'in-progress', 'interrupted', 'completed', 'failed', 'cancelled', 'unconfirmed')),
          bytes           INTEGER NOT NULL DEFAULT 0 CHECK (bytes >= 0),
          sync_point      INTEGER NOT NULL DEFAULT 0 CHECK (sync_point >= 0),
          sync_offset     INTEGER NOT NULL DEFAULT 0 CHECK (sync_offset >= 0),
          sha256          TEXT,
          file_path       TEXT,
          diagnostic      TEXT,
          member          TEXT NOT NULL,
          epoch           INTEGER NOT NULL,
          created_at      INTEGER NOT NULL,
          updated_at      INTEGER NOT NULL,
          finished_at     INTEGER,
          seq             INTEGER NOT NULL,
          source          TEXT,
          -- 'partner': a partner called this server; 'cluster': the cluster called the partner (the queue)
          initiator       TEXT NOT NULL DEFAULT 'partner' CHECK (initiator IN ('partner', 'cluster')),
          request         TEXT,                -- JSON: what the cluster was asked (initiated rows only)
          attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
          next_attempt_at INTEGER              -- a queued row does not start before (wall-clock ms)
        );
        INSERT INTO transfers_v6 (rowid, id, transfer_id, server, partner, virtual_file, direction, status, bytes, sync_point,
          sync_offset, sha256, file_path, diagnostic, member, epoch, created_at, updated_at, finished_at, seq, source)
          SELECT rowid, id, transfer_id, server, partner, virtual_file, direction, status, bytes, sync_point,
          sync_offset, sha256, file_path, diagnostic, member, epoch, created_at, updated_at, finished_at, seq, source FROM transfers;
        DROP TABLE transfers;
        ALTER TABLE transfers_v6 RENAME TO transfers;
        CREATE INDEX transfers_created ON transfers (created_at);
        CREATE INDEX transfers_status_created ON transfers (status, created_at);
        CREATE INDEX transfers_partner_created ON transfers (partner, created_at);
        CREATE INDEX transfers_finished ON transfers (finished_at) WHERE finished_at IS NOT NULL;
        CREATE INDEX transfers_transfer_id ON transfers (transfer_id);
        CREATE INDEX transfers_sent ON transfers (partner, virtual_file, file_path)
          WHERE direction = 'send' AND status = 'completed';
        CREATE INDEX transfers_queue ON transfers (next_attempt_at) WHERE status = 'queued';
      `)
    }
  }
]

/** The version this code writes and understands. */
export const SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0

for (const [i, m] of MIGRATIONS.entries()) {
  // A gap or a reordering would silently skip a step on some databases: fail at load, in every test run.
  if (m.version !== i + 1) throw new Error(`store migrations out of order: #${i} has version ${m.version}`)
}

export function schemaVersion (db: Database): number {
  return db.pragma('user_version', { simple: true }) as number
}

/**
 * Applies, inside the caller's transaction, every step above the database's version up to `target`.
 * Exported for the tests that build a database at each earlier version.
 */
export function applyMigrations (db: Database, target: number = SCHEMA_VERSION): { from: number, to: number } {
  const from = schemaVersion(db)
  for (const m of MIGRATIONS) {
    if (m.version <= from || m.version > target) continue
    m.up(db)
    // PRAGMA takes no bound parameters; the version is an integer from the list above.
    db.pragma(`user_version = ${m.version}`)
  }
  return { from, to: Math.max(from, target) }
}
