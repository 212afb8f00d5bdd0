// Cluster timings with real vectisd processes (`npm run build` first), 3 members and the default timers unless told:
//   npm run bench:cluster -- [--runs 20] [--runs15 N] [--only a,b] [--subnet 170]
// Scenarios: cold start of 3 and of 15 members to one view, kill -9 of a member → removed from every view, kill -9 /
// SIGTERM / SIGSTOP of the leader → another member leads (and kill -9 followed at once by a restart, as a container
// restart: the new incarnation answering at the address verifies the death), partition heal → one view (network
// namespaces, root), kill -9 of the leader with the Kubernetes part on (`killLeaderK8s`: the deployed setting, where
// the API reports the crashed container; bench/failover-k8s.ts), idle RSS/CPU per member, and the overlap check of
// every logged leadership interval over all runs. Prints JSON, then a table with p50/p99.
//
// How times are taken: signals and heals are stamped with process.hrtime.bigint() (one clock for every process of the
// machine) right before they are sent; a successor's start is its logged `leadershipStartNs`. View times come from the
// members' log timestamps (wall clock, ms) against Date.now() of the action. Cold start is measured from the spawn of
// the last process (`fromLastSpawn`) and from the last member's `cluster member starting` line (`fromLastReady`).
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { ClusterHarness, ROOT_DIR, type LogLine } from '../test/helpers/cluster-harness.js'
import { NetnsLab } from '../dev-cluster/netns.js'
import { track, leadershipIntervals, overlaps, viewOf, findSplit, LEADER_ELECTED } from '../test/helpers/cluster-checks.js'

interface Args { runs: number, runs15: number, only: Set<string> | undefined, subnet: number }

function parseArgs (argv: string[]): Args {
  const a: Args = { runs: 20, runs15: 20, only: undefined, subnet: 170 }
  let runs15Given = false
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]
    const v = argv[i + 1]
    const int = (name: string): number => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < 1) throw new Error(`${name} expects a positive integer, got ${String(v)}`)
      i++
      return n
    }
    if (k === '--runs') a.runs = int(k)
    else if (k === '--runs15') { a.runs15 = int(k); runs15Given = true } else if (k === '--subnet') a.subnet = int(k)
    else if (k === '--only') { a.only = new Set(String(v).split(',')); i++ } else throw new Error(`unknown argument ${String(k)} (--runs N, --runs15 N, --only a,b, --subnet X)`)
  }
  if (!runs15Given) a.runs15 = a.runs
  return a
}

const args = parseArgs(process.argv.slice(2))
const want = (name: string): boolean => args.only === undefined || args.only.has(name)

function pct (xs: number[], p: number): number | null {
  if (xs.length === 0) return null
  const s = [...xs].sort((x, y) => x - y)
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!
}

interface Series { samplesMs: number[], failures: string[] }
const results: Record<string, Series> = {}
function series (name: string): Series {
  results[name] ??= { samplesMs: [], failures: [] }
  return results[name]
}
const overlapFindings: string[] = []
let intervalsChecked = 0
let subnet = args.subnet

const wallOf = (l: LogLine): number => Date.parse(String(l.time))
const ms = (ns: bigint): number => Number(ns) / 1e6

async function statusOk (h: ClusterHarness, i: number): Promise<Record<string, unknown> | undefined> {
  return await h.status(i, 3000).catch(() => undefined)
}

/** Waits for one view of exactly `which` on every member of `which`, and one leader among them that all name. */
async function steady (h: ClusterHarness, which: number[], timeoutMs = 60_000): Promise<number> {
  const names = which.map((i) => h.member(i).name).sort().join()
  let leader = -1
  await h.waitFor(async () => {
    const st = await Promise.all(which.map(async (i) => await statusOk(h, i)))
    if (st.some((s) => s === undefined)) return false
    const views = st.map((s) => (s!.members as Array<{ name: string }>).map((m) => m.name))
    if (!views.every((v) => [...v].sort().join() === names && v.join() === views[0]!.join())) return false
    const leading = which.filter((_, k) => st[k]!.isLeader === true)
    if (leading.length !== 1) return false
    leader = leading[0]!
    return st.every((s) => s!.leader === h.member(leader).name)
  }, { timeoutMs, intervalMs: 50, what: `a steady cluster of ${names}` })
  return leader
}

function checkOverlaps (h: ClusterHarness, label: string): void {
  const iv = leadershipIntervals(h)
  intervalsChecked += iv.length
  for (const o of overlaps(iv)) overlapFindings.push(`${label}: ${o}`)
}

async function withCluster<T> (n: number, fn: (h: ClusterHarness) => Promise<T>, netns?: NetnsLab): Promise<T> {
  const s = subnet++
  const h = await ClusterHarness.create(undefined, netns !== undefined ? { nodes: n, netns } : { nodes: n, subnet: s })
  track(h, `bench ${n}`)
  try {
    return await fn(h)
  } finally {
    checkOverlaps(h, `cluster ${s}`)
    await h.cleanup()
  }
}

/** First log line (wall time) at which member i holds a view with exactly `names`, after `sinceWall`. */
function viewTime (h: ClusterHarness, i: number, names: string[], sinceWall: number): number | undefined {
  const want = [...names].sort().join()
  for (const l of h.logs(i)) {
    const v = viewOf(l)
    if (v !== undefined && wallOf(l) >= sinceWall - 1 && [...v.members].sort().join() === want) return wallOf(l)
  }
  return undefined
}

async function coldStart (n: number, runs: number): Promise<void> {
  const fromSpawn = series(`coldStart${n}.fromLastSpawn`)
  const fromReady = series(`coldStart${n}.fromLastReady`)
  for (let r = 0; r < runs; r++) {
    try {
      await withCluster(n, async (h) => {
        await h.startAll()
        const spawned = Date.now()
        const all = h.members.map((m) => m.name)
        await h.waitFor(() => h.members.every((m) => viewTime(h, m.index, all, 0) !== undefined), { timeoutMs: 120_000, intervalMs: 50, what: `one view of ${n}` })
        const done = Math.max(...h.members.map((m) => viewTime(h, m.index, all, 0)!))
        const ready = Math.max(...h.members.map((m) => wallOf(m.logs.find((l) => l.msg === 'cluster member starting')!)))
        fromSpawn.samplesMs.push(done - spawned)
        fromReady.samplesMs.push(done - ready)
        // The members' logs must never show two multi-member views at once.
        const split = findSplit(h)
        if (split !== undefined) fromSpawn.failures.push(`split: ${split}`)
      })
    } catch (err) {
      fromSpawn.failures.push((err as Error).message)
    }
  }
}

/** kill -9 of a member, and kill -9 / SIGTERM / SIGSTOP of the leader, on one cluster of 3 restored after each run. */
async function failures (runs: number): Promise<void> {
  await withCluster(3, async (h) => {
    const idx = [0, 1, 2]
    await h.startAll()
    await steady(h, idx)
    const names = (which: number[]): string[] => which.map((i) => h.member(i).name)

    if (want('killMember')) {
      const s = series('killMember.removedFromEveryView')
      for (let r = 0; r < runs; r++) {
        try {
          const leader = await steady(h, idx)
          const victim = idx.filter((i) => i !== leader)[r % 2]!
          const rest = idx.filter((i) => i !== victim)
          const t0 = Date.now()
          await h.kill(victim)
          await h.waitFor(() => rest.every((i) => viewTime(h, i, names(rest), t0) !== undefined), { timeoutMs: 30_000, what: 'removal' })
          s.samplesMs.push(Math.max(...rest.map((i) => viewTime(h, i, names(rest), t0)!)) - t0)
          await h.start(victim)
        } catch (err) { s.failures.push((err as Error).message) }
      }
    }

    const leaderScenario = async (name: string, act: (leader: number) => Promise<void>, restore: (leader: number) => Promise<void>): Promise<void> => {
      const s = series(name)
      for (let r = 0; r < runs; r++) {
        try {
          const leader = await steady(h, idx)
          const rest = idx.filter((i) => i !== leader)
          const seen = rest.map((i) => h.logs(i).length)
          const t0 = process.hrtime.bigint()
          await act(leader)
          const line = await h.waitFor(() => {
            for (const [k, i] of rest.entries()) {
              const l = h.logs(i).slice(seen[k]).find((x) => x.msg === LEADER_ELECTED)
              if (l !== undefined) return l
            }
            return undefined
          }, { timeoutMs: 30_000, intervalMs: 10, what: 'a successor' })
          s.samplesMs.push(ms(BigInt(String(line.leadershipStartNs)) - t0))
          await restore(leader)
        } catch (err) { s.failures.push((err as Error).message) }
      }
    }
    if (want('killLeader')) {
      await leaderScenario('killLeader.successorElected', async (l) => { h.member(l).proc!.kill('SIGKILL'); await h.member(l).waitExit(5000) }, async (l) => { await h.start(l) })
    }
    if (want('killLeaderRestart')) {
      // As a container restart does: the new incarnation at the same address proves the old one dead (dial-back).
      await leaderScenario('killLeaderRestart.successorElected', async (l) => { h.member(l).proc!.kill('SIGKILL'); await h.member(l).waitExit(5000); await h.start(l) }, async () => {})
    }
    if (want('termLeader')) {
      await leaderScenario('termLeader.successorElected', async (l) => { h.signal(l, 'SIGTERM') }, async (l) => { await h.member(l).waitExit(20_000); await h.start(l) })
    }
    if (want('stopLeader')) {
      await leaderScenario('stopLeader.newLeader', async (l) => { h.pause(l) }, async (l) => { h.resume(l) })
      // After SIGCONT the old leaders must never have acted: the overlap check covers their logged intervals.
    }
    await steady(h, idx)

    if (want('idle')) {
      // Idle cost per member: RSS now, CPU over a few seconds of a steady cluster (utime+stime from /proc).
      const tick = 100 // USER_HZ on Linux
      const cpu = (pid: number): number => {
        const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
        return (Number(f[11]) + Number(f[12])) / tick
      }
      const before = h.members.map((m) => cpu(m.pid!))
      const t0 = Date.now()
      await new Promise((resolve) => setTimeout(resolve, 10_000))
      const secs = (Date.now() - t0) / 1000
      idle.push(...h.members.map((m, k) => {
        const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${m.pid!}/status`, 'utf8'))
        return { member: m.name, rssMiB: Math.round(Number(rss?.[1] ?? NaN) / 102.4) / 10, cpuPercent: Math.round((cpu(m.pid!) - before[k]!) / secs * 1000) / 10 }
      }))
    }
  })
}
const idle: Array<{ member: string, rssMiB: number, cpuPercent: number }> = []

/**
 * kill -9 of the leader as deployed: the Kubernetes part on, against the API emulator that reports the crashed
 * container as a kubelet does (bench/failover-k8s.ts, run as a child so its cluster is its own). Elected, labelled
 * and serving times from the kill.
 */
async function killLeaderK8s (runs: number): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', './common/polyfill.ts', 'bench/failover-k8s.ts', '--rounds', String(runs)], { cwd: ROOT_DIR, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  const line = out.split('\n').find((l) => l.startsWith('{'))
  const names = ['elected', 'labelled', 'serving'] as const
  if (line === undefined) {
    for (const n of names) series(`killLeaderK8s.${n}`).failures.push(`bench/failover-k8s.ts exited ${String(code)} without a result`)
    return
  }
  const r = JSON.parse(line) as { samplesMs: Record<(typeof names)[number], number[]>, intervalsChecked: number, overlaps: number }
  for (const n of names) series(`killLeaderK8s.${n}`).samplesMs.push(...r.samplesMs[n])
  intervalsChecked += r.intervalsChecked
  if (r.overlaps > 0) overlapFindings.push(`killLeaderK8s: ${r.overlaps} overlapping leadership intervals`)
}
let partitionSkipped: string | undefined

async function partitionHeal (runs: number): Promise<void> {
  const reason = NetnsLab.unavailable()
  if (reason !== undefined) { partitionSkipped = reason; return }
  const s = series('partitionHeal.oneView')
  const lab = await NetnsLab.create(undefined, { subnet: args.subnet, hosts: 3 })
  try {
    await withCluster(3, async (h) => {
      const idx = [0, 1, 2]
      await h.startAll()
      const all = h.members.map((m) => m.name)
      for (let r = 0; r < runs; r++) {
        try {
          const leader = await steady(h, idx)
          const cut = idx.filter((i) => i !== leader)[r % 2]!
          const rest = idx.filter((i) => i !== cut)
          const tCut = Date.now()
          await lab.partition([[cut], rest])
          await h.waitFor(() => rest.every((i) => viewTime(h, i, rest.map((j) => all[j]!), tCut) !== undefined), { timeoutMs: 30_000, what: 'the cut member removed' })
          const t0 = Date.now()
          await lab.heal()
          await h.waitFor(() => idx.every((i) => viewTime(h, i, all, t0) !== undefined), { timeoutMs: 60_000, intervalMs: 20, what: 'one view after the heal' })
          s.samplesMs.push(Math.max(...idx.map((i) => viewTime(h, i, all, t0)!)) - t0)
        } catch (err) {
          s.failures.push((err as Error).message)
          await lab.heal()
        }
      }
    }, lab)
  } finally {
    await lab.destroy()
  }
}

if (want('coldStart3')) await coldStart(3, args.runs)
if (want('coldStart15')) await coldStart(15, args.runs15)
if (['killMember', 'killLeader', 'killLeaderRestart', 'termLeader', 'stopLeader', 'idle'].some(want)) await failures(args.runs)
if (want('partitionHeal')) await partitionHeal(args.runs)
if (want('killLeaderK8s')) await killLeaderK8s(args.runs)

const summary = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, {
  runs: v.samplesMs.length,
  failures: v.failures,
  p50Ms: pct(v.samplesMs, 0.5),
  p99Ms: pct(v.samplesMs, 0.99),
  maxMs: pct(v.samplesMs, 1),
  samplesMs: v.samplesMs.map((x) => Math.round(x * 10) / 10)
}]))
const out = {
  members: 3,
  timers: 'defaults (heartbeat 500 ms, failure timeout 2500 ms)',
  runsRequested: args.runs,
  results: summary,
  idle,
  partitionSkipped,
  leadershipIntervals: { checked: intervalsChecked, overlaps: overlapFindings }
}
console.log(JSON.stringify(out, null, 2))
console.log('')
console.log('scenario                              runs  fail   p50 ms   p99 ms   max ms')
for (const [k, v] of Object.entries(summary)) {
  const f = (x: number | null): string => (x === null ? '-' : x.toFixed(0)).padStart(8)
  console.log(`${k.padEnd(36)}${String(v.runs).padStart(6)}${String(v.failures.length).padStart(6)} ${f(v.p50Ms)} ${f(v.p99Ms)} ${f(v.maxMs)}`)
}
for (const x of idle) console.log(`idle ${x.member}: RSS ${x.rssMiB} MiB, CPU ${x.cpuPercent} %`)
if (partitionSkipped !== undefined) console.log(`partitionHeal skipped: ${partitionSkipped}`)
console.log(`leadership intervals checked: ${intervalsChecked}, overlaps: ${overlapFindings.length}`)
process.exitCode = overlapFindings.length > 0 ? 1 : 0
