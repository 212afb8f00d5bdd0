/**
 * A restart of a push that was already delivered (docs/pesit.md §9.6): its requester never got ACK(TRANS.END) (the
 * leader died right after the rename, or the connection broke there) and restarts the same transfer. Refusing it
 * as "already exists" would leave the partner unable to tell that the file arrived: it would send it again under a
 * new PI 13, and the file would be delivered twice.
 *
 * The completion record written before the rename (receive-store.ts) recognises it: same partner, virtual file,
 * PI 13, article format and length, final name and announced size. The transfer then runs as a replay: the restart
 * point is the record's sync point, the bytes resent after it are compared with the stored file, nothing is
 * written; at TRANS.END the counts must be the record's, and ACK(TRANS.END) confirms the delivery that happened.
 * A replay whose bytes or counts differ is refused with D2-204, as any other transfer under an existing name.
 *
 * If the leader died between the record and the rename, the partial file is the complete file: the replay
 * compares against it and does the rename at the end. If the file was taken away by its consumer since (it is
 * in neither place), only the counts can be compared.
 */
import { join } from 'node:path'
import type { DurableFile, DurableFs } from '../store/durable-fs.js'
import { DIAG } from './diagnostics.js'
import { PesitError, TransferStorageError } from './errors.js'
import { deliver, latestCheckpoint, matches, recordedPartial, type Completion, type IncomingKey, type ReceivedData } from './receive-store.js'

export class ReplayedFile implements ReceivedData {
  bytes: number
  articles: number
  syncPoint: number
  readonly resumed = true
  private readonly scratch = Buffer.allocUnsafe(64 * 1024)

  private constructor (
    private readonly fs: DurableFs,
    private readonly key: IncomingKey,
    private readonly completion: Completion,
    start: { syncPoint: number, offset: number, articles: number },
    /** the delivered bytes: the final file, or the partial one not renamed yet; undefined when taken away */
    private stored: DurableFile | undefined,
    /** the partial file still to be renamed at the end */
    private readonly pendingRename: string | undefined
  ) {
    this.bytes = start.offset
    this.articles = start.articles
    this.syncPoint = start.syncPoint
  }

  /**
   * The replay of the transfer `key` whose file is delivered under `finalName`, if its completion record says so;
   * undefined otherwise (then an existing file under that name is refused as usual).
   */
  static async open (fs: DurableFs, key: IncomingKey, finalName: string, announcedKb: number): Promise<ReplayedFile | undefined> {
    const record = (await latestCheckpoint(fs, key))?.checkpoint
    const c = record?.completed
    if (record === undefined || c === undefined || !matches(record, key) || c.finalName !== finalName || c.announcedKb !== announcedKb) return undefined
    const finalPath = join(key.directory, finalName)
    const partial = join(key.directory, recordedPartial(record, key.stem))
    try {
      if (await fs.exists(finalPath)) return new ReplayedFile(fs, key, c, record, await fs.open(finalPath, 'read'), undefined)
      if (await fs.exists(partial)) return new ReplayedFile(fs, key, c, record, await fs.open(partial, 'read'), partial)
    } catch (err) {
      throw new TransferStorageError(`cannot read the file delivered as ${finalPath}`, DIAG.CANNOT_OPEN, { cause: err })
    }
    return new ReplayedFile(fs, key, c, record, undefined, undefined)
  }

  /** The resent bytes must be the stored ones, at the same offsets. */
  async append (data: Uint8Array): Promise<void> {
    if (this.bytes + data.length > this.completion.bytes) throw this.differs('more bytes than were delivered')
    if (this.stored !== undefined) {
      for (let off = 0; off < data.length;) {
        const n = await this.stored.read(this.scratch.subarray(0, Math.min(this.scratch.length, data.length - off)), this.bytes + off)
        if (n <= 0 || Buffer.compare(this.scratch.subarray(0, n), data.subarray(off, off + n)) !== 0) throw this.differs('the bytes resent differ from the file delivered')
        off += n
      }
    }
    this.bytes += data.length
  }

  countArticle (): void { this.articles++ }

  async handOff (): Promise<{ offset: number, articles: number }> { return { offset: this.bytes, articles: this.articles } }

  /** Nothing to make durable: the data is. */
  async checkpointAt (syncPoint: number): Promise<void> { this.syncPoint = Math.max(this.syncPoint, syncPoint) }

  async syncData (): Promise<void> {}

  /** The counts must be those delivered; a rename the dead leader did not get to is done now. */
  async commit (finalName: string, beforeRename: () => void): Promise<string> {
    if (this.bytes !== this.completion.bytes || this.articles !== this.completion.articles) {
      throw this.differs(`${this.bytes} bytes and ${this.articles} articles, delivered ${this.completion.bytes} and ${this.completion.articles}`)
    }
    await this.closeHandle()
    const finalPath = join(this.key.directory, finalName)
    if (this.pendingRename !== undefined) {
      beforeRename()
      await deliver(this.fs, this.pendingRename, finalPath, this.key.directory)
    }
    return finalPath
  }

  sha256 (): string { return this.completion.sha256 }

  /** A replay never removes anything: the file stays delivered. */
  async discard (): Promise<void> { await this.closeHandle() }

  async closeHandle (): Promise<void> {
    const f = this.stored
    this.stored = undefined
    await f?.close().catch(() => {})
  }

  private differs (why: string): PesitError {
    return new PesitError(`${this.completion.finalName} already exists and this transfer is not the one delivered: ${why}`, DIAG.FILE_EXISTS)
  }
}
