/**
 * Durable storage of one incoming file: a hidden partial file and its checkpoint in the virtual file's
 * directory (under VECTIS_SHARED_DIR, so a new leader that mounts it can resume).
 *
 * Order of effects (docs/design.md §5.3; docs/pesit.md §9.1, §8.5):
 *  - checkpoint (before ACK(SYN)): buffered data written, data fsync, checkpoint JSON written to a temporary
 *    name, fsync, rename, directory fsync (DurableFs.writeFileAtomic);
 *  - commit (before ACK(TRANS.END)): data fsync, the checkpoint rewritten as the completion record (the file's
 *    size, article count, SHA-256, final name and announced size: what recognises a restart of this very transfer
 *    whose ACK(TRANS.END) was lost, receive-replay.ts), `beforeRename()` (the lease check), atomic rename to the
 *    final name, directory fsync. The completion record stays (swept after COMPLETION_RECORD_DAYS).
 *
 * NOT guaranteed: bytes received after the last checkpoint survive a crash (they are resent after a restart).
 */
import { join } from 'node:path'
import { createHash, type Hash } from 'node:crypto'
import type { DurableFile, DurableFs } from '../store/durable-fs.js'
import { TransferStorageError } from './errors.js'
import { WriteBehind } from './write-behind.js'
import { DIAG } from './diagnostics.js'

export const CHECKPOINT_VERSION = 1

/** What a restart needs; written at each acknowledged sync point. */
export interface Checkpoint {
  version: number
  transferId: number
  partner: string
  server: string
  file: string
  syncPoint: number
  offset: number
  articles: number
  articleFormat: number
  articleLength: number
  updatedAt: string
  /** set once the file is complete, before its rename: the record of what was delivered */
  completed?: Completion
  /** the partial file (a name in the same directory) holding the data up to `offset` */
  partial?: string
}

/** What a delivered file was: a restart of the same transfer must match it (receive-replay.ts). */
export interface Completion {
  bytes: number
  articles: number
  sha256: string
  finalName: string
  /** PI 42 in KB as announced in CREATE (0: none) */
  announcedKb: number
}

/** How long completion records are kept beside the files they describe. */
export const COMPLETION_RECORD_DAYS = 7

export interface IncomingKey {
  directory: string
  stem: string
  partner: string
  server: string
  file: string
  transferId: number
  articleFormat: number
  articleLength: number
  /** the epoch of the leadership receiving: its partial file has a name of its own */
  epoch: number
}

/** The partial file a leadership of `epoch` writes for transfer `stem`. */
export function partialNameFor (stem: string, epoch: number): string { return `${stem}.${epoch}.part` }

/** The partial file a checkpoint or completion record names (records written before epochs in names: the bare one). */
export function recordedPartial (c: Checkpoint, stem: string): string { return c.partial ?? `${stem}.part` }

/**
 * The checkpoint a leadership of `epoch` writes for transfer `stem`. Each leadership has its own, as for partial
 * files: an old leader paused past its lease check and resumed later rewrites its own, never the one a newer
 * leadership continues from; a restart reads the newest (`latestCheckpoint`).
 */
export function checkpointNameFor (stem: string, epoch: number): string { return `${stem}.${epoch}.ckpt` }

/**
 * The transfer stem and leadership epoch of one of its files' names (`<stem>.<epoch><suffix>`; epoch -1 for the
 * name without one, of earlier releases), if it is one.
 */
export function parseEpochName (name: string, suffix: string): { stem: string, epoch: number } | undefined {
  if (!name.endsWith(suffix)) return undefined
  const m = /^(.+?)(?:\.(\d{1,15}))?$/.exec(name.slice(0, name.length - suffix.length))
  return m === null ? undefined : { stem: m[1]!, epoch: m[2] === undefined ? -1 : Number(m[2]) }
}

/** The epoch in the name of one of transfer `stem`'s files (`<stem>.<epoch><suffix>`): -1 for the name without one. */
function epochOf (name: string, stem: string, suffix: string): number | undefined {
  const p = parseEpochName(name, suffix)
  return p?.stem === stem ? p.epoch : undefined
}

/** Transfer `stem`'s files in `directory` with `suffix` (`.ckpt`, `.part`), newest leadership first. */
async function filesOf (fs: DurableFs, key: Pick<IncomingKey, 'directory' | 'stem'>, suffix: string): Promise<Array<{ name: string, epoch: number }>> {
  const names = await fs.readdir(key.directory).catch(() => [] as string[])
  return names.flatMap((name) => {
    const epoch = epochOf(name, key.stem, suffix)
    return epoch === undefined ? [] : [{ name, epoch }]
  }).sort((a, b) => b.epoch - a.epoch)
}

/** The newest leadership's readable checkpoint of transfer `stem`: what a restart resumes from, a replay matches. */
export async function latestCheckpoint (fs: DurableFs, key: Pick<IncomingKey, 'directory' | 'stem'>): Promise<{ path: string, checkpoint: Checkpoint } | undefined> {
  for (const { name } of await filesOf(fs, key, '.ckpt')) {
    const path = join(key.directory, name)
    const checkpoint = await readCheckpoint(fs, path)
    if (checkpoint !== undefined) return { path, checkpoint }
  }
  return undefined
}

/**
 * Per incoming transfer: a buffer filling and one being written. Large buffers stream faster; a server runs many
 * transfers at once, so their size shrinks with the number in progress, keeping these buffers of all transfers
 * within RECEIVE_BUFFER_BUDGET until each is at its floor.
 */
const WRITE_BUFFER_MAX = 512 * 1024
const WRITE_BUFFER_MIN = 128 * 1024
const RECEIVE_BUFFER_BUDGET = 64 * 1024 * 1024

/** The write buffer of a transfer opened while `active` transfers (itself included) are in progress. */
export function writeBufferFor (active: number): number {
  const step = 64 * 1024
  const fair = Math.floor(RECEIVE_BUFFER_BUDGET / 2 / Math.max(1, active) / step) * step
  return Math.min(WRITE_BUFFER_MAX, Math.max(WRITE_BUFFER_MIN, fair))
}

/** What the receive direction stores data through: an IncomingFile, or a ReplayedFile (receive-replay.ts). */
export interface ReceivedData {
  /** article bytes (PI 27) and articles (PI 28) so far, and the last durable sync point */
  readonly bytes: number
  readonly articles: number
  readonly syncPoint: number
  /** this attempt continues an earlier one */
  readonly resumed: boolean
  append(data: Uint8Array): Promise<void>
  countArticle(): void
  handOff(): Promise<{ offset: number, articles: number }>
  checkpointAt(syncPoint: number, offset: number, articles: number, beforeRecord?: () => void): Promise<void>
  syncData(): Promise<void>
  commit(finalName: string, beforeRename: () => void, announcedKb?: number): Promise<string>
  sha256(): string
  discard(): Promise<void>
  closeHandle(): Promise<void>
}

export class IncomingFile implements ReceivedData {
  private readonly out: WriteBehind
  /** article bytes received (PI 27) and articles (PI 28) */
  bytes: number
  articles: number
  syncPoint: number
  private closed = false
  /** SHA-256 of the bytes received, in order (the prefix re-read from the partial file on a resume) */
  private readonly hash: Hash = createHash('sha256')

  private constructor (
    private readonly fs: DurableFs,
    private readonly file: DurableFile,
    readonly key: IncomingKey,
    start: { offset: number, articles: number, syncPoint: number },
    /** true when this attempt continues an earlier one from a checkpoint */
    readonly resumed: boolean,
    bufferBytes: number,
    /** the partial file's name in the directory */
    private readonly partialName: string
  ) {
    this.out = new WriteBehind(async (data, at) => { await file.write(data, at) }, start.offset, this.hash, bufferBytes,
      (err) => new TransferStorageError(`write to ${this.partialPath} failed`, DIAG.IO_ERROR, { cause: err }))
    this.bytes = start.offset
    this.articles = start.articles
    this.syncPoint = start.syncPoint
    this.resumedAt = { syncPoint: start.syncPoint, offset: start.offset, articles: start.articles }
  }

  /** where this attempt started (0, or the checkpoint it resumed from) */
  private readonly resumedAt: { syncPoint: number, offset: number, articles: number }

  get partialPath (): string { return join(this.key.directory, this.partialName) }
  private get checkpointPath (): string { return join(this.key.directory, checkpointNameFor(this.key.stem, this.key.epoch)) }

  /**
   * Opens the partial file. With `restart`, resumes from a matching durable checkpoint (truncating what came
   * after it); without one, or without `restart`, starts from byte 0.
   *
   * Each leadership writes a partial file and a checkpoint of its own (`partialNameFor`, `checkpointNameFor`): a
   * restart taken over from another epoch copies the acknowledged prefix into this epoch's file and writes this
   * epoch's checkpoint naming it, before anything else. An old leader paused past its lease check and resumed later
   * then writes into its own files, orphans, never into the ones this leadership continues (docs/pesit.md §9.2).
   */
  static async open (fs: DurableFs, key: IncomingKey, restart: boolean, bufferBytes = WRITE_BUFFER_MAX): Promise<IncomingFile> {
    try {
      await fs.mkdirp(key.directory)
      const mine = partialNameFor(key.stem, key.epoch)
      if (restart) {
        const latest = await latestCheckpoint(fs, key)
        const ckpt = latest?.checkpoint
        const recorded = ckpt === undefined ? undefined : recordedPartial(ckpt, key.stem)
        const size = recorded === undefined ? undefined : (await fs.stat(join(key.directory, recorded)))?.size
        if (ckpt !== undefined && recorded !== undefined && ckpt.completed === undefined && size !== undefined && size >= ckpt.offset && matches(ckpt, key)) {
          if (recorded !== mine) await fs.copyFile(join(key.directory, recorded), join(key.directory, mine))
          const f = await fs.open(join(key.directory, mine), 'existing')
          await f.truncate(ckpt.offset)
          await f.sync()
          const inc = new IncomingFile(fs, f, key, ckpt, true, bufferBytes, mine)
          if (recorded !== mine || latest!.path !== inc.checkpointPath) {
            await fs.syncDir(key.directory)
            await inc.writeRecord(ckpt.syncPoint, ckpt.offset, ckpt.articles)
            // This leadership's checkpoint is the transfer's now. The others go: one an old leader writes late is
            // of a lower epoch, but those of a cluster whose shared directory this one inherited (its epochs
            // started again from 1) may be higher and would otherwise stay the newest.
            for (const c of await filesOf(fs, key, '.ckpt')) if (c.epoch !== key.epoch) await fs.unlink(join(key.directory, c.name))
            await fs.syncDir(key.directory)
          }
          await inc.hashPrefix(ckpt.offset)
          return inc
        }
      }
      // A new transfer (or a restart without a usable checkpoint): drop any stale checkpoint first, so a crash
      // between here and the first sync point cannot pair it with the new, truncated partial file.
      for (const c of await filesOf(fs, key, '.ckpt')) await fs.unlink(join(key.directory, c.name))
      await fs.syncDir(key.directory)
      const f = await fs.open(join(key.directory, mine), 'create')
      return new IncomingFile(fs, f, key, { offset: 0, articles: 0, syncPoint: 0 }, false, bufferBytes, mine)
    } catch (err) {
      throw new TransferStorageError(`cannot open the partial file in ${key.directory}`, DIAG.CANNOT_OPEN, { cause: err })
    }
  }

  private async hashPrefix (len: number): Promise<void> {
    const buf = Buffer.allocUnsafe(Math.min(len, 1 << 20))
    for (let pos = 0; pos < len;) {
      const n = await this.file.read(buf.subarray(0, Math.min(buf.length, len - pos)), pos)
      if (n <= 0) throw new Error(`partial file shorter than its checkpoint (${pos} < ${len})`)
      this.hash.update(buf.subarray(0, n))
      pos += n
    }
  }

  private digest: string | undefined

  /** Hex SHA-256 of everything received: at the end, after the last flush (commit or syncData). */
  sha256 (): string {
    this.digest ??= this.hash.digest('hex')
    return this.digest
  }

  /** Appends article bytes (copied into the write buffer, hashed and written a buffer at a time). */
  async append (data: Uint8Array): Promise<void> {
    await this.out.append(data)
    this.bytes += data.length
  }

  countArticle (): void { this.articles++ }

  /** Everything received so far made durable, then the checkpoint for `syncPoint`. */
  async checkpoint (syncPoint: number): Promise<void> {
    await this.out.flush()
    await this.checkpointAt(syncPoint, this.bytes, this.articles)
  }

  /**
   * Hands the buffered bytes to the file (not durable yet) and returns the position they end at: what a
   * checkpoint taken now stands for. Lets the caller make that checkpoint durable while data keeps arriving.
   */
  async handOff (): Promise<{ offset: number, articles: number }> {
    await this.out.flush()
    return { offset: this.bytes, articles: this.articles }
  }

  /**
   * Data fsync (covering at least everything handed off up to `offset`), then the checkpoint record made durable.
   * Safe to run while later data is being appended: the fsync may cover more than `offset`, never less.
   */
  /**
   * `beforeRecord` runs synchronously right before the checkpoint file is written (the lease check: a member that
   * lost its lease while it waited for the fsync must not rewrite a checkpoint a newer leader now owns) and may throw
   * to prevent it.
   */
  async checkpointAt (syncPoint: number, offset: number, articles: number, beforeRecord?: () => void): Promise<void> {
    // Writes are issued in order, one at a time: once the last one is done, everything handed off is written.
    await this.out.written()
    try {
      await this.file.sync()
    } catch (err) {
      throw new TransferStorageError(`fsync of ${this.partialPath} failed`, DIAG.IO_ERROR, { cause: err })
    }
    beforeRecord?.()
    await this.writeRecord(syncPoint, offset, articles)
    this.syncPoint = Math.max(this.syncPoint, syncPoint)
    this.lastCheckpoint = { syncPoint, offset, articles }
  }

  /** the last checkpoint written: a restart of the completed transfer resumes there */
  private lastCheckpoint: { syncPoint: number, offset: number, articles: number } | undefined

  private async writeRecord (syncPoint: number, offset: number, articles: number, completed?: Completion): Promise<void> {
    const c: Checkpoint = {
      version: CHECKPOINT_VERSION,
      transferId: this.key.transferId,
      partner: this.key.partner,
      server: this.key.server,
      file: this.key.file,
      syncPoint,
      offset,
      articles,
      articleFormat: this.key.articleFormat,
      articleLength: this.key.articleLength,
      updatedAt: new Date().toISOString(),
      partial: this.partialName,
      ...(completed !== undefined ? { completed } : {})
    }
    try {
      await this.fs.writeFileAtomic(this.checkpointPath, Buffer.from(JSON.stringify(c)))
    } catch (err) {
      throw new TransferStorageError('checkpoint write failed', DIAG.IO_ERROR, { cause: err })
    }
  }

  async syncData (): Promise<void> {
    await this.out.flush()
    await this.out.written()
    try {
      await this.file.sync()
    } catch (err) {
      throw new TransferStorageError(`fsync of ${this.partialPath} failed`, DIAG.IO_ERROR, { cause: err })
    }
  }

  /**
   * Makes the file durable under `finalName`, its completion record first. `beforeRename` runs synchronously right
   * before the rename (the lease check) and may throw to prevent it.
   */
  async commit (finalName: string, beforeRename: () => void, announcedKb = 0): Promise<string> {
    await this.syncData()
    await this.closeHandle()
    const finalPath = join(this.key.directory, finalName)
    // The restart point a replay resumes from: the last checkpoint this attempt wrote, or the one it resumed at.
    const at = this.lastCheckpoint ?? this.resumedAt
    await this.writeRecord(at.syncPoint, at.offset, at.articles,
      { bytes: this.bytes, articles: this.articles, sha256: this.sha256(), finalName, announcedKb })
    beforeRename()
    await deliver(this.fs, this.partialPath, finalPath, this.key.directory)
    await removeOrphans(this.fs, this.key)
    return finalPath
  }

  /** Removes the partial file and checkpoint (a transfer that can never be resumed, e.g. bad counts). */
  async discard (): Promise<void> {
    await this.closeHandle()
    await this.fs.unlink(this.partialPath).catch(() => {})
    await this.fs.unlink(this.checkpointPath).catch(() => {})
    await removeOrphans(this.fs, this.key)
  }

  /** Closes without committing: the partial file and the last durable checkpoint stay for a restart. */
  async closeHandle (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.out.settled()
    await this.file.close().catch(() => {})
  }
}

/**
 * Partial files and checkpoints other leaderships than `key.epoch`'s left for this transfer (what a paused old
 * leader may still write into), once it is delivered or discarded: the files of `key.epoch` are not touched.
 */
async function removeOrphans (fs: DurableFs, key: Pick<IncomingKey, 'directory' | 'stem' | 'epoch'>): Promise<void> {
  for (const suffix of ['.part', '.ckpt']) {
    for (const f of await filesOf(fs, key, suffix)) {
      if (f.epoch !== key.epoch) await fs.unlink(join(key.directory, f.name)).catch(() => {})
    }
  }
}

/**
 * Delivers a received file under its final name: a link, then the partial name removed, then the directory fsync.
 * A link never replaces: a file already delivered under that name (by a newer leader, while this member was paused
 * past its lease check) stays as it is, and this delivery fails with D2-204; any other failure is D2-225.
 */
export async function deliver (fs: DurableFs, partial: string, finalPath: string, directory: string): Promise<void> {
  try {
    await fs.link(partial, finalPath)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new TransferStorageError(`${finalPath} was delivered meanwhile; not replaced`, DIAG.FILE_EXISTS, { cause: err })
    throw new TransferStorageError(`delivery as ${finalPath} failed`, DIAG.NOT_DELIVERED, { cause: err })
  }
  try {
    await fs.unlink(partial)
    await fs.syncDir(directory)
  } catch (err) {
    throw new TransferStorageError(`delivery as ${finalPath} failed`, DIAG.NOT_DELIVERED, { cause: err })
  }
}

/** Whether checkpoint `c` is one of the transfer `k` describes (same PI 13, partner, virtual file, articles). */
export function matches (c: Checkpoint, k: IncomingKey): boolean {
  return c.version === CHECKPOINT_VERSION && c.transferId === k.transferId && c.partner === k.partner &&
    c.file === k.file && c.articleFormat === k.articleFormat && c.articleLength === k.articleLength &&
    Number.isSafeInteger(c.offset) && c.offset >= 0 && Number.isSafeInteger(c.syncPoint) && c.syncPoint >= 0
}

export async function readCheckpoint (fs: DurableFs, path: string): Promise<Checkpoint | undefined> {
  if (!(await fs.exists(path))) return undefined
  try {
    const c = JSON.parse(Buffer.from(await fs.readFile(path)).toString('utf8')) as Checkpoint
    return typeof c === 'object' && c !== null ? c : undefined
  } catch {
    return undefined // an unreadable checkpoint means "no restart context", never a crash
  }
}
