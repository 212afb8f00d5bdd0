/**
 * The file layer every durable write goes through (the PeSIT receiver's data and checkpoints, identity keys).
 *
 * Durability here means: after `sync()` returns, a file's content survives a power loss; after `syncDir()`
 * returns, the directory entries created, renamed or removed in that directory survive too. A rename alone is
 * atomic but NOT durable until the directory is synced. Tests prove durability claims against the crash-simulating
 * double (`test/helpers/crash-fs.ts`), because kill -9 keeps the page cache and proves nothing about fsync.
 */
import { constants as fsc } from 'node:fs'
import { copyFile, open, link, rename, mkdir, readFile, unlink, readdir, stat, type FileHandle } from 'node:fs/promises'
import { dirname, basename, join } from 'node:path'
import { randomBytes } from 'node:crypto'

export interface DurableFile {
  readonly path: string
  /** Writes all of `data` at `position`. Not durable until `sync()`. */
  write(data: Uint8Array, position: number): Promise<void>
  /** Reads into `buf` from `position`; returns the number of bytes read (0 at the end). */
  read(buf: Uint8Array, position: number): Promise<number>
  size(): Promise<number>
  truncate(len: number): Promise<void>
  /** fsync: data and metadata of this file reach stable storage. */
  sync(): Promise<void>
  close(): Promise<void>
}

export type OpenMode =
  /** create or truncate, read-write */
  | 'create'
  /** an existing file, read-write, keeping its content */
  | 'existing'
  /** an existing file, read-only */
  | 'read'

export interface DurableFs {
  open(path: string, mode: OpenMode): Promise<DurableFile>
  /** Atomic replace of `to` by `from` (same file system). Durable once the directory is synced. */
  rename(from: string, to: string): Promise<void>
  /**
   * A second name `to` for the file at `from` (same file system); never replaces: rejects with code EEXIST when `to`
   * exists. Durable once the directory is synced.
   */
  link(from: string, to: string): Promise<void>
  /** A new file `to` with the content of `from` (a reflink where the file system has them); not durable until fsynced. */
  copyFile(from: string, to: string): Promise<void>
  /** fsync of a directory: makes entries created, renamed or removed in it durable. */
  syncDir(dir: string): Promise<void>
  /** Temporary file beside `path`, write, fsync, rename over `path`, directory fsync: all or nothing, durable. */
  writeFileAtomic(path: string, data: Uint8Array, opts?: { mode?: number }): Promise<void>
  readFile(path: string): Promise<Uint8Array>
  exists(path: string): Promise<boolean>
  unlink(path: string): Promise<void>
  /** mkdir -p; each directory created is made durable in its parent. */
  mkdirp(dir: string): Promise<void>
  readdir(dir: string): Promise<string[]>
  /** undefined when nothing exists at `path` */
  stat(path: string): Promise<FileStat | undefined>
}

export interface FileStat {
  size: number
  mtimeMs: number
  ino: number
  isFile: boolean
}

/** fsync of a directory on the real file system: entries created, renamed or removed in it become durable. */
export async function syncDirectory (dir: string): Promise<void> {
  const fh = await open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY)
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** A temporary name in the same directory (so a rename stays on one file system), hidden and unique. */
export function tempNameFor (path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
}

class NodeDurableFile implements DurableFile {
  constructor (readonly path: string, private readonly fh: FileHandle) {}

  async write (data: Uint8Array, position: number): Promise<void> {
    let off = 0
    while (off < data.byteLength) {
      const { bytesWritten } = await this.fh.write(data, off, data.byteLength - off, position + off)
      if (bytesWritten <= 0) throw new Error(`short write to ${this.path}`)
      off += bytesWritten
    }
  }

  async read (buf: Uint8Array, position: number): Promise<number> {
    const { bytesRead } = await this.fh.read(buf, 0, buf.byteLength, position)
    return bytesRead
  }

  async size (): Promise<number> { return (await this.fh.stat()).size }
  async truncate (len: number): Promise<void> { await this.fh.truncate(len) }
  async sync (): Promise<void> { await this.fh.sync() }
  async close (): Promise<void> { await this.fh.close() }
}

function isErrno (err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code
}

/** The real thing, on node:fs. */
export class NodeDurableFs implements DurableFs {
  async open (path: string, mode: OpenMode): Promise<DurableFile> {
    const flags = mode === 'create' ? 'w+' : mode === 'existing' ? 'r+' : 'r'
    return new NodeDurableFile(path, await open(path, flags, 0o640))
  }

  async rename (from: string, to: string): Promise<void> { await rename(from, to) }

  async link (from: string, to: string): Promise<void> { await link(from, to) }

  async copyFile (from: string, to: string): Promise<void> { await copyFile(from, to, fsc.COPYFILE_FICLONE) }

  async syncDir (dir: string): Promise<void> { await syncDirectory(dir) }

  async writeFileAtomic (path: string, data: Uint8Array, opts: { mode?: number } = {}): Promise<void> {
    const tmp = tempNameFor(path)
    const fh = await open(tmp, 'w', opts.mode ?? 0o640)
    try {
      await new NodeDurableFile(tmp, fh).write(data, 0)
      await fh.sync()
    } catch (err) {
      await fh.close().catch(() => {})
      await unlink(tmp).catch(() => {})
      throw err
    }
    await fh.close()
    try {
      await rename(tmp, path)
    } catch (err) {
      await unlink(tmp).catch(() => {})
      throw err
    }
    await this.syncDir(dirname(path))
  }

  async readFile (path: string): Promise<Uint8Array> { return await readFile(path) }

  async exists (path: string): Promise<boolean> {
    return (await this.stat(path)) !== undefined
  }

  async unlink (path: string): Promise<void> {
    try {
      await unlink(path)
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err
    }
  }

  async mkdirp (dir: string): Promise<void> {
    // Walk up to the first existing ancestor, then create downwards, syncing each parent so the new entries last.
    const missing: string[] = []
    let d = dir
    while ((await this.stat(d)) === undefined) {
      missing.unshift(d)
      const parent = dirname(d)
      if (parent === d) break
      d = parent
    }
    for (const m of missing) {
      try {
        await mkdir(m)
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) throw err
      }
      await this.syncDir(dirname(m))
    }
  }

  async readdir (dir: string): Promise<string[]> { return await readdir(dir) }

  async stat (path: string): Promise<FileStat | undefined> {
    try {
      const s = await stat(path)
      return { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino, isFile: s.isFile() }
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined
      throw err
    }
  }
}
