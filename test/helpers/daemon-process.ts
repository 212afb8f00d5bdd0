/**
 * Runs one built `vectisd` as a child process for integration tests: environment in, parsed JSON log lines out,
 * helpers to wait for a log line or an HTTP answer with a deadline. `stop()` always leaves no process behind.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, type AddressInfo, type Server } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { waitFor, WaitAborted } from './wait.js'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const VECTISD = join(ROOT, 'dist', 'bin', 'vectisd.js')

export type LogLine = Record<string, unknown> & { level?: string, msg?: string, component?: string }

/** `N` numbers, as a tuple so that destructuring them needs no check. */
type Ports<N extends number, R extends number[] = []> = R['length'] extends N ? R : Ports<N, [number, ...R]>

/** A port free on `host` now; a later bind by someone else may still take it. For several ports, use freePorts. */
export async function freePort (host = '127.0.0.1'): Promise<number> {
  return (await freePorts(1, host))[0]
}

/**
 * `n` distinct ports free on `host`: every listener stays open until all are known, so the kernel cannot hand the same
 * port out twice (taken one by one, two ports can collide: a CI run failed on that).
 */
export async function freePorts<N extends number> (n: N, host = '127.0.0.1'): Promise<Ports<N>> {
  const servers: Server[] = []
  try {
    for (let i = 0; i < n; i++) {
      const s = createServer()
      servers.push(s)
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject)
        s.listen(0, host, () => { resolve() })
      })
    }
    return servers.map((s) => (s.address() as AddressInfo).port) as Ports<N>
  } finally {
    await Promise.all(servers.map(async (s) => { await new Promise<void>((resolve) => { s.close(() => { resolve() }) }) }))
  }
}

export async function tempDir (prefix = 'vectis-test-'): Promise<{ path: string, remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix))
  return { path, remove: async () => { await rm(path, { recursive: true, force: true }) } }
}

export class DaemonProcess {
  readonly logs: LogLine[] = []
  stdout = ''
  stderr = ''
  private child: ChildProcess | undefined
  private exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }> | undefined
  exit: { code: number | null, signal: NodeJS.Signals | null } | undefined

  constructor (readonly env: Record<string, string>, readonly opts: { args?: string[], cwd?: string } = {}) {}

  start (): this {
    const child = spawn(process.execPath, [VECTISD, ...(this.opts.args ?? [])], {
      cwd: this.opts.cwd,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    this.child = child
    let partial = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      this.stdout += d
      partial += d
      let i
      while ((i = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, i)
        partial = partial.slice(i + 1)
        try { this.logs.push(JSON.parse(line) as LogLine) } catch { this.logs.push({ msg: line, unparsed: true }) }
      }
    })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { this.stderr += d })
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exit = { code, signal }
        resolve({ code, signal })
      })
    })
    return this
  }

  get pid (): number | undefined { return this.child?.pid }

  signal (sig: NodeJS.Signals): void { this.child?.kill(sig) }

  async waitExit (timeoutMs = 15_000): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
    if (this.exited === undefined) throw new Error('not started')
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new Error(`process did not exit within ${timeoutMs} ms; stderr: ${this.stderr}`)) }, timeoutMs)
    })
    try {
      return await Promise.race([this.exited, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  async waitLog (pred: (l: LogLine) => boolean, timeoutMs = 15_000, what = 'log line'): Promise<LogLine> {
    let found: LogLine | undefined
    await waitFor(() => {
      found = this.logs.find(pred)
      if (found === undefined && this.exit !== undefined) throw new WaitAborted(`process exited (${JSON.stringify(this.exit)}) before ${what}; stderr: ${this.stderr}`)
      return found !== undefined
    }, { timeoutMs, what })
    return found!
  }

  /** SIGKILL if still running; always resolves. */
  async kill (): Promise<void> {
    if (this.child !== undefined && this.exit === undefined) {
      this.child.kill('SIGKILL')
      await this.waitExit(5000).catch(() => {})
    }
  }
}
