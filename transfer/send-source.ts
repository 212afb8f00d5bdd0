/**
 * The files a send virtual file offers to partners that pull (docs/pesit.md §17): which physical file a SELECT
 * names or gets, the send-side restart state kept beside the files in the shared directory, and the after-send
 * action.
 *
 * Naming: PI 12 is `FILEID` (the server offers the oldest file not yet sent completely to this partner) or
 * `FILEID/name` (that one file). Hidden and temporary names (`.*`, `*.tmp`, `*.part`) are never offered nor
 * accepted: producers write under such a name and rename when done.
 *
 * Restart state (`.vectis-<partner>-<file>-<PI 13>.send`, hidden): the source's identity (size, mtime, inode),
 * the article length and the sync spacing, so sync point p is byte `p × articlesPerSync × articleLength`, and the
 * highest sync point it covers (written ahead: durable before the SYNs it covers go out). A new leader reading it
 * serves the restart; a source whose identity changed is refused (D2-229), never sent mixed.
 */
import { join } from 'node:path'
import type { DurableFs, FileStat } from '../store/durable-fs.js'
import { directoryFor, transferStem, type AfterSend, type PesitFileConfig } from './config-types.js'

export const SEND_STATE_VERSION = 1

export interface SourceIdentity {
  size: number
  mtimeMs: number
  ino: number
}

export function identityOf (st: FileStat): SourceIdentity {
  return { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino }
}

/** The form the journal keeps (`TransferRecord.source`). */
export function identityString (s: SourceIdentity): string {
  return `${s.size}:${s.mtimeMs}:${s.ino}`
}

export function sameIdentity (a: SourceIdentity, b: SourceIdentity): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino
}

export interface SendState {
  version: number
  transferId: number
  partner: string
  server: string
  /** virtual file id */
  file: string
  /** the physical file's name in the partner's directory */
  name: string
  source: SourceIdentity
  articleLength: number
  /** sync points every this many articles; 0 = no sync points */
  articlesPerSync: number
  /** highest sync point this state covers (written ahead of the SYNs: they may not all have been sent) */
  syncPoint: number
  updatedAt: string
}

/** Why `name` cannot be offered or named in PI 12, or undefined when it can. */
export function sendNameError (name: string): string | undefined {
  if (name === '' || name.startsWith('.')) return 'hidden or empty names are never offered'
  if (/[/\\]/.test(name) || name.includes('..')) return 'a file name without / \\ or ..'
  if (/\.(tmp|part)$/i.test(name)) return 'temporary names (*.tmp, *.part) are never offered'
  if ([...name].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) return 'control characters'
  return undefined
}

export type FileRequest =
  | { file: PesitFileConfig, name?: string }
  | { error: 'unknown' | 'bad-name', why: string }

/** Resolves PI 12: a virtual file id, or `FILEID/name` for one file of it. */
export function resolveFileRequest (pi12: string, files: ReadonlyMap<string, PesitFileConfig>): FileRequest {
  const exact = files.get(pi12)
  if (exact !== undefined) return { file: exact }
  const slash = pi12.lastIndexOf('/')
  if (slash <= 0) return { error: 'unknown', why: `unknown virtual file ${pi12}` }
  const file = files.get(pi12.slice(0, slash))
  if (file === undefined) return { error: 'unknown', why: `unknown virtual file ${pi12.slice(0, slash)}` }
  const name = pi12.slice(slash + 1)
  const why = sendNameError(name)
  if (why !== undefined) return { error: 'bad-name', why: `${JSON.stringify(name)}: ${why}` }
  return { file, name }
}

export interface Candidate {
  name: string
  path: string
  stat: FileStat
}

/** The regular files of `directory` that may be offered, oldest first (mtime, then name). */
export async function offerableFiles (fs: DurableFs, directory: string): Promise<Candidate[]> {
  let names: string[]
  try {
    names = await fs.readdir(directory)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const out: Candidate[] = []
  for (const name of names) {
    if (sendNameError(name) !== undefined) continue
    const path = join(directory, name)
    const stat = await fs.stat(path)
    if (stat?.isFile === true) out.push({ name, path, stat })
  }
  return out.sort((a, b) => a.stat.mtimeMs - b.stat.mtimeMs || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

export function sendStatePath (directory: string, vars: { partner: string, file: string, transferId: number }): string {
  return join(directory, `${transferStem(vars)}.send`)
}

export async function readSendState (fs: DurableFs, path: string): Promise<SendState | undefined> {
  if (!(await fs.exists(path))) return undefined
  try {
    const s = JSON.parse(Buffer.from(await fs.readFile(path)).toString('utf8')) as SendState
    const ok = typeof s === 'object' && s !== null && s.version === SEND_STATE_VERSION && typeof s.name === 'string' &&
      typeof s.source === 'object' && s.source !== null && [s.transferId, s.articleLength, s.articlesPerSync, s.syncPoint,
      s.source.size, s.source.ino].every((n) => Number.isSafeInteger(n) && n >= 0) && typeof s.source.mtimeMs === 'number'
    return ok ? s : undefined
  } catch {
    return undefined // unreadable: no restart context, never a crash
  }
}

export async function writeSendState (fs: DurableFs, path: string, s: SendState): Promise<void> {
  await fs.writeFileAtomic(path, Buffer.from(JSON.stringify({ ...s, updatedAt: new Date().toISOString() })))
}

/**
 * The after-send action on `name` in `directory` (the partner's): nothing, an unlink, or a rename into the move
 * directory (created if needed; a name already there gets `.<PI 13>` appended, `.0` for an action done late, when
 * PI 13 is no longer known, and then `.1`, `.2`… while that is taken too). Each made durable by syncing the directories it changed. Returns where the file is
 * now (undefined once deleted).
 */
export async function applyAfterSend (fs: DurableFs, after: AfterSend | undefined, directory: string, name: string, partner: string, transferId: number): Promise<string | undefined> {
  const path = join(directory, name)
  if (after === undefined || after.action === 'keep') return path
  if (after.action === 'delete') {
    await fs.unlink(path)
    await fs.syncDir(directory)
    return undefined
  }
  const target = directoryFor(after.directory, partner)
  await fs.mkdirp(target)
  // Never over a file already there: `.<PI 13>` appended, then a counter (a late action has PI 13 0 every time).
  let to = join(target, name)
  for (let i = 0; await fs.exists(to); i++) to = join(target, i === 0 ? `${name}.${transferId}` : `${name}.${transferId}.${i}`)
  await fs.rename(path, to)
  await fs.syncDir(target)
  await fs.syncDir(directory)
  return to
}
