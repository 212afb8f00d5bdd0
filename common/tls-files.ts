/**
 * Certificate files for a TLS server (the PeSIT TLS listeners, HTTPS), read at start and read again when they
 * change on disk, including the way Kubernetes updates a mounted Secret: the file names are symlinks through
 * `..data`, which is swapped atomically to a new directory. A change is detected by polling each path's resolved
 * target and its size, mtime and inode; the new files are used only once they form a valid context (a half-done
 * update is retried at the next poll), and only by new connections: live sessions keep theirs.
 */
import { readFileSync } from 'node:fs'
import { readFile, realpath, stat } from 'node:fs/promises'
import { createSecureContext } from 'node:tls'
import type { Logger } from './logger.js'

export interface TlsFiles {
  certFile: string
  keyFile: string
  /** CA bundle that client certificates are verified against */
  caFile?: string
}

export interface TlsMaterial {
  cert: Buffer
  key: Buffer
  ca?: Buffer
}

/** Reads the files now (at start: an unreadable or mismatched pair is a configuration error). Throws. */
export function readTlsFilesSync (f: TlsFiles): TlsMaterial {
  const m: TlsMaterial = { cert: readFileSync(f.certFile), key: readFileSync(f.keyFile) }
  if (f.caFile !== undefined) m.ca = readFileSync(f.caFile)
  createSecureContext(m) // a key that does not match its certificate, or PEM that does not parse, fails here
  return m
}

async function readTlsFiles (f: TlsFiles): Promise<TlsMaterial> {
  const m: TlsMaterial = { cert: await readFile(f.certFile), key: await readFile(f.keyFile) }
  if (f.caFile !== undefined) m.ca = await readFile(f.caFile)
  createSecureContext(m)
  return m
}

async function fingerprint (f: TlsFiles): Promise<string> {
  const parts: string[] = []
  for (const p of [f.certFile, f.keyFile, f.caFile]) {
    if (p === undefined) continue
    const real = await realpath(p)
    const s = await stat(real)
    parts.push(`${real}:${s.size}:${s.mtimeMs}:${s.ino}`)
  }
  return parts.join('|')
}

export const DEFAULT_TLS_POLL_MS = 2000

/** Polls `files` and calls `onChange` with the new material once they changed and form a valid context. */
export class TlsFileWatcher {
  private timer: NodeJS.Timeout | undefined
  private last: string | undefined
  private failing = false

  constructor (private readonly files: TlsFiles, private readonly onChange: (m: TlsMaterial) => void, private readonly log: Logger, private readonly pollMs = DEFAULT_TLS_POLL_MS) {}

  async start (): Promise<void> {
    this.last = await fingerprint(this.files).catch(() => undefined)
    this.schedule()
  }

  stop (): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }

  private schedule (): void {
    this.timer = setTimeout(() => { void this.poll().finally(() => { if (this.timer !== undefined) this.schedule() }) }, this.pollMs)
    this.timer.unref()
  }

  private async poll (): Promise<void> {
    try {
      const now = await fingerprint(this.files)
      if (now === this.last) return
      const m = await readTlsFiles(this.files)
      this.last = now
      this.failing = false
      this.onChange(m)
      this.log.info({ certFile: this.files.certFile }, 'TLS certificate files changed: new connections use them')
    } catch (err) {
      // Mid-update (one file new, the other old) or broken: keep serving with the previous files.
      if (!this.failing) this.log.warn({ err, certFile: this.files.certFile }, 'TLS certificate files changed but cannot be used yet; keeping the previous ones')
      this.failing = true
    }
  }
}

/** An OpenSSL error in one line: `tlsv13 alert certificate required` rather than its whole error stack. */
export function shortTlsReason (err: Error): string {
  const alert = /((?:tlsv1\d?|sslv3) alert [a-z ]+)/i.exec(err.message)
  if (alert !== null) return alert[1]!
  const routine = /SSL routines:[^:]*:([^:]+):/.exec(err.message)
  return routine !== null ? routine[1]! : err.message.split('\n')[0]!
}
