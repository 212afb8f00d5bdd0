/**
 * Opens the member's SQLite database `<dataDir>/vectis.db`, checks it and brings its schema up to date.
 *
 * Durability choices (why):
 * - `journal_mode = WAL`: a commit appends to the write-ahead log instead of rewriting pages in place, so the hot
 *   path (one journal update per PeSIT sync point) costs one sequential append and one fsync, and readers (the
 *   HTTP API) never block the writer.
 * - `synchronous = FULL`: in WAL mode SQLite then fsyncs the WAL at every commit, so a transaction is on stable
 *   storage when the call returns. The PeSIT server acknowledges a sync point (ACK(SYN)) only after the journal
 *   update returned, and the epoch and view counter must never go back after a power loss. `NORMAL` would be
 *   faster (fsync only at checkpoints) but loses the last commits on an OS crash or power cut; kill -9 of the
 *   process alone loses nothing in either mode.
 * - Checkpoints: SQLite's automatic checkpoint (every `WAL_AUTOCHECKPOINT_PAGES` pages, PASSIVE, run by the
 *   committing call) keeps the WAL bounded. The store has one connection and no long-lived readers, so the
 *   passive checkpoint always completes; `journal_size_limit` truncates a WAL that grew during a burst, and a
 *   clean stop runs a TRUNCATE checkpoint so the data directory holds one self-contained file. The occasional
 *   commit that runs the checkpoint is slower: `bench/store.ts` shows it in the p99.
 * - `busy_timeout`: only this daemon writes the file, but a read-only inspection (sqlite3 CLI, a backup) can hold
 *   a lock for a moment; waiting briefly beats failing a transfer.
 * - A `quick_check` at every open: O(size of the database), a few hundred ms for a large journal, and the only
 *   way to refuse a damaged file at start rather than in the middle of a transfer.
 *
 * NOT guaranteed: durability on storage that lies about fsync (some network and virtual disks), or on NFS, where
 * SQLite's locking is unreliable: `VECTIS_DATA_DIR` must be local to the member. kill -9 tests keep the page cache
 * and therefore prove crash consistency of the process, not power-loss durability, which rests on SQLite's own
 * fsync discipline with `synchronous = FULL`.
 */
import { mkdirSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import DatabaseConstructor, { type Database } from 'better-sqlite3'
import type { Logger } from '../common/logger.js'
import { DatabaseCorruptError, DatabaseOpenError, DatabaseTooNewError, MigrationError } from './errors.js'
import { applyMigrations, schemaVersion, SCHEMA_VERSION } from './migrations.js'

export const DATABASE_FILE_NAME = 'vectis.db'
export const BUSY_TIMEOUT_MS = 5000
/** SQLite's default (1000 pages of 4 KiB ≈ 4 MiB of WAL between checkpoints), named to document it. */
export const WAL_AUTOCHECKPOINT_PAGES = 1000
/** A WAL larger than this after a checkpoint is truncated back to it. */
export const JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024

export interface OpenedDatabase {
  db: Database
  path: string
  /** Schema version found on disk (0 for a new file) and the version after migration. */
  fromVersion: number
  toVersion: number
}

export function databasePath (dataDir: string): string {
  return join(resolve(dataDir), DATABASE_FILE_NAME)
}

/** Opens (creating if absent), checks and migrates the database. Throws the errors of errors.ts. */
export function openDatabase (dataDir: string, log: Logger): OpenedDatabase {
  const path = databasePath(dataDir)
  try {
    mkdirSync(resolve(dataDir), { recursive: true })
  } catch (err) {
    throw new DatabaseOpenError(path, { cause: err })
  }
  let isNew = true
  try {
    const st = statSync(path)
    if (!st.isFile()) throw new DatabaseOpenError(path, { cause: new Error('not a regular file') })
    isNew = st.size === 0
  } catch (err) {
    if (err instanceof DatabaseOpenError) throw err
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new DatabaseOpenError(path, { cause: err })
  }

  let db: Database
  try {
    db = new DatabaseConstructor(path)
  } catch (err) {
    throw classify(path, err)
  }
  try {
    configure(db, path)
    if (!isNew) {
      const rows = db.pragma('quick_check') as Array<{ quick_check: string }>
      const problems = rows.map((r) => r.quick_check).filter((s) => s !== 'ok')
      if (problems.length > 0) throw new DatabaseCorruptError(path, `quick_check: ${problems.slice(0, 3).join('; ')}`)
    }
    const { from, to } = migrate(db, path)
    if (from !== to) log.info({ path, fromVersion: from, toVersion: to }, 'database schema migrated')
    log.debug({ path, schemaVersion: to }, 'database open')
    return { db, path, fromVersion: from, toVersion: to }
  } catch (err) {
    try { db.close() } catch { /* already failing: the first error is the one to report */ }
    throw classify(path, err)
  }
}

function configure (db: Database, path: string): void {
  // busy_timeout first: the other pragmas may need a lock.
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
  // The first statement that reads the header: a file that is not a database fails here with SQLITE_NOTADB.
  const mode = db.pragma('journal_mode = WAL', { simple: true }) as string
  if (mode.toLowerCase() !== 'wal') {
    throw new DatabaseOpenError(path, { cause: new Error(`the file system refused WAL mode (journal_mode=${mode})`) })
  }
  db.pragma('synchronous = FULL')
  db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`)
  db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT_BYTES}`)
  db.pragma('foreign_keys = ON')
}

function migrate (db: Database, path: string): { from: number, to: number } {
  const found = schemaVersion(db)
  if (found > SCHEMA_VERSION) throw new DatabaseTooNewError(path, found, SCHEMA_VERSION)
  if (found === SCHEMA_VERSION) return { from: found, to: found }
  try {
    // IMMEDIATE: take the write lock before reading the version again, so two processes cannot both migrate.
    return db.transaction(() => {
      const again = schemaVersion(db)
      if (again > SCHEMA_VERSION) throw new DatabaseTooNewError(path, again, SCHEMA_VERSION)
      return applyMigrations(db, SCHEMA_VERSION)
    }).immediate()
  } catch (err) {
    if (err instanceof DatabaseTooNewError) throw err
    if (isCorruption(err)) throw err
    throw new MigrationError(path, found, SCHEMA_VERSION, { cause: err })
  }
}

function sqliteCode (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

function isCorruption (err: unknown): boolean {
  const code = sqliteCode(err)
  return code === 'SQLITE_NOTADB' || (code?.startsWith('SQLITE_CORRUPT') ?? false)
}

/** Maps a raw SQLite error to the store's error classes; store errors pass through. */
function classify (path: string, err: unknown): Error {
  if (err instanceof DatabaseOpenError || err instanceof DatabaseCorruptError || err instanceof DatabaseTooNewError ||
    err instanceof MigrationError) return err
  if (isCorruption(err)) {
    return new DatabaseCorruptError(path, `${sqliteCode(err)}: ${(err as Error).message}`, { cause: err })
  }
  return new DatabaseOpenError(path, { cause: err })
}

/** Checkpoints the whole WAL into the database file and truncates it; then closes. For a clean stop. */
export function closeDatabase (db: Database, log: Logger): void {
  if (!db.open) return
  try {
    db.pragma('wal_checkpoint(TRUNCATE)')
  } catch (err) {
    // Not fatal: the WAL is replayed at the next open.
    log.warn({ err }, 'final checkpoint failed')
  }
  db.close()
}
