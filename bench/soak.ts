/**
 * Soak (issue 14): a 3-member `vectis dev-cluster` with the client of bench:e2e pushing and pulling through the load
 * balancer for `--minutes`, while Debian's `stress-ng` keeps every core busy, and no fault injected.
 *
 * Reported and checked:
 * - leader changes after the first leader: every one is spurious here (none is injected); the target is 0;
 * - per member, the resident set size (VmRSS) and open descriptors after the warm-up and at the end, sampled every
 *   `--sample-seconds` in between: RSS within +10 % of its value after the warm-up (the median of the samples of
 *   the first 2 minutes after it, against that of the last 2 minutes: V8's committed heap moves in steps of tens of
 *   MiB while the live heap is flat, and each sample also reports both), descriptors within ± 5;
 * - no member process restarted, nothing acknowledged lost or stored twice, every pull equal to its source.
 *
 * Usage: npm run build && npm run bench:soak -- [--minutes 20] [--warmup-minutes 2] [--sample-seconds 30] [--no-hog]
 *   [--keep (the work directory and the members' logs)]
 * Prints one JSON object, then a short table; exits 1 if a check fails.
 */
import '../common/polyfill.js'
import { spawn, spawnSync } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { servingLeader, until } from './bench-util.js'
import { API, checkDeliveries, e2eCluster, LbClient, leadershipIntervals, logLines, overlapping, stopOnSignal, watchCluster } from './e2e-client.js'

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '20' },
    'warmup-minutes': { type: 'string', default: '2' },
    'sample-seconds': { type: 'string', default: '30' },
    'no-hog': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'base-ip': { type: 'string', default: '127.0.97.10' }
  }
})
const minutes = Number(values.minutes)
const warmupMinutes = Number(values['warmup-minutes'])
const sampleSeconds = Number(values['sample-seconds'])
if (!(minutes > 0) || !(warmupMinutes >= 0) || minutes - warmupMinutes < 4 || !(sampleSeconds >= 1)) {
  // The RSS compared is the median of the first and of the last 2 minutes after the warm-up: they must not overlap.
  console.error('--minutes > 0, 0 <= --warmup-minutes, at least 4 minutes after the warm-up, --sample-seconds >= 1')
  process.exit(2)
}
const hog = !values['no-hog']
if (hog && spawnSync('stress-ng', ['--version']).error !== undefined) {
  console.error('stress-ng is not installed: as root, apt-get install stress-ng (or run with --no-hog)')
  process.exit(2)
}

interface Sample { at: number, rssKiB: number, anonKiB: number, fds: number, heapTotalMiB: number | null, heapUsedMiB: number | null, externalMiB: number | null }

const mib = (bytes: number): number => Math.round(bytes / 104857.6) / 10

/**
 * A member process's resident set (KiB) and open descriptors, from /proc, and where the memory is from its own
 * /metrics (V8 heap in use, memory outside the heap: buffers, SQLite); undefined once the process is gone.
 */
async function sample (pid: number, metricsUrl: string): Promise<Sample | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN)
    const fds = (await readdir(`/proc/${pid}/fd`)).length
    const text = await fetch(metricsUrl, { headers: { authorization: AUTH }, signal: AbortSignal.timeout(5000) }).then(async (r) => await r.text()).catch(() => '')
    const gauge = (name: string): number | null => { const m = new RegExp(`^${name} (\\S+)`, 'm').exec(text); return m === null ? null : mib(Number(m[1])) }
    return {
      at: Date.now(), rssKiB: kib('VmRSS'), anonKiB: kib('RssAnon'), fds,
      heapTotalMiB: gauge('nodejs_heap_size_total_bytes'), heapUsedMiB: gauge('nodejs_heap_size_used_bytes'), externalMiB: gauge('nodejs_external_memory_bytes')
    }
  } catch {
    return undefined
  }
}

const AUTH = `Basic ${Buffer.from(`${API.user}:${API.password}`).toString('base64')}`
/** What the members logged about the cluster after `since` (epoch ms): why a leader changed, if one did. */
async function clusterEventsSince (since: number): Promise<string[]> {
  const wanted = new Set(['member suspected', 'view installed', 'leader elected: this member leads', 'leader demoted: this member no longer leads'])
  const out: Array<{ at: number, text: string }> = []
  for (const m of dc.snapshot()) {
    for (const l of await logLines(m)) {
      const at = Date.parse(l.time ?? '')
      if (!(at > since) || l.msg === undefined || !wanted.has(l.msg)) continue
      out.push({ at, text: `${l.time!.slice(11, 23)} ${m.name}: ${l.msg}${l.member !== undefined ? ` ${l.member}` : ''}${l.reason !== undefined ? ` (${l.reason})` : ''}${l.members !== undefined ? ` [${l.members.join(',')}]` : ''}` })
    }
  }
  return out.sort((a, b) => a.at - b.at).map((e) => e.text).slice(0, 50)
}

/** The span at each end of the run whose samples' median RSS is compared. */
const WINDOW_MS = 2 * 60_000
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

const work = await mkdtemp(join(tmpdir(), 'vectis-bench-soak-'))
const dc = await e2eCluster(work, { baseIp: values['base-ip'] })
stopOnSignal(dc, work)
const watch = watchCluster(dc)
const client = new LbClient(dc, work)
const failures: string[] = []
const series = new Map<string, { pid: number, samples: Sample[] }>()
let settledAt = 0
let labelsAtSettle = 0
let hogProc: ReturnType<typeof spawn> | undefined
try {
  await dc.start()
  await servingLeader(dc, 180_000)
  settledAt = Date.now()
  labelsAtSettle = watch.labelsSet
  if (hog) {
    // One CPU worker per core, in its own process group so that it goes with everything it forked.
    hogProc = spawn('stress-ng', ['--cpu', String(cpus().length), '--timeout', `${Math.ceil(minutes * 60) + 60}s`, '--quiet'], { stdio: 'ignore', detached: true })
    // Stopped from outside too (Ctrl-C exits from stopOnSignal): the hog never outlives the benchmark.
    const hogPid = hogProc.pid
    if (hogPid !== undefined) process.on('exit', () => { try { process.kill(-hogPid, 'SIGKILL') } catch { /* already gone */ } })
  }
  await client.start()
  await until('the client running', () => client.successes.length >= 4 ? true : undefined)
  const warmupEnd = Date.now() + warmupMinutes * 60_000
  while (Date.now() < warmupEnd) await sleep(Math.min(1000, warmupEnd - Date.now()))
  for (const m of dc.snapshot()) series.set(m.name, { pid: m.pid!, samples: [] })
  const end = settledAt + minutes * 60_000
  for (;;) {
    for (const m of dc.snapshot()) {
      const s = series.get(m.name)!
      // Reported once per new process; a member down between two processes has no pid.
      if (m.pid !== undefined && m.pid !== s.pid) { failures.push(`${m.name} restarted (pid ${s.pid} → ${m.pid})`); s.pid = m.pid }
      const x = await sample(s.pid, `http://${m.ip}:8080/metrics`)
      if (x !== undefined) s.samples.push(x)
    }
    if (client.gaveUp !== undefined) throw new Error(client.gaveUp)
    if (Date.now() >= end) break
    await sleep(Math.min(sampleSeconds * 1000, end - Date.now()))
  }
} catch (err) {
  failures.push((err as Error).message.split('\n')[0]!)
} finally {
  await client.stop().catch((err: unknown) => { failures.push(`client: ${(err as Error).message}`) })
  if (hogProc?.pid !== undefined) { try { process.kill(-hogProc.pid, 'SIGKILL') } catch { /* already gone */ } }
}

const { lost, corrupted, duplicated } = await checkDeliveries(dc, client.acked)
const intervals = await leadershipIntervals(dc, watch.exitNs, process.hrtime.bigint())
const spuriousLeaderChanges = Math.max(0, watch.labelsSet - labelsAtSettle)
const elections = intervals.filter((i) => i.at > settledAt).length
const clusterEvents = await clusterEventsSince(settledAt)
await dc.stop()
if (values.keep) process.stderr.write(`kept: ${work} (members' logs in cluster/logs)\n`)
else await rm(work, { recursive: true, force: true })

const members = [...series].map(([name, s]) => {
  const first = s.samples[0]
  const last = s.samples.at(-1)
  // V8 grows and shrinks its committed heap in steps of tens of MiB while the live heap stays flat, so one sample is
  // no baseline: the RSS compared is the median over the first and over the last WINDOW_MS of the samples.
  const windowMedian = (from: number, to: number): number | null => {
    const xs = s.samples.filter((x) => x.at >= from && x.at <= to).map((x) => x.rssKiB).sort((a, b) => a - b)
    return xs.length === 0 ? null : xs[Math.floor((xs.length - 1) / 2)]!
  }
  const start = first === undefined ? null : windowMedian(first.at, first.at + WINDOW_MS)
  const end = last === undefined ? null : windowMedian(last.at - WINDOW_MS, last.at)
  const rssGrowthPct = start === null || end === null ? null : Math.round((end / start - 1) * 1000) / 10
  const fdDelta = first === undefined || last === undefined ? null : last.fds - first.fds
  const ok = rssGrowthPct !== null && fdDelta !== null && rssGrowthPct <= 10 && Math.abs(fdDelta) <= 5
  if (!ok) failures.push(`${name}: RSS ${String(rssGrowthPct)} %, descriptors ${String(fdDelta)}`)
  const inMiB = (kib: number | null | undefined): number | null => kib == null ? null : mib(kib * 1024)
  return {
    name, samples: s.samples.length,
    rssMiB: { afterWarmup: inMiB(start), end: inMiB(end), firstSample: inMiB(first?.rssKiB), lastSample: inMiB(last?.rssKiB), max: inMiB(Math.max(...s.samples.map((x) => x.rssKiB))) },
    rssGrowthPct,
    fds: { afterWarmup: first?.fds ?? null, end: last?.fds ?? null, min: Math.min(...s.samples.map((x) => x.fds)), max: Math.max(...s.samples.map((x) => x.fds)) },
    fdDelta, ok,
    /** Every sample: minutes since the warm-up; RSS, its anonymous part, V8 heap committed and in use, memory outside the heap (MiB). */
    series: s.samples.map((x) => [Math.round((x.at - (first?.at ?? x.at)) / 6000) / 10, mib(x.rssKiB * 1024), mib(x.anonKiB * 1024), x.heapTotalMiB, x.heapUsedMiB, x.externalMiB])
  }
})
const overlaps = overlapping(intervals)
if (spuriousLeaderChanges + elections > 0) failures.push(`${spuriousLeaderChanges} leader label moves and ${elections} elections with no fault injected`)
if (lost + corrupted + duplicated + client.pulled.differs + overlaps + watch.labelConflicts > 0) failures.push('a transfer or leadership check failed')
const minutesRun = (Date.now() - settledAt) / 60_000
const out = {
  machine: { cpus: cpus().length, loadAverage: loadavg().map((x) => Math.round(x * 100) / 100), node: process.version },
  minutes, warmupMinutes, hog: hog ? `stress-ng --cpu ${cpus().length}` : 'none',
  spuriousLeaderChanges, elections, overlaps, labelConflicts: watch.labelConflicts,
  pushesAcknowledged: client.acked.size, lost, corrupted, duplicated, pullsOk: client.pulled.ok, pullsDiffering: client.pulled.differs,
  transfersPerMinute: Math.round(client.successes.length / minutesRun),
  members,
  clientErrors: client.errorsSince(0, 8),
  clusterEvents,
  failures
}
console.log(JSON.stringify(out, null, 2))
console.log('\n| member | RSS after warm-up → end (MiB) | growth | max | descriptors after warm-up → end | ok |')
console.log('|---|---|---|---|---|---|')
for (const m of members) {
  console.log(`| ${m.name} | ${String(m.rssMiB.afterWarmup)} → ${String(m.rssMiB.end)} | ${String(m.rssGrowthPct)} % | ${m.rssMiB.max} | ${String(m.fds.afterWarmup)} → ${String(m.fds.end)} | ${m.ok ? 'yes' : 'NO'} |`)
}
console.log(`\n${minutes} min, hog ${out.hog}: leader changes ${spuriousLeaderChanges} (elections ${elections}), pushes acknowledged ${client.acked.size} ` +
  `(lost ${lost}, duplicated ${duplicated}), pulls ${client.pulled.ok} (differing ${client.pulled.differs}), ${out.transfersPerMinute} transfers/min`)
if (failures.length > 0) process.exitCode = 1
