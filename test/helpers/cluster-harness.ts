/**
 * Runs N `vectisd` processes as a cluster on one machine, the way pods run: each member on its own address
 * (127.0.X.10, .11, … on loopback, or 10.S.0.10, … inside network namespaces from `netns.ts`), all with the same
 * ports, found through an in-process DNS server answering for the headless Service name.
 *
 * Each member's stdout JSON lines are parsed and kept so tests can wait for a log condition with a deadline.
 * Every child is killed when the test ends (`t.after`) and, as a last resort, when the test process exits.
 *
 * Choose X (`subnet`) per test file: files run in parallel and two files on the same X would fight for ports.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { TestContext } from 'node:test'
import { TestDnsServer } from './dns-server.js'
import type { NetnsLab } from '../../dev-cluster/netns.js'
import { waitFor } from './wait-for.js'

export const ROOT_DIR = fileURLToPath(new URL('../..', import.meta.url))
export const VECTISD = join(ROOT_DIR, 'dist', 'bin', 'vectisd.js')
/** The real daemon (build it first: `npm run build`). */
export const VECTISD_COMMAND = [process.execPath, VECTISD]
/** The stand-in used to test the harness itself (same environment, JSON logs, status endpoint). */
export const STAND_IN_COMMAND = [process.execPath, '--import', 'tsx', '--import', join(ROOT_DIR, 'common', 'polyfill.ts'), join(ROOT_DIR, 'test', 'helpers', 'stand-in-vectisd.ts')]
export const DEFAULT_DNS_NAME = 'vectis-headless.vectis.svc.cluster.local'

export type LogLine = Record<string, unknown> & { level?: string, msg?: string, component?: string, time?: string }

export interface HarnessOptions {
  /** Number of members. */
  nodes: number
  /** X of 127.0.X.(10+i), 1–254, unique per test file. Ignored with `netns` (the lab's addresses are used). */
  subnet?: number
  /** Run member i inside host i of this lab (partition tests). */
  netns?: NetnsLab
  /** argv prefix of a member; default the built daemon (`VECTISD_COMMAND`). */
  command?: string[]
  /** argv of member i at its next start, when it differs from `command` (a rolling upgrade). */
  commandFor?: (i: number) => string[] | undefined
  clusterPort?: number
  httpPort?: number
  /** `VECTIS_CLUSTER_SIZE`; default `nodes`. */
  clusterSize?: number
  clusterName?: string
  secret?: string
  logLevel?: 'trace' | 'debug' | 'info' | 'warn'
  apiUser?: string
  apiPassword?: string
  dnsName?: string
  /** Publish every member in DNS from the start (a StatefulSet with publishNotReadyAddresses); default true. */
  publishAll?: boolean
  /** Extra environment for every member, then for member i (wins). */
  env?: Record<string, string>
  envFor?: (i: number) => Record<string, string>
  /** Echo each member's stdout/stderr to the test's stderr (debugging); also on with VECTIS_HARNESS_ECHO=1. */
  echo?: boolean
}

/** A row of GET /api/transfers, as the harness compares them across members. */
export interface TransferRow { id: string, transferId: number, status: string, sha256: string | null, seq: number, bytes: number, syncPoint: number }

export interface ExitInfo { code: number | null, signal: NodeJS.Signals | null }

export class Member {
  readonly logs: LogLine[] = []
  stderr = ''
  proc: ChildProcess | undefined
  exit: ExitInfo | undefined
  /** Starts so far (restart count + 1). */
  starts = 0
  /** `process.hrtime.bigint()` at the last spawn: the same clock as the daemons' interval logs. */
  startedAtNs: bigint | undefined
  private exited: Promise<ExitInfo> | undefined

  constructor (readonly index: number, readonly name: string, readonly ip: string, readonly dataDir: string) {}

  get running (): boolean { return this.proc !== undefined && this.exit === undefined }
  get pid (): number | undefined { return this.proc?.pid }

  /** @internal */
  attach (proc: ChildProcess, onLine: (line: LogLine) => void, echo: boolean): void {
    this.proc = proc
    this.exit = undefined
    this.starts++
    this.startedAtNs = process.hrtime.bigint()
    let partial = ''
    proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
      if (echo) process.stderr.write(`[${this.name}] ${d}`)
      partial += d
      let nl
      while ((nl = partial.indexOf('\n')) >= 0) {
        const text = partial.slice(0, nl)
        partial = partial.slice(nl + 1)
        if (text.trim() === '') continue
        let line: LogLine
        try { line = JSON.parse(text) as LogLine } catch { line = { msg: text, unparsed: true } }
        this.logs.push(line)
        onLine(line)
      }
    })
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (echo) process.stderr.write(`[${this.name}!] ${d}`)
      this.stderr = (this.stderr + d).slice(-64 * 1024)
    })
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        this.exit = { code, signal }
        live.delete(proc)
        resolve(this.exit)
      })
    })
  }

  /** Waits for the process to exit (bounded). */
  async waitExit (timeoutMs = 15_000): Promise<ExitInfo> {
    if (this.exited === undefined) throw new Error(`${this.name} was never started`)
    let timer: NodeJS.Timeout | undefined
    try {
      return await Promise.race([
        this.exited,
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => { reject(new Error(`${this.name} did not exit within ${timeoutMs} ms`)) }, timeoutMs)
        })
      ])
    } finally {
      clearTimeout(timer)
    }
  }
}

/** Every child of every harness in this process: killed at exit whatever happened. */
const live = new Set<ChildProcess>()
let exitHook = false

export class ClusterHarness {
  readonly members: Member[]
  readonly dns: TestDnsServer
  readonly dnsName: string
  readonly clusterPort: number
  readonly httpPort: number
  readonly apiUser: string
  readonly apiPassword: string
  /** Every log line of every member in arrival order, with `process.hrtime.bigint()` at arrival. */
  readonly timeline: Array<{ member: number, line: LogLine, atNs: bigint }> = []
  private readonly command: string[]
  private cleaned = false

  private constructor (readonly opts: HarnessOptions, readonly root: string) {
    if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 200) throw new RangeError('nodes must be 1..200')
    const subnet = opts.subnet ?? 0
    if (opts.netns === undefined && (!Number.isInteger(subnet) || subnet < 1 || subnet > 254)) {
      throw new RangeError('subnet (X of 127.0.X.10+) must be 1..254 and unique per test file')
    }
    if (opts.netns !== undefined && opts.netns.hosts.length < opts.nodes) throw new RangeError('the lab has fewer hosts than nodes')
    this.clusterPort = opts.clusterPort ?? 7800
    this.httpPort = opts.httpPort ?? 8080
    this.apiUser = opts.apiUser ?? 'admin'
    this.apiPassword = opts.apiPassword ?? 'harness-password'
    this.dnsName = opts.dnsName ?? DEFAULT_DNS_NAME
    this.command = opts.command ?? VECTISD_COMMAND
    this.dns = new TestDnsServer({ host: opts.netns?.gateway ?? '127.0.0.1' })
    this.members = Array.from({ length: opts.nodes }, (_, i) => {
      const ip = opts.netns !== undefined ? opts.netns.host(i).ip : `127.0.${subnet}.${10 + i}`
      return new Member(i, `vectis-${i}`, ip, join(root, `vectis-${i}`))
    })
  }

  /** Prepares the members (not started) and the DNS server; everything is cleaned up after the test. */
  static async create (t: TestContext | undefined, opts: HarnessOptions): Promise<ClusterHarness> {
    const root = await mkdtemp(join(tmpdir(), 'vectis-cluster-'))
    const h = new ClusterHarness(opts, root)
    if (!exitHook) {
      exitHook = true
      process.on('exit', () => { for (const p of live) { try { p.kill('SIGKILL') } catch { /* gone */ } } })
    }
    t?.after(() => h.cleanup())
    if (h.command === VECTISD_COMMAND && !existsSync(VECTISD)) {
      await h.cleanup()
      throw new Error(`${VECTISD} does not exist: run \`npm run build\` first`)
    }
    await h.dns.start()
    if (opts.publishAll !== false) h.publishAll()
    return h
  }

  /** Puts every member in DNS. */
  publishAll (): void {
    this.dns.setRecords(this.dnsName, this.members.map((m) => ({ ip: m.ip, port: this.clusterPort, hostname: m.name })))
  }

  member (i: number): Member {
    const m = this.members[i]
    if (m === undefined) throw new RangeError(`no member ${i}`)
    return m
  }

  /** "ip:port" of member i's cluster port. */
  address (i: number): string { return `${this.member(i).ip}:${this.clusterPort}` }
  httpUrl (i: number, path = ''): string { return `http://${this.member(i).ip}:${this.httpPort}${path}` }

  envOf (i: number): Record<string, string> {
    const m = this.member(i)
    const o = this.opts
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      VECTIS_CLUSTER_ENABLED: 'true',
      VECTIS_CLUSTER_NAME: o.clusterName ?? 'vectis-cluster',
      POD_NAME: m.name,
      POD_NAMESPACE: 'vectis',
      POD_IP: m.ip,
      VECTIS_BIND_HOST: m.ip,
      VECTIS_CLUSTER_PORT: String(this.clusterPort),
      VECTIS_HTTP_PORT: String(this.httpPort),
      VECTIS_DISCOVERY_DNS: this.dnsName,
      VECTIS_DNS_SERVERS: this.dns.address,
      VECTIS_DATA_DIR: m.dataDir,
      VECTIS_CLUSTER_SIZE: String(o.clusterSize ?? o.nodes),
      VECTIS_API_USER: this.apiUser,
      VECTIS_API_PASSWORD: this.apiPassword,
      VECTIS_LOG_LEVEL: o.logLevel ?? 'info',
      VECTIS_K8S: 'off'
    }
    if (o.secret !== undefined) env.VECTIS_CLUSTER_SECRET = o.secret
    return { ...env, ...o.env, ...o.envFor?.(i) }
  }

  /** Starts member i (its data directory is kept across restarts). */
  async start (i: number): Promise<Member> {
    const m = this.member(i)
    if (this.cleaned) throw new Error('the harness was cleaned up')
    if (m.running) throw new Error(`${m.name} is already running`)
    const command = this.opts.commandFor?.(i) ?? this.command
    const argv = this.opts.netns !== undefined ? this.opts.netns.wrap(i, command) : command
    const [cmd, ...args] = argv as [string, ...string[]]
    const proc = spawn(cmd, args, { cwd: ROOT_DIR, env: this.envOf(i), stdio: ['ignore', 'pipe', 'pipe'] })
    live.add(proc)
    const echo = this.opts.echo ?? process.env.VECTIS_HARNESS_ECHO === '1'
    m.attach(proc, (line) => this.timeline.push({ member: i, line, atNs: process.hrtime.bigint() }), echo)
    proc.on('error', (err) => { m.stderr += `spawn error: ${err.message}\n` })
    return m
  }

  /** Starts every member at once (a cold start), or those listed. */
  async startAll (which: number[] = this.members.map((m) => m.index)): Promise<void> {
    for (const i of which) await this.start(i)
  }

  /** kill -9, and wait until the process is gone. */
  async kill (i: number): Promise<ExitInfo> {
    const m = this.member(i)
    if (!m.running) throw new Error(`${m.name} is not running`)
    m.proc!.kill('SIGKILL')
    return await m.waitExit(5000)
  }

  /** SIGTERM (after SIGCONT, so a paused member handles it) and wait for the exit; a graceful stop exits 0. */
  async stop (i: number, timeoutMs = 15_000): Promise<ExitInfo> {
    const m = this.member(i)
    if (!m.running) throw new Error(`${m.name} is not running`)
    m.proc!.kill('SIGCONT')
    m.proc!.kill('SIGTERM')
    return await m.waitExit(timeoutMs)
  }

  pause (i: number): void { this.signal(i, 'SIGSTOP') }
  resume (i: number): void { this.signal(i, 'SIGCONT') }

  signal (i: number, sig: NodeJS.Signals): void {
    const m = this.member(i)
    if (!m.running) throw new Error(`${m.name} is not running`)
    m.proc!.kill(sig)
  }

  /** Stops member i gracefully if it runs, then starts it again on the same address and data directory. */
  async restart (i: number): Promise<Member> {
    if (this.member(i).running) await this.stop(i)
    return await this.start(i)
  }

  /** The member of `among` that leads and runs its PeSIT servers, if one does (asked in turn). */
  async servingLeader (among: number[] = this.members.filter((m) => m.running).map((m) => m.index)): Promise<number | undefined> {
    for (const i of among) {
      const s = await this.status(i).catch(() => undefined)
      if (s?.isLeader === true && (s.servers as Array<{ running: boolean }> | undefined)?.[0]?.running === true) return i
    }
    return undefined
  }

  /**
   * Waits until every member of `among` is in a view of them all that it knows is the committed primary view (a
   * crash inside the commit round of a view leaves the previous primary view, whose quorum needs a proven death to
   * fail over: tests that kill a leader wait for this first).
   */
  async waitViewCommitted (among: number[] = this.members.map((m) => m.index), timeoutMs = 60_000): Promise<void> {
    await this.waitFor(async () => (await Promise.all(among.map(async (i) => await this.status(i).catch(() => undefined))))
      .every((s) => s?.memberCount === among.length && (s.quorum as { ok: boolean }).ok), { timeoutMs, what: 'every member in the committed view of them all' })
  }

  /** GET /api/transfers of member i (up to 1000 rows, newest first), the fields replication must keep the same. */
  async transfers (i: number, timeoutMs = 10_000): Promise<TransferRow[]> {
    const r = await this.http(i, '/api/transfers?limit=1000', timeoutMs)
    if (r.status !== 200) throw new Error(`transfers of ${this.member(i).name}: HTTP ${r.status} ${JSON.stringify(r.body)}`)
    return (r.body as { transfers: TransferRow[] }).transfers.map((x) => ({
      id: x.id, transferId: x.transferId, status: x.status, sha256: x.sha256, seq: x.seq, bytes: x.bytes, syncPoint: x.syncPoint
    }))
  }

  /** Waits until every member of `among` lists the same `n` rows, all completed; returns them. */
  async waitSameTransfers (among: number[], n: number, opts: { timeoutMs?: number, what?: string } = {}): Promise<TransferRow[]> {
    return await this.waitFor(async () => {
      const all = await Promise.all(among.map(async (i) => await this.transfers(i).catch(() => undefined)))
      if (all.some((r) => r === undefined || r.length !== n || r.some((x) => x.status !== 'completed'))) return undefined
      return all.every((r) => JSON.stringify(r) === JSON.stringify(all[0])) ? all[0] : undefined
    }, { timeoutMs: opts.timeoutMs ?? 30_000, intervalMs: 200, what: opts.what ?? `${n} identical completed rows on every member` })
  }

  /** GET /api/cluster/status of member i (basic auth); throws on a non-200 answer. */
  async status (i: number, timeoutMs = 5000): Promise<Record<string, unknown>> {
    const res = await this.http(i, '/api/cluster/status', timeoutMs)
    if (res.status !== 200) throw new Error(`status of ${this.member(i).name}: HTTP ${res.status} ${JSON.stringify(res.body)}`)
    return res.body as Record<string, unknown>
  }

  /** Status of every running member (index → status; a member that does not answer maps to its error). */
  async statusAll (timeoutMs = 5000): Promise<Map<number, Record<string, unknown> | Error>> {
    const running = this.members.filter((m) => m.running)
    const results = await Promise.all(running.map(async (m) => await this.status(m.index, timeoutMs).catch((err: unknown) => err instanceof Error ? err : new Error(String(err)))))
    return new Map(running.map((m, k) => [m.index, results[k]!]))
  }

  /** `process.hrtime.bigint()` of the latest spawn among the members (for "N s after the last process started"). */
  get lastStartNs (): bigint | undefined {
    let last: bigint | undefined
    for (const m of this.members) if (m.startedAtNs !== undefined && (last === undefined || m.startedAtNs > last)) last = m.startedAtNs
    return last
  }

  /** Any GET on member i's HTTP port, with the API credentials. */
  async http (i: number, path: string, timeoutMs = 5000): Promise<{ status: number, body: unknown }> {
    const auth = Buffer.from(`${this.apiUser}:${this.apiPassword}`).toString('base64')
    const res = await fetch(this.httpUrl(i, path), { headers: { authorization: `Basic ${auth}` }, signal: AbortSignal.timeout(timeoutMs) })
    const text = await res.text()
    let body: unknown = text
    try { body = JSON.parse(text) } catch { /* not JSON */ }
    return { status: res.status, body }
  }

  logs (i: number): LogLine[] { return this.member(i).logs }

  /** Polls `predicate` until it holds (returns its truthy value) or the deadline (default 30 s) passes (the error names `what`). */
  async waitFor<T> (predicate: () => T | undefined | null | false | Promise<T | undefined | null | false>, opts: { timeoutMs?: number, intervalMs?: number, what?: string } = {}): Promise<T> {
    try {
      return await waitFor(predicate, { timeoutMs: 30_000, ...opts })
    } catch (err) {
      // A cluster that did not get there: the members' last membership lines say why (a failed CI run has nothing else).
      if (err instanceof Error && err.message.startsWith('timed out')) err.message += `\n${this.recentClusterLines()}`
      throw err
    }
  }

  /** The last membership log lines of every member, compact, for failure messages. */
  recentClusterLines (perMember = 12): string {
    const out: string[] = []
    for (const m of this.members) {
      out.push(`--- ${m.name} (${m.running ? 'running' : `exited ${JSON.stringify(m.exit ?? null)}`}, ${m.starts} starts)`)
      const lines = m.logs.filter((l) => l.component === 'cluster:member' && l.msg !== 'heartbeat').slice(-perMember)
      for (const l of lines) {
        const { level: _l, time, pid: _p, node: _n, component: _c, msg, ...rest } = l
        out.push(`  ${String(time).slice(11, 23)} ${String(msg)} ${JSON.stringify(rest).slice(0, 240)}`)
      }
    }
    return out.join('\n')
  }

  /** Waits for a log line of member i matching `pred` (also lines logged before the call). */
  async waitForLog (i: number, pred: (line: LogLine) => boolean, opts: { timeoutMs?: number, what?: string } = {}): Promise<LogLine> {
    const m = this.member(i)
    return await this.waitFor(() => {
      const line = m.logs.find(pred)
      if (line === undefined && m.exit !== undefined && opts.timeoutMs === undefined) {
        throw new Error(`${m.name} exited (${JSON.stringify(m.exit)}) before logging ${opts.what ?? 'the expected line'}; stderr: ${m.stderr.slice(-2000)}`)
      }
      return line
    }, { what: `${m.name}: ${opts.what ?? 'a log line'}`, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) })
  }

  /** Kills every member, stops the DNS server, removes the data directories. Idempotent. */
  async cleanup (): Promise<void> {
    if (this.cleaned) return
    this.cleaned = true
    for (const m of this.members) {
      if (m.running) {
        try { m.proc!.kill('SIGKILL') } catch { /* gone */ }
      }
    }
    await Promise.all(this.members.filter((m) => m.proc !== undefined).map(async (m) => await m.waitExit(5000).catch(() => undefined)))
    await this.dns.stop()
    await rm(this.root, { recursive: true, force: true })
  }
}
