/**
 * Errors of the member's store. Every error that concerns the database file names its path, and the ones an
 * operator must act on say what to do: the daemon prints them and exits rather than guessing.
 */

export class StoreError extends Error {
  override name = 'StoreError'
}

/** The data directory or database file cannot be opened (permissions, missing directory, I/O error). */
export class DatabaseOpenError extends StoreError {
  override name = 'DatabaseOpenError'
  constructor (readonly path: string, options?: ErrorOptions) {
    super(`cannot open the database ${path}: ${causeMessage(options)}. Check that VECTIS_DATA_DIR exists, is ` +
      'writable by the daemon and is on local storage (never NFS or another shared volume)', options)
  }
}

/**
 * The file exists but is not a readable SQLite database, or its integrity check fails. It is never recreated
 * silently: it holds the persisted epoch and view counter, and an empty replacement would let this member reuse
 * an epoch.
 */
export class DatabaseCorruptError extends StoreError {
  override name = 'DatabaseCorruptError'
  constructor (readonly path: string, readonly detail: string, options?: ErrorOptions) {
    super(`the database ${path} is corrupt or not a SQLite database (${detail}). It is not recreated ` +
      'automatically. Stop the daemon, then either restore the file from a backup, or move it away together ' +
      `with ${path}-wal and ${path}-shm (e.g. mv ${path} ${path}.corrupt) to start this member with an empty ` +
      'journal (its epoch and view counter then continue from what the other members report; a standalone ' +
      'member restarts them from 1)', options)
  }
}

/** The database was written by a newer release (schema version higher than this code knows). */
export class DatabaseTooNewError extends StoreError {
  override name = 'DatabaseTooNewError'
  constructor (readonly path: string, readonly databaseVersion: number, readonly codeVersion: number) {
    super(`the database ${path} has schema version ${databaseVersion}, newer than the ${codeVersion} this ` +
      'release understands. Run the release that wrote it (or a newer one); downgrading the schema is not ' +
      'supported. Restoring a backup taken before the upgrade is the way back')
  }
}

/** A migration step failed; the transaction was rolled back, the database is still at `fromVersion`. */
export class MigrationError extends StoreError {
  override name = 'MigrationError'
  constructor (readonly path: string, readonly fromVersion: number, readonly toVersion: number,
    options?: ErrorOptions) {
    super(`migrating the database ${path} from schema version ${fromVersion} to ${toVersion} failed ` +
      `(rolled back, still at version ${fromVersion}): ${causeMessage(options)}`, options)
  }
}

export class StoreNotStartedError extends StoreError {
  override name = 'StoreNotStartedError'
  constructor () { super('the store is not started') }
}

export class StoreConfigError extends StoreError {
  override name = 'StoreConfigError'
  constructor (readonly field: string, reason: string) {
    super(`${field}: ${reason}`)
  }
}

export class TransferNotFoundError extends StoreError {
  override name = 'TransferNotFoundError'
  constructor (readonly id: string) { super(`no transfer ${id} in the journal`) }
}

/** A transfer change attempted while the lease check installed with Journal.setLeaderCheck says no. */
export class NotLeaderError extends StoreError {
  override name = 'NotLeaderError'
  constructor () { super('not the leader (lease expired or never held): transfer changes are refused') }
}

/** A journal call with values that cannot be stored (a negative offset, an unknown status, ...). */
export class InvalidTransferError extends StoreError {
  override name = 'InvalidTransferError'
}

/** Every transfer id of the epoch's range belongs to a restartable transfer: see transfer-id.ts. */
export class TransferIdsExhaustedError extends StoreError {
  override name = 'TransferIdsExhaustedError'
  constructor (readonly epoch: number) {
    super(`every transfer id of epoch ${epoch}'s range is held by an in-progress or interrupted transfer; ` +
      'finish, fail or remove some of them, or let the next leader election start a new range')
  }
}

/** Entries shipped from another member contradict this member's log (see Journal.applyRun). */
export class ReplicationConflictError extends StoreError {
  override name = 'ReplicationConflictError'
}

/** A backup could not be taken, or failed verification at restore (nothing was written then). */
export class BackupError extends StoreError {
  override name = 'BackupError'
}

export class BackupNotFoundError extends BackupError {
  override name = 'BackupNotFoundError'
  constructor (readonly id: string) { super(`no backup ${id}`) }
}

/** One backup or restore at a time per member. */
export class BackupBusyError extends BackupError {
  override name = 'BackupBusyError'
  constructor (readonly running: string) { super(`a ${running} is already running on this member; try again when it ends`) }
}

/** A bad `GET /api/transfers` query: the HTTP layer answers 400 with this message. */
export class TransfersQueryError extends StoreError {
  override name = 'TransfersQueryError'
  readonly statusCode = 400
}

function causeMessage (options?: ErrorOptions): string {
  const c = options?.cause
  return c instanceof Error ? c.message : String(c)
}
