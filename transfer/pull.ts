/**
 * The requester side of a pull (docs/pesit.md §18; §17 is the server's side): CONNECT (read access), SELECT, ORF,
 * READ with the restart point, then the server's DTFs and SYNs until DTF.END, TRANS.END, CRF, DESELECT, RELEASE.
 *
 * Durability, in this order: data goes to a hidden partial file beside the destination; at each SYN the partial
 * file is fsynced, then `onCheckpoint` records the point (the caller keeps it for `--restart`), then ACK(SYN) goes
 * out. At the end: fsync, rename to the destination, directory fsync, and only then TRANS.END, so a server whose
 * after-send action deletes the source never does so before the copy is durable here.
 *
 * Restart: the receiver fixes the restart point (READ PI 18): the last checkpoint made durable. The partial file is
 * truncated to its offset and its prefix hashed again, so the SHA-256 reported is the whole file's.
 */
import { link, open, stat, unlink, type FileHandle } from 'node:fs/promises'
import { createHash, type Hash } from 'node:crypto'
import { basename, dirname, join } from 'node:path'
import type { Logger } from '../common/logger.js'
import { silentLogger } from '../common/logger.js'
import { getDiagnostic, getGroup, getNumber, getString, splitArticles, type Fpdu } from './codec.js'
import { DIAG, describeDiagnostic, isSuccess, type Diagnostic } from './diagnostics.js'
import { PeerRefusalError, PesitConfigError, PesitError, ProtocolError, UnexpectedFpduError } from './errors.js'
import { fpduDisplayName } from './fpdu-types.js'
import { RequesterSession, checkRequesterOptions, withChannel, type RequesterOptions } from './requester-session.js'
import { WriteBehind } from './write-behind.js'
import { syncDirectory } from '../store/durable-fs.js'

export interface PullCheckpoint {
  syncPoint: number
  /** bytes of the file up to this point */
  offset: number
  articles: number
}

export interface PullProgress {
  bytes: number
  /** size announced in ACK(SELECT) (PGI 40, rounded up to KB), 0 if none */
  announced: number
  syncPoint: number
}

export interface PullOptions extends RequesterOptions {
  /** where the file is stored; a directory: the file keeps the name the server gives it */
  destination: string
  /** one file of the virtual file: PI 12 becomes `FILEID/name` */
  name?: string
  /** a restart: the server's PI 13 of the first attempt and the last checkpoint made durable (0 if none) */
  restart?: { transferId: number, checkpoint: PullCheckpoint, path: string }
  /**
   * After ACK(SELECT), before READ: the server's PI 13 and where the file will be stored. The CLI records both so
   * that an attempt cut at any later moment can be restarted.
   */
  onSelected?: (s: { transferId: number, path: string, remoteName?: string }) => Promise<void>
  /** after the partial file was fsynced at a sync point, before it is acknowledged */
  onCheckpoint?: (c: PullCheckpoint) => Promise<void>
  onProgress?: (p: PullProgress) => void
  /**
   * Cancels the pull cleanly in its data phase: at the next FPDU received the pull sends IDT (PI 19 = 16, cancelled
   * by the requester, D2-216), drops what the server had in flight until ACK(IDT), closes the file and the
   * connection (CRF, DESELECT, RELEASE) and throws PullCancelledError. (`signal` cuts the connection.)
   */
  cancel?: AbortSignal
}

/** The pull was cancelled with `cancel`: IDT sent and acknowledged, the connection closed. */
export class PullCancelledError extends PesitError {
  override name = 'PullCancelledError'
}

export interface PullResult {
  transferId: number
  /** where the file is */
  path: string
  /** the name the server gave in ACK(SELECT) (`FILEID/name`), when it gave one */
  remoteName?: string
  bytes: number
  articles: number
  sha256: string
  syncPoints: number
  /** the restart point this attempt started from, and its offset */
  restartPoint: number
  startOffset: number
  /** set when the file was confirmed but the closing exchange failed: the transfer succeeded */
  closeWarning?: string
}

/** The pull stopped in a restartable way after READ (IDT, ABORT, lost connection). */
export class PullInterruptedError extends PesitError {
  override name = 'PullInterruptedError'
  constructor (message: string, diagnostic: Diagnostic, readonly transferId: number, readonly checkpoint: PullCheckpoint, options?: ErrorOptions) {
    super(message, diagnostic, options)
  }
}

const WRITE_BUFFER = 1024 * 1024

/** The hidden partial file of `destination`. */
export function partialPathOf (destination: string): string {
  return join(dirname(destination), `.${basename(destination)}.vectis-part`)
}

export async function pullFile (o: PullOptions): Promise<PullResult> {
  const log = (o.logger ?? silentLogger()).child({ component: 'transfer:pull' })
  checkRequesterOptions(o)
  if (o.name !== undefined && (o.name === '' || /[/\\]/.test(o.name))) throw new PesitConfigError('name: one file name, without / or \\')
  const pi12 = o.name === undefined ? o.file : `${o.file}/${o.name}`
  if (!/^[\x20-\x7e]{1,76}$/.test(pi12)) throw new PesitConfigError(`file: "${pi12}" does not fit PI 12 (1 to 76 printable ASCII characters)`)
  let s: PullSession | undefined
  try {
    return await withChannel(o, async (ch) => {
      s = new PullSession(ch, o, log)
      return await s.run(pi12)
    })
  } catch (caught) {
    // A checkpoint still being made counts: the interruption reports the last point durable here.
    await s?.quiesce()
    // A failed checkpoint (fsync, state file) closed the connection: that failure, not the closed connection, is
    // what to report.
    const err = s?.failure ?? caught
    if (s?.inDataPhase === true && !(err instanceof PullInterruptedError) && (err instanceof PesitError || (err as Error).name === 'Error')) {
      const e = err as Error
      throw new PullInterruptedError(`${e.message}; resume with --restart`, err instanceof PesitError ? err.diagnostic : DIAG.NETWORK_INCIDENT,
        s.transferId, s.checkpoint, { cause: err })
    }
    throw err
  } finally {
    await s?.closePartial()
  }
}

class PullSession extends RequesterSession {
  inDataPhase = false
  transferId = 0
  checkpoint: PullCheckpoint = { syncPoint: 0, offset: 0, articles: 0 }
  private fh: FileHandle | undefined
  /** the partial file's write buffer, once it is open */
  private out: WriteBehind | undefined
  private bytes = 0
  private articles = 0
  private readonly hash: Hash = createHash('sha256')
  /** bytes of the article being reassembled from DTFDA/DTFMA, undefined when none is open */
  private segment: number | undefined
  /** last SYN received (its checkpoint may still be in the making) */
  private lastSyn = 0
  private syncQueue: PullCheckpoint[] = []
  private syncing: Promise<void> | undefined
  /** the first failure of the checkpoint task (it closes the connection) */
  failure: Error | undefined

  constructor (ch: ConstructorParameters<typeof RequesterSession>[0], private readonly pull: PullOptions, log: Logger) {
    super(ch, pull, log)
  }

  async run (pi12: string): Promise<PullResult> {
    const o = this.pull
    const { window } = await this.connect(1)
    // --- SELECT
    const restart = o.restart
    const selectParams = { 9: { 11: 0, 12: pi12 }, 13: restart?.transferId ?? 0, 14: 0xe0, 17: 0, 25: o.maxEntitySize ?? 65535, ...(restart !== undefined ? { 15: 1 } : {}) }
    const ack = await this.request('SELECT', selectParams, 'SF02', 'ACK_SELECT')
    this.state = 'SF03'
    this.transferId = getNumber(ack.params, 13) ?? 0
    if (this.transferId === 0) throw new PeerRefusalError('ACK(SELECT) without a transfer id', DIAG.BAD_PARAMETER)
    if (restart !== undefined && this.transferId !== restart.transferId) {
      throw new PeerRefusalError(`the server restarted transfer ${this.transferId}, not ${restart.transferId}`, DIAG.RESTART_NEGOTIATION)
    }
    const echoed = getString(getGroup(ack.params, 9), 12)
    const remoteName = echoed !== undefined && echoed.startsWith(`${o.file}/`) ? echoed.slice(o.file.length + 1) : undefined
    const path = restart?.path ?? await destinationPath(o.destination, remoteName ?? o.name ?? o.file)
    const announced = (getNumber(getGroup(ack.params, 40), 42) ?? 0) * 1024
    await o.onSelected?.({ transferId: this.transferId, path, ...(remoteName !== undefined ? { remoteName } : {}) })
    await this.openPartial(path, restart?.checkpoint)
    // --- ORF, READ
    await this.request('ORF', { 21: Uint8Array.of(0, 0) }, 'OF01', 'ACK_ORF')
    this.state = 'OF02'
    const restartPoint = this.checkpoint.syncPoint
    await this.request('READ', { 18: restartPoint }, 'TDL01', 'ACK_READ')
    this.state = 'TDL02'
    this.inDataPhase = true
    const startOffset = this.bytes
    this.log.debug({ transferId: this.transferId, restartPoint, startOffset, window }, 'data phase')
    const end = await this.receiveData(window, announced)
    // --- end of the data
    await this.flush()
    await this.settle()
    if (!isSuccess(end)) {
      // The server reports a failure of its side (e.g. the source changed while read): never deliver.
      await this.discardPartial(path)
      await this.request('TRANS_END', { 27: this.bytes, 28: this.articles }, 'TDL08', 'ACK_TRANS_END').catch(() => undefined)
      this.inDataPhase = false
      throw new PeerRefusalError('the server ended the data with a failure; nothing was stored', end)
    }
    await this.fh!.sync()
    await this.fh!.close()
    this.fh = undefined
    // A hard link, not a rename: a file that appeared under that name meanwhile is never replaced.
    try {
      await link(partialPathOf(path), path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new PesitConfigError(`${path} appeared while the file was received; the copy stays in ${partialPathOf(path)}`)
      throw err
    }
    await unlink(partialPathOf(path))
    await syncDirectory(dirname(path))
    // From here the file is stored: a lost end is no longer an interruption to resume, and only the server's
    // explicit refusal of the end (a negative ACK(TRANS.END)) removes the copy.
    this.inDataPhase = false
    let ackEnd: Fpdu
    try {
      await this.send('TRANS_END', { 27: this.bytes, 28: this.articles })
      this.state = 'TDL08'
      ackEnd = await this.receive()
    } catch (err) {
      throw new PesitError(`${path} is stored complete (sha256 ${this.hash.copy().digest('hex')}), but the server did not confirm the end of the transfer: ${(err as Error).message}`,
        err instanceof PesitError ? err.diagnostic : DIAG.NETWORK_INCIDENT, { cause: err })
    }
    const endDiag = getDiagnostic(ackEnd.params) ?? DIAG.OK
    if (!isSuccess(endDiag)) {
      await unlink(path).catch(() => {})
      throw new PeerRefusalError('TRANS.END refused', endDiag)
    }
    const rb = getNumber(ackEnd.params, 27)
    const ra = getNumber(ackEnd.params, 28)
    if ((rb !== undefined && rb !== this.bytes) || (ra !== undefined && ra !== this.articles)) {
      await unlink(path).catch(() => {})
      throw new PeerRefusalError(`server sent ${rb} bytes / ${ra} articles, received ${this.bytes} / ${this.articles}`, DIAG.BAD_COUNT)
    }
    this.state = 'OF02'
    const result: PullResult = {
      transferId: this.transferId, path, bytes: this.bytes, articles: this.articles, sha256: this.hash.digest('hex'),
      syncPoints: this.checkpoint.syncPoint, restartPoint, startOffset, ...(remoteName !== undefined ? { remoteName } : {})
    }
    try {
      await this.closeFile()
    } catch (err) {
      result.closeWarning = `the file was confirmed by the server, but the connection did not close cleanly: ${(err as Error).message}`
    }
    return result
  }

  /** Closes the partial file if still open (its content stays for a restart). */
  async closePartial (): Promise<void> {
    await this.quiesce()
    const fh = this.fh
    this.fh = undefined
    await fh?.close().catch(() => {})
  }

  private async openPartial (path: string, from: PullCheckpoint | undefined): Promise<void> {
    const partial = partialPathOf(path)
    if (from !== undefined && from.offset > 0) {
      const size = (await stat(partial).catch(() => undefined))?.size
      if (size === undefined || size < from.offset) throw new PesitConfigError(`--restart: ${partial} is missing or shorter than its checkpoint (${from.offset} bytes)`)
      this.fh = await open(partial, 'r+')
      await this.fh.truncate(from.offset)
      await this.hashPrefix(from.offset)
      this.checkpoint = { ...from }
    } else {
      this.fh = await open(partial, 'w')
      this.checkpoint = { syncPoint: 0, offset: 0, articles: 0 }
    }
    this.bytes = this.checkpoint.offset
    this.articles = this.checkpoint.articles
    this.lastSyn = this.checkpoint.syncPoint
    const fh = this.fh
    this.out = new WriteBehind(async (data, at) => {
      for (let off = 0; off < data.length;) off += (await fh.write(data, off, data.length - off, at + off)).bytesWritten
    }, this.bytes, this.hash, WRITE_BUFFER, (err) => err instanceof Error ? err : new Error(String(err)))
  }

  private async hashPrefix (len: number): Promise<void> {
    const buf = Buffer.allocUnsafe(Math.min(len, WRITE_BUFFER))
    for (let pos = 0; pos < len;) {
      const { bytesRead } = await this.fh!.read(buf, 0, Math.min(buf.length, len - pos), pos)
      if (bytesRead <= 0) throw new PesitConfigError(`partial file shorter than its checkpoint (${pos} < ${len})`)
      this.hash.update(buf.subarray(0, bytesRead))
      pos += bytesRead
    }
  }

  private async discardPartial (path: string): Promise<void> {
    await this.closePartial()
    await unlink(partialPathOf(path)).catch(() => {})
  }

  /** DTF* and SYN until DTF.END; returns DTF.END's diagnostic. An IDT ends the attempt restartably. */
  private async receiveData (window: number, announced: number): Promise<Diagnostic> {
    const o = this.pull
    for (;;) {
      const f = await this.receive()
      if (o.cancel?.aborted === true) return await this.cancelled(f)
      switch (f.type) {
        case 'DTF':
          if (this.segment !== undefined) throw await this.protocolError('DTF while a segmented article is open')
          if (f.idSrc === 0) await this.article(f.data!)
          else for (const a of splitArticles(f.data!, f.idSrc)) await this.article(a)
          break
        case 'DTFDA':
          if (this.segment !== undefined) throw await this.protocolError('DTFDA while a segmented article is open')
          this.segment = 0
          await this.piece(f.data!, false)
          break
        case 'DTFMA':
        case 'DTFFA':
          if (this.segment === undefined) throw await this.protocolError(`${fpduDisplayName(f.type)} without DTFDA`)
          await this.piece(f.data!, f.type === 'DTFFA')
          break
        case 'SYN': await this.onSyn(f, window); break
        case 'DTF_END':
          if (this.segment !== undefined) throw await this.protocolError('DTF.END inside a segmented article')
          this.state = 'TDL07'
          return getDiagnostic(f.params) ?? DIAG.OK
        case 'IDT': return await this.interrupted(f)
        default: throw new UnexpectedFpduError(fpduDisplayName(f.type), this.state)
      }
      o.onProgress?.({ bytes: this.bytes, announced, syncPoint: this.checkpoint.syncPoint })
    }
  }

  private async protocolError (why: string): Promise<ProtocolError> {
    await this.abort(DIAG.PROTOCOL_ERROR)
    return new ProtocolError(why)
  }

  private async article (a: Uint8Array): Promise<void> {
    await this.append(a)
    this.articles++
  }

  private async piece (data: Uint8Array, last: boolean): Promise<void> {
    await this.append(data)
    if (last) {
      this.articles++
      this.segment = undefined
    } else {
      this.segment! += data.length
    }
  }

  private async append (data: Uint8Array): Promise<void> {
    this.bytes += data.length
    await this.out!.append(data)
  }

  /** Hands the buffered bytes to the file; rethrows a failed write or checkpoint. */
  private async flush (): Promise<void> {
    await this.out!.flush()
  }

  /** Waits for the writes in flight; rethrows the first failure of a write or of a checkpoint. */
  private async written (): Promise<void> {
    await this.out?.written()
    if (this.failure !== undefined) throw this.failure
  }

  /**
   * SYN n: the data before it is handed to the file and the point queued. One task makes the queue durable a group
   * at a time (one fsync, one checkpoint for the last point), then acknowledges each point of the group; reading
   * goes on meanwhile, so the server's window is bounded by this disk's throughput, not its latency.
   */
  private async onSyn (f: Fpdu, window: number): Promise<void> {
    const n = getNumber(f.params, 20) ?? 0
    if (this.segment !== undefined) throw await this.protocolError('SYN inside a segmented article')
    if (n !== this.lastSyn + 1) throw await this.protocolError(`SYN ${n} after ${this.lastSyn}`)
    if (this.failure !== undefined) throw this.failure
    this.lastSyn = n
    await this.flush()
    this.syncQueue.push({ syncPoint: n, offset: this.bytes, articles: this.articles })
    if (this.syncing !== undefined) return
    this.syncing = (async () => {
      try {
        while (this.syncQueue.length > 0) {
          const group = this.syncQueue.splice(0)
          await this.written()
          await this.fh!.sync()
          const c = group.at(-1)!
          await this.pull.onCheckpoint?.(c)
          this.checkpoint = c
          if (window > 0) for (const p of group) await this.send('ACK_SYN', { 20: p.syncPoint })
        }
      } finally {
        // Cleared in the same turn as the last look at the queue: a SYN queued after it starts a new task.
        this.syncing = undefined
      }
    })().catch((err: unknown) => {
      this.failure ??= err instanceof Error ? err : new Error(String(err))
      // The read loop may be waiting for data the server holds back until this acknowledgement: wake it.
      this.ch.destroy()
    })
  }

  /** Waits for the checkpoint task, whatever its outcome. */
  async quiesce (): Promise<void> {
    await this.syncing
    await this.out?.settled()
  }

  /** Waits until every queued sync point is durable and acknowledged; rethrows a failure. */
  private async settle (): Promise<void> {
    await this.syncing
    await this.written()
  }

  /** Our IDT (code 16): what the server sent meanwhile is dropped until its ACK(IDT); then CRF, DESELECT, RELEASE. */
  private async cancelled (first: Fpdu): Promise<never> {
    await this.send('IDT', { 2: DIAG.VOLUNTARY_STOP, 19: 16 })
    this.state = 'TDX05'
    for (let f = first; ; f = await this.receive()) {
      if (f.type === 'ACK_IDT') break
      // A server IDT crossing ours answers it, and is acknowledged in turn.
      if (f.type === 'IDT') {
        await this.send('ACK_IDT', {})
        break
      }
    }
    await this.settle().catch(() => {})
    this.inDataPhase = false
    this.state = 'OF02'
    try {
      await this.closeFile()
    } catch (e) {
      this.log.debug({ err: e }, 'closing after our IDT failed')
    }
    throw new PullCancelledError('transfer cancelled (IDT code 16 sent and acknowledged)', DIAG.VOLUNTARY_STOP)
  }

  private async interrupted (f: Fpdu): Promise<never> {
    // The points received before the IDT become durable first: the restart starts from the last of them.
    await this.settle()
    const d = getDiagnostic(f.params) ?? DIAG.OTHER
    const code = getNumber(f.params, 19) ?? 4
    await this.send('ACK_IDT', {})
    this.state = 'OF02'
    this.inDataPhase = false
    try {
      await this.closeFile()
    } catch (e) {
      this.log.debug({ err: e }, 'closing after IDT failed')
    }
    throw new PullInterruptedError(`transfer interrupted by the server (IDT code ${code}, ${describeDiagnostic(d)}); resume with --restart`, d, this.transferId, this.checkpoint)
  }
}

/** `destination` itself, or `destination/name` when it is a directory. */
async function destinationPath (destination: string, name: string): Promise<string> {
  const st = await stat(destination).catch(() => undefined)
  return st?.isDirectory() === true ? join(destination, name.replace(/[/\\]/g, '_')) : destination
}
