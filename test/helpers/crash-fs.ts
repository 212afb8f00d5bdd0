/**
 * A DurableFs double that models what a power loss keeps: only file contents made durable by `sync()` and only
 * directory entries made durable by `syncDir()` of their directory. `crash()` throws away everything else and
 * invalidates open files, exactly as a machine that lost power and rebooted would see its disk (the harshest
 * legal outcome: unsynced writes are all lost, not partially kept).
 */
import { posix } from 'node:path'
import type { DurableFile, DurableFs, FileStat, OpenMode } from '../../store/durable-fs.js'
import { tempNameFor } from '../../store/durable-fs.js'

interface Inode {
  id: number
  /** last change of the content, as a real file system keeps it */
  mtimeMs: number
  current: Buffer
  durable: Buffer
}

type Entry = { kind: 'file', inode: Inode } | { kind: 'dir' }

interface Dir {
  current: Map<string, Entry>
  durable: Map<string, Entry>
}

function enoent (path: string): NodeJS.ErrnoException {
  const e = new Error(`ENOENT: no such file or directory, '${path}'`) as NodeJS.ErrnoException
  e.code = 'ENOENT'
  return e
}

function eexist (path: string): NodeJS.ErrnoException {
  const e = new Error(`EEXIST: file already exists, '${path}'`) as NodeJS.ErrnoException
  e.code = 'EEXIST'
  return e
}

export class CrashFs implements DurableFs {
  private dirs = new Map<string, Dir>([['/', { current: new Map(), durable: new Map() }]])
  private nextInode = 1
  private generation = 0
  /** Counts of operations, for tests that want to see that syncs happened. */
  readonly counts = { sync: 0, syncDir: 0, rename: 0, write: 0 }
  /** Called before every mutating operation with its name; a test may throw from it to inject a failure. */
  onOperation?: (op: 'write' | 'sync' | 'syncDir' | 'rename' | 'open' | 'unlink' | 'truncate', path: string) => void

  private norm (p: string): string {
    if (!posix.isAbsolute(p)) throw new Error(`CrashFs needs absolute paths, got ${p}`)
    return posix.normalize(p)
  }

  private dirOf (path: string): Dir {
    const d = this.dirs.get(path)
    if (d === undefined) throw enoent(path)
    return d
  }

  private lookup (path: string): Entry | undefined {
    const p = this.norm(path)
    if (p === '/') return { kind: 'dir' }
    return this.dirs.get(posix.dirname(p))?.current.get(posix.basename(p))
  }

  private fileInode (path: string): Inode {
    const e = this.lookup(path)
    if (e?.kind !== 'file') throw enoent(path)
    return e.inode
  }

  /** Simulates a power loss: only synced data and synced directory entries remain; open files become invalid. */
  crash (): void {
    this.generation++
    const survivors = new Map<string, Dir>()
    const visit = (path: string): void => {
      const d = this.dirs.get(path)
      if (d === undefined) return
      const entries = new Map<string, Entry>()
      for (const [name, e] of d.durable) {
        if (e.kind === 'file') {
          e.inode.current = Buffer.from(e.inode.durable)
          entries.set(name, e)
        } else {
          entries.set(name, e)
        }
      }
      survivors.set(path, { current: new Map(entries), durable: new Map(entries) })
      for (const [name, e] of entries) if (e.kind === 'dir') visit(posix.join(path, name))
    }
    visit('/')
    this.dirs = survivors
  }

  /** Reads a file as it is now (not necessarily durable). */
  contentNow (path: string): Buffer { return Buffer.from(this.fileInode(path).current) }

  async open (path: string, mode: OpenMode): Promise<DurableFile> {
    const p = this.norm(path)
    this.onOperation?.('open', p)
    const dir = this.dirOf(posix.dirname(p))
    let e = dir.current.get(posix.basename(p))
    if (e?.kind === 'dir') throw new Error(`EISDIR: '${p}'`)
    if (mode === 'create') {
      if (e === undefined) {
        e = { kind: 'file', inode: { id: this.nextInode++, mtimeMs: Date.now(), current: Buffer.alloc(0), durable: Buffer.alloc(0) } }
        dir.current.set(posix.basename(p), e)
      } else {
        e.inode.current = Buffer.alloc(0)
        e.inode.mtimeMs = Date.now()
      }
    } else if (e === undefined) {
      throw enoent(p)
    }
    return this.handle(p, e.inode, mode === 'read')
  }

  private handle (path: string, inode: Inode, readOnly: boolean): DurableFile {
    const gen = this.generation
    let closed = false
    const check = (): void => {
      if (closed) throw new Error(`EBADF: file closed '${path}'`)
      if (gen !== this.generation) throw new Error(`EIO: file handle from before the crash '${path}'`)
    }
    return {
      path,
      write: async (data: Uint8Array, position: number): Promise<void> => {
        check()
        if (readOnly) throw new Error(`EBADF: read-only '${path}'`)
        this.onOperation?.('write', path)
        this.counts.write++
        const end = position + data.byteLength
        if (end > inode.current.length) {
          const grown = Buffer.alloc(end)
          inode.current.copy(grown)
          inode.current = grown
        }
        Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(inode.current, position)
        inode.mtimeMs = Date.now()
      },
      read: async (buf: Uint8Array, position: number): Promise<number> => {
        check()
        if (position >= inode.current.length) return 0
        const n = Math.min(buf.byteLength, inode.current.length - position)
        inode.current.copy(buf, 0, position, position + n)
        return n
      },
      size: async (): Promise<number> => { check(); return inode.current.length },
      truncate: async (len: number): Promise<void> => {
        check()
        this.onOperation?.('truncate', path)
        const b = Buffer.alloc(len)
        inode.current.copy(b, 0, 0, Math.min(len, inode.current.length))
        inode.current = b
        inode.mtimeMs = Date.now()
      },
      sync: async (): Promise<void> => {
        check()
        this.onOperation?.('sync', path)
        this.counts.sync++
        inode.durable = Buffer.from(inode.current)
      },
      close: async (): Promise<void> => { closed = true }
    }
  }

  async rename (from: string, to: string): Promise<void> {
    const f = this.norm(from)
    const t = this.norm(to)
    this.onOperation?.('rename', f)
    this.counts.rename++
    const src = this.dirOf(posix.dirname(f))
    const e = src.current.get(posix.basename(f))
    if (e === undefined) throw enoent(f)
    if (e.kind === 'dir') throw new Error('CrashFs renames files only')
    const dst = this.dirOf(posix.dirname(t))
    src.current.delete(posix.basename(f))
    dst.current.set(posix.basename(t), e)
  }

  async syncDir (dir: string): Promise<void> {
    const p = this.norm(dir)
    this.onOperation?.('syncDir', p)
    this.counts.syncDir++
    const d = this.dirOf(p)
    d.durable = new Map(d.current)
  }

  async writeFileAtomic (path: string, data: Uint8Array): Promise<void> {
    const tmp = tempNameFor(this.norm(path))
    const f = await this.open(tmp, 'create')
    await f.write(data, 0)
    await f.sync()
    await f.close()
    await this.rename(tmp, path)
    await this.syncDir(posix.dirname(this.norm(path)))
  }

  async readFile (path: string): Promise<Uint8Array> { return Buffer.from(this.fileInode(path).current) }

  async exists (path: string): Promise<boolean> { return this.lookup(path) !== undefined }

  async copyFile (from: string, to: string): Promise<void> {
    const src = this.fileInode(from)
    const f = await this.open(to, 'create')
    await f.write(Buffer.from(src.current), 0)
    await f.close()
  }

  async link (from: string, to: string): Promise<void> {
    const f = this.norm(from)
    const t = this.norm(to)
    this.onOperation?.('rename', f)
    const e = this.dirOf(posix.dirname(f)).current.get(posix.basename(f))
    if (e === undefined) throw enoent(f)
    if (e.kind === 'dir') throw new Error('CrashFs links files only')
    const dst = this.dirOf(posix.dirname(t))
    if (dst.current.has(posix.basename(t))) throw eexist(t)
    dst.current.set(posix.basename(t), e)
  }

  async unlink (path: string): Promise<void> {
    const p = this.norm(path)
    this.onOperation?.('unlink', p)
    this.dirs.get(posix.dirname(p))?.current.delete(posix.basename(p))
  }

  async mkdirp (dir: string): Promise<void> {
    const p = this.norm(dir)
    if (this.dirs.has(p)) return
    await this.mkdirp(posix.dirname(p))
    const parent = this.dirOf(posix.dirname(p))
    const existing = parent.current.get(posix.basename(p))
    if (existing?.kind === 'file') throw eexist(p)
    parent.current.set(posix.basename(p), { kind: 'dir' })
    this.dirs.set(p, { current: new Map(), durable: new Map() })
    await this.syncDir(posix.dirname(p))
  }

  async readdir (dir: string): Promise<string[]> {
    return [...this.dirOf(this.norm(dir)).current.keys()].sort()
  }

  async stat (path: string): Promise<FileStat | undefined> {
    const e = this.lookup(path)
    if (e === undefined) return undefined
    if (e.kind === 'dir') return { size: 0, mtimeMs: 0, ino: 0, isFile: false }
    return { size: e.inode.current.length, mtimeMs: e.inode.mtimeMs, ino: e.inode.id, isFile: true }
  }
}
