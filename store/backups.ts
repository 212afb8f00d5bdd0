/**
 * Journal backups (docs/design.md §5.7): online copies of a member's database in `VECTIS_SHARED_DIR/backups`, each
 * with a manifest holding its SHA-256, and the restore that merges a verified backup's transfers back into the
 * journal.
 *
 * A backup is `<id>.db` (a complete SQLite file, rollback-journal mode, so one file is the whole copy) and
 * `<id>.json` (its manifest). It is taken with SQLite's online backup API, which copies a consistent snapshot
 * while the daemon keeps writing, then checked (`quick_check`), fsynced and hashed under a hidden temporary name;
 * the manifest is written last, atomically, so a backup is listed only once it is whole and durable. The id is
 * `<UTC time>-<member>`: members writing to the same shared directory never collide.
 *
 * A restore first verifies everything and writes nothing until all of it passed: the file's size and SHA-256
 * against the manifest, then a scratch copy opened as a database (quick_check, schema migrated if the backup is
 * older), then every transfer row's shape. Only then are the rows merged into the journal (Journal.restoreBatch:
 * added when missing, never deleting or replacing), in batches of `RESTORE_BATCH` rows with the event loop free
 * in between: one transaction over a large journal would stall the leader's heartbeats past its lease. Each
 * batch is atomic and the whole is idempotent: a restore interrupted (leader lost, process killed) is completed
 * by running it again, and rows it added are replicated like any change.
 *
 * NOT in a backup's restore: cluster state (epochs, views, identity), cluster events, the replication position.
 * They belong to the member that wrote them; a backup file holds them, but restore reads transfers only.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import DatabaseConstructor, { type Database } from 'better-sqlite3'
import type { Clock } from '../common/clock.js'
import type { Logger } from '../common/logger.js'
import { closeDatabase, openDatabase } from './database.js'
import { NodeDurableFs, syncDirectory, type DurableFs } from './durable-fs.js'
import { BackupBusyError, BackupError, BackupNotFoundError, DatabaseCorruptError, DatabaseTooNewError, MigrationError, StoreConfigError } from './errors.js'
import { toRecord, validateEntry, type TransferRecord, type TransferRow } from './journal-records.js'
import type { RestoreResult } from './journal.js'

export const DEFAULT_BACKUP_KEEP = 7
/** Rows per restore transaction: a few milliseconds each. */
export const RESTORE_BATCH = 500
const ID = /^[0-9]{8}T[0-9]{9}Z-[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/

export interface BackupManifest {
  id: string
  createdAt: string
  /** The member whose journal was copied, its highest epoch then and its position in the leader's log. */
  member: string
  epoch: number
  journalSeq: number
  /** Transfer rows in the copy. */
  transfers: number
  schemaVersion: number
  /** Size and SHA-256 (lower-case hex) of `<id>.db`. */
  bytes: number
  sha256: string
}

export interface RestoreSummary extends RestoreResult {
  backup: string
  /** Rows read from the backup. */
  rows: number
}

export interface BackupsComponents {
  logger: Logger
  clock: Clock
  fs?: DurableFs
}

export interface BackupsInit {
  /** `VECTIS_SHARED_DIR/backups`. */
  dir: string
  /** This member's name: part of every id it writes. */
  member: string
  /** `VECTIS_BACKUP_KEEP`: the newest this many of the directory (every member's) stay when a new one is verified. */
  keep?: number
  /** Where a restore opens its scratch copy (this member's data directory). */
  scratchDir: string
}

/** What `create` copies: the database (an online copy to a path: Store.backup) and the member's epoch. */
export interface BackupSource {
  copyTo(destination: string): Promise<void>
  epoch: number
}

/** The journal as a restore uses it. */
export interface RestoreTarget {
  restoreBatch(rows: readonly TransferRecord[], backupId: string): RestoreResult
}

export class Backups {
  readonly dir: string
  readonly keep: number
  private readonly fs: DurableFs
  private readonly log: Logger
  /** One backup or restore at a time on this member: two copies of one database gain nothing. */
  private busy: string | undefined

  constructor (private readonly components: BackupsComponents, private readonly init: BackupsInit) {
    this.dir = init.dir
    this.keep = init.keep ?? DEFAULT_BACKUP_KEEP
    if (!Number.isSafeInteger(this.keep) || this.keep < 1) throw new StoreConfigError('VECTIS_BACKUP_KEEP', `must be a positive integer, got ${this.keep}`)
    this.fs = components.fs ?? new NodeDurableFs()
    this.log = components.logger.child({ component: 'store:backups' })
  }

  /** Copies the database, verifies and records the copy, then deletes the oldest beyond `keep`. */
  async create (source: BackupSource): Promise<BackupManifest> {
    return await this.exclusive('backup', async () => {
      await this.fs.mkdirp(this.dir)
      const createdAt = new Date(this.components.clock.wallNow())
      const id = `${createdAt.toISOString().replace(/[-:.]/g, '')}-${this.init.member}`
      if (!ID.test(id)) throw new BackupError(`cannot name a backup after member ${JSON.stringify(this.init.member)}`)
      const file = this.fileOf(id)
      const tmp = join(this.dir, `.${id}.db.part`)
      let manifest: BackupManifest
      try {
        await source.copyTo(tmp)
        const { transfers, schemaVersion, journalSeq } = checkCopy(tmp)
        const fh = await this.fs.open(tmp, 'existing')
        try { await fh.sync() } finally { await fh.close() }
        const { bytes, sha256 } = await digestOf(tmp)
        await this.fs.rename(tmp, file)
        manifest = { id, createdAt: createdAt.toISOString(), member: this.init.member, epoch: source.epoch, journalSeq, transfers, schemaVersion, bytes, sha256 }
        // Last: a manifest names a whole, durable file (writeFileAtomic syncs the directory, the rename included).
        await this.fs.writeFileAtomic(this.manifestOf(id), Buffer.from(JSON.stringify(manifest, null, 2) + '\n'))
      } catch (err) {
        await this.fs.unlink(tmp).catch(() => {})
        await this.fs.unlink(file).catch(() => {}) // a copy without its manifest would never be listed, nor pruned
        throw err
      }
      this.log.info({ ...manifest }, 'journal backed up')
      // The backup is whole whatever happens to the old ones (another member may be deleting them too).
      await this.prune().catch((err: unknown) => { this.log.warn({ err }, 'deleting old backups failed; the next backup retries') })
      return manifest
    })
  }

  /** Every backup in the directory, newest first. A manifest that cannot be read is logged and left out. */
  async list (): Promise<BackupManifest[]> {
    let names: string[]
    try {
      names = await this.fs.readdir(this.dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw err
    }
    const out: BackupManifest[] = []
    for (const name of names) {
      if (!name.endsWith('.json') || !ID.test(name.slice(0, -5))) continue
      try {
        out.push(parseManifest(Buffer.from(await this.fs.readFile(join(this.dir, name))).toString('utf8'), name.slice(0, -5)))
      } catch (err) {
        this.log.warn({ err, file: join(this.dir, name) }, 'unreadable backup manifest skipped')
      }
    }
    return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id))
  }

  async get (id: string): Promise<BackupManifest | undefined> {
    if (!ID.test(id)) return undefined
    try {
      return parseManifest(Buffer.from(await this.fs.readFile(this.manifestOf(id))).toString('utf8'), id)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw new BackupError(`backup ${id}: unreadable manifest: ${(err as Error).message}`)
    }
  }

  /**
   * Verifies backup `id` whole, then merges its transfers into `journal` (see the module's comment). Throws
   * BackupNotFoundError, BackupError (verification failed: nothing was written), or the journal's error (a
   * partial restore, completed by running it again).
   */
  async restore (id: string, journal: RestoreTarget): Promise<RestoreSummary> {
    return await this.exclusive('restore', async () => {
      const manifest = await this.get(id)
      if (manifest === undefined) throw new BackupNotFoundError(id)
      const file = this.fileOf(id)
      // A scratch copy left by a restore that was killed may have a WAL beside it: start from nothing.
      const scratch = join(this.init.scratchDir, `.restore-${id}`)
      await rm(scratch, { recursive: true, force: true })
      await this.fs.mkdirp(scratch)
      try {
        // The copy is what is verified and read: the shared file could change in between.
        const copy = join(scratch, 'vectis.db')
        await this.fs.copyFile(file, copy).catch((err: unknown) => {
          throw new BackupError(`backup ${id}: cannot read ${file}: ${(err as Error).message}`)
        })
        const actual = await digestOf(copy)
        if (actual.bytes !== manifest.bytes || actual.sha256 !== manifest.sha256) {
          throw new BackupError(`backup ${id} failed verification: ${file} has ${actual.bytes} bytes, SHA-256 ${actual.sha256}; ` +
            `its manifest says ${manifest.bytes} bytes, SHA-256 ${manifest.sha256}`)
        }
        let db: Database
        try {
          db = openDatabase(scratch, this.log).db
        } catch (err) {
          if (err instanceof DatabaseCorruptError || err instanceof DatabaseTooNewError || err instanceof MigrationError) {
            throw new BackupError(`backup ${id} cannot be read: ${err.message}`, { cause: err })
          }
          throw err
        }
        try {
          const rows = checkRows(db, id)
          const summary: RestoreSummary = { backup: id, rows, added: 0, kept: 0, rekeyed: 0 }
          for (const batch of pages(db)) {
            const r = journal.restoreBatch(batch, id)
            summary.added += r.added
            summary.kept += r.kept
            summary.rekeyed += r.rekeyed
            // Heartbeats, sync points and requests run between batches.
            await new Promise<void>((resolve) => setImmediate(resolve))
          }
          this.log.info({ ...summary }, 'journal restored from backup')
          return summary
        } finally {
          closeDatabase(db, this.log)
        }
      } finally {
        await rm(scratch, { recursive: true, force: true })
      }
    })
  }

  /** Deletes the oldest backups beyond `keep` (manifest first: a backup without one is not listed). */
  async prune (): Promise<string[]> {
    const old = (await this.list()).slice(this.keep)
    for (const b of old) {
      await this.fs.unlink(this.manifestOf(b.id))
      await this.fs.unlink(this.fileOf(b.id))
    }
    if (old.length > 0) {
      await syncDirectory(this.dir)
      this.log.info({ deleted: old.map((b) => b.id), keep: this.keep }, 'old backups deleted')
    }
    return old.map((b) => b.id)
  }

  fileOf (id: string): string { return join(this.dir, `${id}.db`) }
  private manifestOf (id: string): string { return join(this.dir, `${id}.json`) }

  private async exclusive<T> (what: string, fn: () => Promise<T>): Promise<T> {
    if (this.busy !== undefined) throw new BackupBusyError(this.busy)
    this.busy = what
    try {
      return await fn()
    } finally {
      this.busy = undefined
    }
  }
}

/**
 * The copy opens as a database, passes quick_check and becomes one self-contained file; its row count and journal
 * position (read from the copy itself: the journal moves on while it is taken).
 */
function checkCopy (path: string): { transfers: number, schemaVersion: number, journalSeq: number } {
  const db = new DatabaseConstructor(path)
  try {
    db.pragma('journal_mode = DELETE')
    const problems = (db.pragma('quick_check') as Array<{ quick_check: string }>).map((r) => r.quick_check).filter((s) => s !== 'ok')
    if (problems.length > 0) throw new BackupError(`the copy failed quick_check: ${problems.slice(0, 3).join('; ')}`)
    const transfers = (db.prepare('SELECT count(*) AS n FROM transfers').get() as { n: number }).n
    const journalSeq = (db.prepare('SELECT position FROM replication WHERE id = 1').get() as { position: number } | undefined)?.position ?? 0
    return { transfers, schemaVersion: db.pragma('user_version', { simple: true }) as number, journalSeq }
  } finally {
    db.close()
  }
}

async function digestOf (path: string): Promise<{ bytes: number, sha256: string }> {
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer)
    bytes += (chunk as Buffer).length
  }
  return { bytes, sha256: hash.digest('hex') }
}

function parseManifest (text: string, id: string): BackupManifest {
  const m = JSON.parse(text) as Partial<BackupManifest>
  const count = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0
  if (m === null || typeof m !== 'object' || m.id !== id || typeof m.member !== 'string' || typeof m.createdAt !== 'string' ||
    Number.isNaN(Date.parse(m.createdAt)) || typeof m.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(m.sha256) ||
    !count(m.bytes) || !count(m.epoch) || !count(m.journalSeq) || !count(m.transfers) || !count(m.schemaVersion)) {
    throw new Error('not a backup manifest of this id')
  }
  return {
    id, createdAt: m.createdAt, member: m.member, epoch: m.epoch!, journalSeq: m.journalSeq!, transfers: m.transfers!,
    schemaVersion: m.schemaVersion!, bytes: m.bytes!, sha256: m.sha256
  }
}

const PAGE = 'SELECT rowid AS rowid_, * FROM transfers WHERE rowid > ? ORDER BY rowid LIMIT ?'

/** The backup's transfer rows in pages of RESTORE_BATCH, as records. */
function * pages (db: Database): Generator<TransferRecord[]> {
  const page = db.prepare<[number, number], TransferRow & { rowid_: number }>(PAGE)
  let after = 0
  for (;;) {
    const rows = page.all(after, RESTORE_BATCH)
    if (rows.length === 0) return
    after = rows[rows.length - 1]!.rowid_
    yield rows.map(toRecord)
  }
}

/** Every row has a transfer's shape (the restore refuses the whole backup otherwise). Returns the count. */
function checkRows (db: Database, id: string): number {
  let n = 0
  for (const batch of pages(db)) {
    for (const r of batch) {
      try {
        validateEntry({ seq: 1, at: r.updatedAt, epoch: r.epoch, kind: 'transfer', data: r })
      } catch (err) {
        throw new BackupError(`backup ${id}: transfer ${String(r.id)} is malformed: ${(err as Error).message}`)
      }
      n++
    }
  }
  return n
}
