/**
 * The member's store: owns the SQLite database under `VECTIS_DATA_DIR` and exposes the transfer journal, the
 * persisted cluster state and the transfer id allocator. `start()` opens, checks and migrates the database (and
 * fails with an error naming the file and the way out if it cannot); `stop()` checkpoints and closes it.
 *
 * All calls are synchronous (better-sqlite3) and each write is committed and fsynced before it returns: see
 * database.ts for why, and for what is NOT guaranteed (storage that lies about fsync, NFS).
 */
import type { Database } from 'better-sqlite3'
import { monotonicClock, type Clock } from '../common/clock.js'
import type { Startable } from '../common/lifecycle.js'
import type { Logger } from '../common/logger.js'
import { ClusterState } from './cluster-state.js'
import { closeDatabase, databasePath, openDatabase } from './database.js'
import { StoreConfigError, StoreNotStartedError } from './errors.js'
import { Journal } from './journal.js'
import { checkRetentionDays, DEFAULT_RETENTION_DAYS, JournalRetention, type RetentionInit } from './retention.js'
import { listTransfers, type TransfersResponse } from './transfers-api.js'
import { TransferIds } from './transfer-id.js'

export interface StoreComponents {
  logger: Logger
  clock?: Clock
}

export interface StoreInit {
  /** `VECTIS_DATA_DIR`: local to this member, never shared. The database is `<dataDir>/vectis.db`. */
  dataDir: string
  /** `VECTIS_JOURNAL_RETENTION_DAYS` (default 30): final transfers older than this are pruned. */
  retentionDays?: number
  /** Pruning schedule and batch sizes (defaults in retention.ts). */
  retention?: Omit<RetentionInit, 'retentionDays'>
}

interface Open {
  db: Database
  journal: Journal
  clusterState: ClusterState
  transferIds: TransferIds
  retention: JournalRetention
}

export class Store implements Startable {
  readonly path: string
  readonly retentionDays: number
  private readonly logger: Logger
  private readonly log: Logger
  private readonly clock: Clock
  private open: Open | undefined

  constructor (components: StoreComponents, private readonly init: StoreInit) {
    if (typeof init.dataDir !== 'string' || init.dataDir.length === 0) {
      throw new StoreConfigError('VECTIS_DATA_DIR', 'must be a directory path')
    }
    this.retentionDays = init.retentionDays ?? DEFAULT_RETENTION_DAYS
    checkRetentionDays(this.retentionDays)
    this.logger = components.logger
    this.log = components.logger.child({ component: 'store:database' })
    this.clock = components.clock ?? monotonicClock
    this.path = databasePath(init.dataDir)
  }

  get started (): boolean { return this.open !== undefined }

  async start (): Promise<void> {
    if (this.open !== undefined) return
    const { db, fromVersion, toVersion } = openDatabase(this.init.dataDir, this.log)
    try {
      const transferIds = new TransferIds(db)
      // The journal stamps each change with the highest epoch seen; the cluster state logs its raises in the
      // journal: each needs the other, hence the late binding.
      const clusterState: ClusterState = new ClusterState({
        db,
        clock: this.clock,
        journal: { appendEvent: (e) => journal.appendEvent(e) }
      })
      const journal: Journal = new Journal({
        db,
        clock: this.clock,
        transferIds,
        currentEpoch: () => clusterState.highestEpochNumber()
      })
      const retention = new JournalRetention({ logger: this.logger, clock: this.clock, journal },
        { ...this.init.retention, retentionDays: this.retentionDays })
      await retention.start()
      this.open = { db, journal, clusterState, transferIds, retention }
      this.log.info({ path: this.path, schemaVersion: toVersion, migratedFrom: fromVersion === toVersion ? undefined : fromVersion,
        epoch: clusterState.highestEpoch(), viewCounter: clusterState.viewCounter(), lastSeq: journal.lastSeq() }, 'store open')
    } catch (err) {
      db.close()
      throw err
    }
  }

  async stop (): Promise<void> {
    const o = this.open
    if (o === undefined) return
    this.open = undefined
    await o.retention.stop()
    closeDatabase(o.db, this.log)
    this.log.debug({ path: this.path }, 'store closed')
  }

  get journal (): Journal { return this.opened().journal }
  get clusterState (): ClusterState { return this.opened().clusterState }
  get transferIds (): TransferIds { return this.opened().transferIds }
  get retention (): JournalRetention { return this.opened().retention }

  /**
   * An online, consistent copy of the database to `destination` (SQLite's backup API: safe while the daemon
   * writes, unlike copying the file, whose WAL holds the latest commits): what journal backups are made of
   * (backups.ts; restored by merging their transfers, docs/contract.md §3.9). The copy also holds this member's
   * own state (identity, epochs): putting it in place of another member's vectis.db would clone this member.
   */
  async backup (destination: string): Promise<void> {
    const { db } = this.opened()
    await db.backup(destination)
    this.log.info({ path: this.path, destination }, 'database backed up')
  }

  /** `GET /api/transfers`: see transfers-api.ts. Throws TransfersQueryError (400) on a bad query. */
  listTransfers (query: URLSearchParams | string): TransfersResponse {
    return listTransfers(this.journal, query)
  }

  private opened (): Open {
    if (this.open === undefined) throw new StoreNotStartedError()
    return this.open
  }
}
