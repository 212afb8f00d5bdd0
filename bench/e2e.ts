/**
 * Proven from the outside (issue 14's long form): a 3-member `vectis dev-cluster` (Kubernetes API emulator,
 * label-following load balancer, a real Prometheus when Debian's is installed) and a client that pushes and pulls
 * distinct files through the load balancer in a loop, a new connection per file, restarting an interrupted push.
 * Faults in turn, `--rounds` of each: kill -9 of the leader, SIGTERM of the leader, kill -9 of a standby, SIGSTOP
 * of the leader for 6 s then SIGCONT, the leader cut off from the other members (network namespaces: packets
 * dropped both ways until another member serves through the load balancer, then healed), and a rolling restart of
 * every member (SIGTERM, highest ordinal first).
 *
 * Where network namespaces can be made (root, iproute2, iptables), every member runs in one of its own
 * (`dev-cluster --netns`) for all the faults; elsewhere the members share loopback and the cut is skipped with a
 * line saying why.
 *
 * Afterwards: every push the client saw acknowledged is in the inbox once with its SHA-256 and every pull equalled
 * its source; never two leaders, from the members' logged leadership intervals (one monotonic clock for the
 * machine) and from the emulator's label changes; per fault kind, the client's longest gap without a successful
 * transfer (p50/p99 over the rounds) and the takeovers the new leaders measured (`vectis_cluster_takeover_seconds`,
 * read from their logs, so each is attributed to its fault); and what Prometheus saw (the most leaders in one evaluation of
 * `sum(vectis_cluster_is_leader)`, evaluations with none) as information: scrapes of different members are not
 * simultaneous.
 *
 * Usage: npm run build && npm run bench:e2e -- [--rounds 10] [--faults kill-leader,term-leader,...]
 *   [--netns-subnet 99 | --no-netns] [--base-ip 127.0.99.10 (loopback mode)]
 * Prints one JSON object, then a short table.
 */
import '../common/polyfill.js'
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { silentLogger } from '../common/logger.js'
import { DevCluster } from '../dev-cluster/dev-cluster.js'
import { NetnsLab } from '../dev-cluster/netns.js'
import { PROMETHEUS_BINARY } from '../dev-cluster/prometheus.js'
import { pullFile } from '../transfer/pull.js'
import { pushFile, PushInterruptedError } from '../transfer/push.js'
import { freePort } from '../test/helpers/daemon-process.js'
import { pct, servingLeader, until } from './bench-util.js'

const FAULTS = ['kill-leader', 'term-leader', 'kill-standby', 'stop-leader', 'cut-leader', 'rolling-restart'] as const
type Fault = typeof FAULTS[number]

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '10' },
    faults: { type: 'string' },
    'base-ip': { type: 'string', default: '127.0.99.10' },
    'netns-subnet': { type: 'string', default: '99' },
    'no-netns': { type: 'boolean', default: false }
  }
})
const rounds = Number(values.rounds)
let faults = (values.faults ?? FAULTS.join(',')).split(',').map((f) => f.trim()) as Fault[]
const subnet = Number(values['netns-subnet'])
if (!Number.isInteger(rounds) || rounds < 1 || faults.some((f) => !FAULTS.includes(f)) || !Number.isInteger(subnet) || subnet < 1 || subnet > 254) {
  console.error(`--rounds a positive integer, --faults among ${FAULTS.join(',')}, --netns-subnet 1-254`)
  process.exit(2)
}
const netnsUnavailable = values['no-netns'] ? '--no-netns' : NetnsLab.unavailable()
const skipped: Record<string, string> = {}
if (netnsUnavailable !== undefined && faults.includes('cut-leader')) {
  if (values.faults !== undefined) {
    console.error(`cut-leader needs network namespaces: ${netnsUnavailable}`)
    process.exit(2)
  }
  skipped['cut-leader'] = `skipped: network namespaces unavailable (${netnsUnavailable}); as root, apt-get install iproute2 iptables`
  process.stderr.write(`cut-leader ${skipped['cut-leader']}\n`)
  faults = faults.filter((f) => f !== 'cut-leader')
}

const PASSWORD = 'e2e12345'
const CONFIG = [
  'servers:', '  - id: PESITSRV', '    port: 5000', '    syncIntervalKb: 64',
  'partners:', '  - id: CXCLIENT', `    password: ${PASSWORD}`, '    access: both',
  'files:', '  - id: INBOX', '    directory: inbox', '    filenamePattern: "${partner}_${transferId}"',
  '  - id: OUTBOX', '    direction: send', '    directory: outbox', ''
].join('\n')
const PULL_FILES = 8

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

const work = await mkdtemp(join(tmpdir(), 'vectis-bench-e2e-'))
const data = join(work, 'cluster')
await mkdir(data, { recursive: true })
await writeFile(join(data, 'vectis.yaml'), CONFIG)
const withPrometheus = spawnSync(PROMETHEUS_BINARY, ['--version']).error === undefined
const dc = new DevCluster({ logger: silentLogger() }, {
  nodes: 3, baseIp: values['base-ip'], dataDir: data, lbHost: '127.0.0.1', lbPort: 0, httpPort: 8080, clusterPort: 7800,
  configFile: join(data, 'vectis.yaml'), demoPesitPort: 5000, apiUser: 'vectis', apiPassword: 'e2e-password', demoPassword: PASSWORD,
  clusterSecret: 'e2e-cluster-secret-0123456789ab', logLevel: 'info', restart: true,
  ...(withPrometheus ? { prometheusPort: await freePort() } : {}),
  ...(netnsUnavailable === undefined ? { netns: { subnet } } : {})
})
let stopping = false
// Stopped from outside (a test's deadline, Ctrl-C): the members and Prometheus go too, not only this process.
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    stopping = true
    void dc.stop().finally(async () => { await rm(work, { recursive: true, force: true }); process.exit(1) })
  })
}
let labelConflicts = 0
dc.events.on('label:conflict', () => { labelConflicts++ })
/** When each member process was seen to exit (process.hrtime, the clock of the members' leadership logs). */
const exitNs = new Map<number, bigint>()
dc.events.on('member:exited', (e) => { if (e.pid !== undefined) exitNs.set(e.pid, process.hrtime.bigint()) })

// ---- the client ----------------------------------------------------------------------------------------------
const successes: number[] = []
const acked = new Map<number, string>()
const pulled = { ok: 0, differs: 0 }
let clientError: string | undefined
/** Why the client's attempts failed, by message (numbers masked), with the time of the last one. */
const errors = new Map<string, { count: number, last: number }>()
function noteError (what: string, err: unknown): void {
  const key = `${what}: ${(err as Error).message.replace(/\d+/g, 'N').slice(0, 160)}`
  errors.set(key, { count: (errors.get(key)?.count ?? 0) + 1, last: Date.now() })
}
const sources = new Map<string, string>()

async function clientLoop (): Promise<void> {
  const lb = { host: '127.0.0.1', port: dc.lb.port!, partner: 'CXCLIENT', password: PASSWORD, server: 'PESITSRV', timeoutMs: 5000, syncIntervalKb: 64 }
  for (let n = 1; !stopping; n++) {
    // A push of a new file, restarted until it is acknowledged.
    const body = randomBytes(128 * 1024)
    const source = join(work, `push-${n}.bin`)
    await writeFile(source, body)
    let restart: { articlesPerSync: number } | undefined
    for (let attempt = 0; ; attempt++) {
      if (stopping) return
      if (attempt > 500) { clientError = `push ${n} keeps failing`; return }
      try {
        await pushFile({ ...lb, file: 'INBOX', source, transferId: n, ...(restart !== undefined ? { restart } : {}) })
        acked.set(n, sha(body))
        successes.push(Date.now())
        break
      } catch (err) {
        noteError('push', err)
        if (err instanceof PushInterruptedError) restart = { articlesPerSync: err.articlesPerSync }
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
    // A pull of one of the prepared files, by name, into a new path; tried again from the start if cut.
    const name = `pull-${n % PULL_FILES}.bin`
    for (let attempt = 0; ; attempt++) {
      if (stopping || attempt > 500) break
      const dest = join(work, 'pulled', `${n}-${attempt}.bin`)
      try {
        await pullFile({ ...lb, file: 'OUTBOX', name, destination: dest })
        if (sha(await readFile(dest)) === sources.get(name)) pulled.ok++
        else pulled.differs++
        successes.push(Date.now())
        await rm(dest, { force: true })
        break
      } catch (err) {
        noteError('pull', err)
        await rm(dest, { force: true })
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
  }
}

// ---- faults --------------------------------------------------------------------------------------------------
async function stable (): Promise<number> { return await servingLeader(dc, 180_000) }

/**
 * Member i, stopped by a fault, started again as soon as it has exited: a pod restarted at once (the dev cluster's
 * kubelet-like back-off grows with every restart and rounds come faster than its reset; the restart's speed is not
 * what is measured here).
 */
async function restartWhenExited (i: number, pid: number | undefined): Promise<void> {
  await until(`vectis-${i} exited`, () => { const m = dc.snapshot()[i]!; return m.pid !== pid || m.state !== 'running' ? true : undefined }, 60_000)
  dc.restartNow(i)
}

async function inject (fault: Fault, leader: number): Promise<void> {
  const ms = dc.snapshot()
  const pid = (i: number): number => ms[i]!.pid!
  switch (fault) {
    case 'kill-leader': dc.kill(leader); await restartWhenExited(leader, pid(leader)); break
    case 'term-leader': process.kill(pid(leader), 'SIGTERM'); await restartWhenExited(leader, pid(leader)); break
    case 'kill-standby': {
      const standby = (leader + 1) % ms.length
      dc.kill(standby)
      await restartWhenExited(standby, pid(standby))
      break
    }
    case 'stop-leader':
      process.kill(pid(leader), 'SIGSTOP')
      await new Promise((resolve) => setTimeout(resolve, 6000)) // the fault's duration
      process.kill(pid(leader), 'SIGCONT')
      break
    case 'cut-leader': {
      const others = ms.map((m) => m.index).filter((i) => i !== leader)
      await dc.partition([[leader], others])
      try {
        // Held until another member serves behind the load balancer (the old leader demoted itself by then).
        await until('another leader serving during the cut', () => {
          const l = dc.snapshot().find((m) => m.index !== leader && m.status?.isLeader === true && m.status.servers?.[0]?.running === true)
          return l !== undefined && dc.lb.current()?.name === l.name ? true : undefined
        }, 60_000)
      } finally {
        await dc.heal()
      }
      break
    }
    case 'rolling-restart':
      for (let i = ms.length - 1; i >= 0; i--) {
        const before = dc.snapshot()[i]!.pid
        process.kill(before!, 'SIGTERM')
        await restartWhenExited(i, before)
        await until(`vectis-${i} restarted`, () => { const m = dc.snapshot()[i]!; return m.pid !== before && m.state === 'running' ? true : undefined }, 120_000)
        await stable()
      }
      break
  }
}

interface Round { fault: Fault, round: number, gapMs: number, from: number, to: number }
const results: Round[] = []
const failures: string[] = []
const startedAt = Date.now()
let client: Promise<void> | undefined
try {
  await dc.start()
  const outbox = join(dc.sharedDir, 'outbox')
  await mkdir(outbox, { recursive: true })
  await mkdir(join(work, 'pulled'), { recursive: true })
  for (let i = 0; i < PULL_FILES; i++) {
    const b = randomBytes(128 * 1024)
    sources.set(`pull-${i}.bin`, sha(b))
    await writeFile(join(outbox, `pull-${i}.bin`), b)
  }
  await stable()
  client = clientLoop()
  await until('the client running', () => successes.length >= 4 ? true : undefined)
  for (const fault of faults) {
    for (let r = 1; r <= rounds; r++) {
      const leader = await stable()
      const doneBefore = successes.length
      const t0 = Date.now()
      await inject(fault, leader)
      await stable()
      // Recovered: transfers succeed again (two more than when the fault began).
      await until('transfers after the fault', () => successes.length >= doneBefore + 2 ? true : undefined, 180_000)
      // The longest time without a success, from the fault until the first success after the recovery.
      const marks = [t0, ...successes.filter((s) => s >= t0)]
      let gap = 0
      for (let k = 1; k < marks.length; k++) gap = Math.max(gap, marks[k]! - marks[k - 1]!)
      results.push({ fault, round: r, gapMs: gap, from: t0, to: Date.now() })
      const during = [...errors].filter(([, v]) => v.last >= t0).map(([k, v]) => `${v.count}× ${k}`).slice(0, 3)
      process.stderr.write(`${fault} ${r}: longest gap ${gap} ms${gap > 3000 ? `; client errors so far: ${during.join(' | ')}` : ''}\n`)
      if (clientError !== undefined) throw new Error(clientError)
    }
  }
} catch (err) {
  failures.push((err as Error).message.split('\n')[0]!)
} finally {
  stopping = true
  await client?.catch((err: unknown) => { failures.push(`client: ${(err as Error).message}`) })
}

// ---- checks --------------------------------------------------------------------------------------------------
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
const duplicated = [...byContent.values()].filter((c) => c > 1).length
// Leadership intervals of different members never overlap (process.hrtime: one monotonic clock for the machine).
// An interval starts at the member's `leader elected` line and ends at its `leader demoted` line (the end of its
// lease); a process killed while leading logs no end: its interval ends when the dev cluster saw it exit (later
// than its death, so the check is conservative), and one still leading ends now.
const intervals: Array<{ name: string, start: bigint, end: bigint }> = []
const checkedAtNs = process.hrtime.bigint()
for (const m of dc.snapshot()) {
  const text = await readFile(m.logFile, 'utf8').catch(() => '')
  const open = new Map<number, bigint>()
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue
    const l = JSON.parse(line) as { pid?: number, msg?: string, leadershipStartNs?: string, leadershipInterval?: { startNs: string, endNs: string } }
    if (l.msg === 'leader elected: this member leads' && l.leadershipStartNs !== undefined && l.pid !== undefined) {
      open.set(l.pid, BigInt(l.leadershipStartNs))
    } else if (l.msg === 'leader demoted: this member no longer leads' && l.leadershipInterval !== undefined) {
      if (l.pid !== undefined) open.delete(l.pid)
      intervals.push({ name: m.name, start: BigInt(l.leadershipInterval.startNs), end: BigInt(l.leadershipInterval.endNs) })
    }
  }
  for (const [pid, start] of open) intervals.push({ name: m.name, start, end: exitNs.get(pid) ?? checkedAtNs })
}
// The takeovers the members measured (vectis_cluster_takeover_seconds: the old leader's last sign to serving), from
// their logs: `previousLeaderSilentMs` at the election, plus the election to `PeSIT servers started`.
const takeovers: Array<{ at: number, ms: number }> = []
for (const m of dc.snapshot()) {
  const text = await readFile(m.logFile, 'utf8').catch(() => '')
  const elected = new Map<number, { at: number, silentMs: number }>()
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue
    const l = JSON.parse(line) as { pid?: number, time?: string, msg?: string, previousLeaderSilentMs?: number }
    if (l.pid === undefined || l.time === undefined) continue
    if (l.msg === 'leader elected: this member leads') {
      if (l.previousLeaderSilentMs !== undefined) elected.set(l.pid, { at: Date.parse(l.time), silentMs: l.previousLeaderSilentMs })
      else elected.delete(l.pid)
    } else if (l.msg === 'PeSIT servers started (leader)' && elected.has(l.pid)) {
      const e = elected.get(l.pid)!
      elected.delete(l.pid)
      takeovers.push({ at: e.at, ms: Math.round(e.silentMs + Date.parse(l.time) - e.at) })
    }
  }
}
let overlaps = 0
for (const a of intervals) for (const b of intervals) if (a !== b && a.name !== b.name && a.start < b.end && b.start < a.end) overlaps++
let prometheus: Record<string, unknown> | undefined
if (dc.prometheus !== undefined) {
  const span = `${Math.ceil((Date.now() - startedAt) / 1000)}s`
  const one = async (q: string): Promise<number | null> => { const r = await dc.prometheus!.query(q); return r.length === 0 ? null : Number(r[0]!.value[1]) }
  prometheus = {
    maxLeaders: await one(`max_over_time(sum(vectis_cluster_is_leader)[${span}:2s])`),
    evaluationsWithNoLeader: await one(`count_over_time((sum(vectis_cluster_is_leader) == 0)[${span}:2s])`),
    evaluations: await one(`count_over_time(sum(vectis_cluster_is_leader)[${span}:2s])`),
    takeoverP50s: await one('histogram_quantile(0.5, sum by (le) (vectis_cluster_takeover_seconds_bucket))'),
    takeoverP99s: await one('histogram_quantile(0.99, sum by (le) (vectis_cluster_takeover_seconds_bucket))')
  }
}
await dc.stop()
await rm(work, { recursive: true, force: true })

const perFault = Object.fromEntries(faults.map((f) => {
  const rs = results.filter((x) => x.fault === f)
  const gaps = rs.map((x) => x.gapMs)
  const took = takeovers.filter((t) => rs.some((r) => t.at >= r.from && t.at <= r.to)).map((t) => t.ms)
  return [f, { rounds: gaps.length, gapP50Ms: pct(gaps, 50), gapP99Ms: pct(gaps, 99), takeovers: took.length, takeoverP50Ms: pct(took, 50), takeoverP99Ms: pct(took, 99) }]
}))
if (lost + corrupted + duplicated + pulled.differs + overlaps + labelConflicts > 0) failures.push('a check failed')
const out = {
  machine: { cpus: cpus().length, loadAverage: loadavg().map((x) => Math.round(x * 100) / 100), node: process.version },
  members: netnsUnavailable === undefined ? `network namespaces 10.${subnet}.0.0/24` : `loopback ${values['base-ip']}`, skipped,
  pushesAcknowledged: acked.size, lost, corrupted, duplicated, pullsOk: pulled.ok, pullsDiffering: pulled.differs,
  leadershipIntervals: intervals.length, overlaps, labelConflicts, perFault, prometheus,
  clientErrors: [...errors].sort((a, b) => b[1].count - a[1].count).slice(0, 12).map(([k, v]) => ({ error: k, count: v.count })),
  failures
}
console.log(JSON.stringify(out, null, 2))
console.log('\n| fault | rounds | longest gap without a transfer, p50 / p99 (ms) | takeovers: count, p50 / p99 (ms) |')
console.log('|---|---|---|---|')
for (const f of faults) {
  const x = perFault[f]!
  console.log(`| ${f} | ${x.rounds} | ${x.gapP50Ms} / ${x.gapP99Ms} | ${x.takeovers}, ${x.takeoverP50Ms} / ${x.takeoverP99Ms} |`)
}
for (const [f, why] of Object.entries(skipped)) console.log(`| ${f} | 0 | ${why} | |`)
console.log(`\npushes acknowledged ${acked.size} (lost ${lost}, corrupted ${corrupted}, duplicated ${duplicated}), pulls ${pulled.ok} (differing ${pulled.differs}), ` +
  `leadership intervals ${intervals.length} (overlapping ${overlaps}), double labels ${labelConflicts}`)
if (failures.length > 0) process.exitCode = 1
