/**
 * What the benchmarks that watch a dev cluster from the outside share (bench:e2e, bench:soak): the cluster with one
 * server, a partner and an inbox/outbox; a client that pushes and pulls distinct files through the load balancer;
 * and the checks afterwards, from what is on disk and in the members' logs.
 */
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { silentLogger } from '../common/logger.js'
import { DevCluster, type DevMember } from '../dev-cluster/dev-cluster.js'
import { PROMETHEUS_BINARY } from '../dev-cluster/prometheus.js'
import { pullFile } from '../transfer/pull.js'
import { pushFile, PushInterruptedError } from '../transfer/push.js'
import { freePort } from '../test/helpers/daemon-process.js'

const PASSWORD = 'e2e12345'
const CONFIG = [
  'servers:', '  - id: PESITSRV', '    port: 5000', '    syncIntervalKb: 64',
  'partners:', '  - id: CXCLIENT', `    password: ${PASSWORD}`, '    access: both',
  'files:', '  - id: INBOX', '    directory: inbox', '    filenamePattern: "${partner}_${transferId}"',
  '  - id: OUTBOX', '    direction: send', '    directory: outbox', ''
].join('\n')
/** Files prepared in the outbox; the client pulls them in turn, by name. */
const PULL_FILES = 8
/** The members' API credentials. */
export const API = { user: 'vectis', password: 'e2e-password' }
const FILE_BYTES = 128 * 1024

export const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** The built daemon: members run what is deployed (`npm run build`), not the sources through a loader. */
const VECTISD = fileURLToPath(new URL('../dist/bin/vectisd.js', import.meta.url))

/**
 * A 3-member dev cluster under `work`, with a real Prometheus where Debian's is installed; on loopback from
 * `baseIp`, or in network namespaces on 10.`netnsSubnet`.0.0/24.
 */
export async function e2eCluster (work: string, o: { baseIp: string, netnsSubnet?: number }): Promise<DevCluster> {
  if (!existsSync(VECTISD)) throw new Error(`${VECTISD} is missing: run npm run build first`)
  const data = join(work, 'cluster')
  await mkdir(data, { recursive: true })
  await writeFile(join(data, 'vectis.yaml'), CONFIG)
  const withPrometheus = spawnSync(PROMETHEUS_BINARY, ['--version']).error === undefined
  return new DevCluster({ logger: silentLogger() }, {
    nodes: 3, baseIp: o.baseIp, dataDir: data, lbHost: '127.0.0.1', lbPort: 0, httpPort: 8080, clusterPort: 7800,
    configFile: join(data, 'vectis.yaml'), demoPesitPort: 5000, apiUser: API.user, apiPassword: API.password, demoPassword: PASSWORD,
    clusterSecret: 'e2e-cluster-secret-0123456789ab', logLevel: 'info', restart: true, memberCommand: [process.execPath, VECTISD],
    ...(withPrometheus ? { prometheusPort: await freePort() } : {}),
    ...(o.netnsSubnet !== undefined ? { netns: { subnet: o.netnsSubnet } } : {})
  })
}

/** Stopped from outside (a test's deadline, Ctrl-C): the members and Prometheus go too, not only this process. */
export function stopOnSignal (dc: DevCluster, work: string): void {
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      void dc.stop().finally(async () => { await rm(work, { recursive: true, force: true }); process.exit(1) })
    })
  }
}

/**
 * What the dev cluster reports as it happens: times two pods carried the leader label at once, leader labels set
 * (each a leadership taking the load balancer), and when each member process was seen to exit (process.hrtime, the
 * clock of the members' leadership logs).
 */
export function watchCluster (dc: DevCluster): { labelConflicts: number, labelsSet: number, exitNs: Map<number, bigint> } {
  const w = { labelConflicts: 0, labelsSet: 0, exitNs: new Map<number, bigint>() }
  dc.events.on('label:conflict', () => { w.labelConflicts++ })
  dc.events.on('label:changed', (e) => { if (e.leader) w.labelsSet++ })
  dc.events.on('member:exited', (e) => { if (e.pid !== undefined) w.exitNs.set(e.pid, process.hrtime.bigint()) })
  return w
}

/**
 * The client: a loop of one push of a new file, restarted until it is acknowledged, then one pull of a prepared
 * file into a new path, tried again from the start if cut; a new connection for each, through the load balancer.
 */
export class LbClient {
  /** Epoch ms of every successful transfer. */
  readonly successes: number[] = []
  /** Transfer id → SHA-256 of every push the server acknowledged. */
  readonly acked = new Map<number, string>()
  readonly pulled = { ok: 0, differs: 0 }
  /** Set when the client gave up (a transfer failing 500 times in a row). */
  gaveUp: string | undefined
  /** Why attempts failed, by message (numbers masked), with the time of the last one. */
  readonly errors = new Map<string, { count: number, last: number }>()
  private readonly sources = new Map<string, string>()
  private stopping = false
  private loop: Promise<void> | undefined

  constructor (private readonly dc: DevCluster, private readonly work: string) {}

  /** Writes the files to pull into the cluster's outbox and starts the loop. */
  async start (): Promise<void> {
    const outbox = join(this.dc.sharedDir, 'outbox')
    await mkdir(outbox, { recursive: true })
    await mkdir(join(this.work, 'pulled'), { recursive: true })
    for (let i = 0; i < PULL_FILES; i++) {
      const b = randomBytes(FILE_BYTES)
      this.sources.set(`pull-${i}.bin`, sha(b))
      await writeFile(join(outbox, `pull-${i}.bin`), b)
    }
    this.loop = this.run()
  }

  /** Ends the loop after the transfer under way. */
  async stop (): Promise<void> {
    this.stopping = true
    await this.loop
  }

  /** The latest errors since `since` (epoch ms), most frequent first. */
  errorsSince (since: number, n = 3): string[] {
    return [...this.errors].filter(([, v]) => v.last >= since).sort((a, b) => b[1].count - a[1].count).slice(0, n).map(([k, v]) => `${v.count}× ${k}`)
  }

  /** The longest time without a success from `t0` until the first success after it (what a partner waits). */
  longestGapSince (t0: number): number {
    const marks = [t0, ...this.successes.filter((s) => s >= t0)]
    let gap = 0
    for (let k = 1; k < marks.length; k++) gap = Math.max(gap, marks[k]! - marks[k - 1]!)
    return gap
  }

  private noteError (what: string, err: unknown): void {
    const key = `${what}: ${(err as Error).message.replace(/\d+/g, 'N').slice(0, 160)}`
    this.errors.set(key, { count: (this.errors.get(key)?.count ?? 0) + 1, last: Date.now() })
  }

  private async run (): Promise<void> {
    const lb = { host: '127.0.0.1', port: this.dc.lb.port!, partner: 'CXCLIENT', password: PASSWORD, server: 'PESITSRV', timeoutMs: 5000, syncIntervalKb: 64 }
    const pause = async (): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, 50)) }
    for (let n = 1; !this.stopping; n++) {
      const body = randomBytes(FILE_BYTES)
      const source = join(this.work, `push-${n}.bin`)
      await writeFile(source, body)
      let restart: { articlesPerSync: number } | undefined
      for (let attempt = 0; ; attempt++) {
        if (this.stopping) return
        if (attempt > 500) { this.gaveUp = `push ${n} keeps failing`; return }
        try {
          await pushFile({ ...lb, file: 'INBOX', source, transferId: n, ...(restart !== undefined ? { restart } : {}) })
          this.acked.set(n, sha(body))
          this.successes.push(Date.now())
          break
        } catch (err) {
          this.noteError('push', err)
          if (err instanceof PushInterruptedError) restart = { articlesPerSync: err.articlesPerSync }
          await pause()
        }
      }
      await rm(source, { force: true })
      const name = `pull-${n % PULL_FILES}.bin`
      for (let attempt = 0; ; attempt++) {
        if (this.stopping) return
        if (attempt > 500) { this.gaveUp = `pull ${n} keeps failing`; return }
        const dest = join(this.work, 'pulled', `${n}-${attempt}.bin`)
        try {
          await pullFile({ ...lb, file: 'OUTBOX', name, destination: dest })
          if (sha(await readFile(dest)) === this.sources.get(name)) this.pulled.ok++
          else this.pulled.differs++
          this.successes.push(Date.now())
          await rm(dest, { force: true })
          break
        } catch (err) {
          this.noteError('pull', err)
          await rm(dest, { force: true })
          await pause()
        }
      }
    }
  }
}

/** Every acknowledged push in the inbox once, with its SHA-256; no content stored twice. */
export async function checkDeliveries (dc: DevCluster, acked: Map<number, string>): Promise<{ lost: number, corrupted: number, duplicated: number }> {
  const inbox = join(dc.sharedDir, 'inbox')
  const delivered = (await readdir(inbox).catch(() => [] as string[])).filter((n) => !n.startsWith('.'))
  let lost = 0
  let corrupted = 0
  for (const [id, want] of acked) {
    const body = await readFile(join(inbox, `CXCLIENT_${id}`)).catch(() => undefined)
    if (body === undefined) lost++
    else if (sha(body) !== want) corrupted++
  }
  const byContent = new Map<string, number>()
  for (const n of delivered) {
    const h = sha(await readFile(join(inbox, n)))
    byContent.set(h, (byContent.get(h) ?? 0) + 1)
  }
  return { lost, corrupted, duplicated: [...byContent.values()].filter((c) => c > 1).length }
}

/** The fields of a member's JSON log lines that the benchmarks read. */
export interface LogLine {
  pid?: number
  time?: string
  msg?: string
  leadershipStartNs?: string
  leadershipInterval?: { startNs: string, endNs: string }
  previousLeaderSilentMs?: number
  member?: string
  reason?: string
  members?: string[]
}

/** A member's JSON log lines (its stderr lines, which share the file, left out). */
export async function logLines (m: DevMember): Promise<LogLine[]> {
  const text = await readFile(m.logFile, 'utf8').catch(() => '')
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine)
}

export interface LeadershipInterval { name: string, start: bigint, end: bigint, at: number }

/**
 * The members' leadership intervals (process.hrtime: one monotonic clock for the machine). One starts at the
 * member's `leader elected` line and ends at its `leader demoted` line (the end of its lease). A process killed
 * while leading logs no end: its interval ends when the dev cluster saw it exit (`exitNs` by pid, later than its
 * death, so the check is conservative); one still leading ends at `nowNs`. `at`: epoch ms of the election.
 */
export async function leadershipIntervals (dc: DevCluster, exitNs: Map<number, bigint>, nowNs: bigint): Promise<LeadershipInterval[]> {
  const out: LeadershipInterval[] = []
  for (const m of dc.snapshot()) {
    const open = new Map<number, { start: bigint, at: number }>()
    for (const l of await logLines(m)) {
      if (l.msg === 'leader elected: this member leads' && l.leadershipStartNs !== undefined && l.pid !== undefined) {
        open.set(l.pid, { start: BigInt(l.leadershipStartNs), at: Date.parse(l.time ?? '') })
      } else if (l.msg === 'leader demoted: this member no longer leads' && l.leadershipInterval !== undefined) {
        const at = l.pid === undefined ? undefined : open.get(l.pid)?.at
        if (l.pid !== undefined) open.delete(l.pid)
        out.push({ name: m.name, start: BigInt(l.leadershipInterval.startNs), end: BigInt(l.leadershipInterval.endNs), at: at ?? Number.NaN })
      }
    }
    for (const [pid, o] of open) out.push({ name: m.name, start: o.start, end: exitNs.get(pid) ?? nowNs, at: o.at })
  }
  return out
}

/** Pairs of intervals of different members that overlap (each pair counted once). */
export function overlapping (intervals: LeadershipInterval[]): number {
  let n = 0
  intervals.forEach((a, i) => {
    for (const b of intervals.slice(i + 1)) if (a.name !== b.name && a.start < b.end && b.start < a.end) n++
  })
  return n
}

/**
 * The takeovers the new leaders measured (`vectis_cluster_takeover_seconds`: the old leader's last sign to
 * serving), from their logs: `previousLeaderSilentMs` at the election plus the election to `PeSIT servers started`.
 */
export async function takeovers (dc: DevCluster): Promise<Array<{ at: number, ms: number }>> {
  const out: Array<{ at: number, ms: number }> = []
  for (const m of dc.snapshot()) {
    const elected = new Map<number, { at: number, silentMs: number }>()
    for (const l of await logLines(m)) {
      if (l.pid === undefined || l.time === undefined) continue
      if (l.msg === 'leader elected: this member leads') {
        if (l.previousLeaderSilentMs !== undefined) elected.set(l.pid, { at: Date.parse(l.time), silentMs: l.previousLeaderSilentMs })
        else elected.delete(l.pid)
      } else if (l.msg === 'PeSIT servers started (leader)') {
        const e = elected.get(l.pid)
        if (e === undefined) continue
        elected.delete(l.pid)
        out.push({ at: e.at, ms: Math.round(e.silentMs + Date.parse(l.time) - e.at) })
      }
    }
  }
  return out
}
