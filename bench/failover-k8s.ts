/**
 * Failover after kill -9 of the leader as deployed: real `vectisd` members with the Kubernetes part on, against the
 * API emulator (the local cluster of `vectis dev-cluster`), where a crashed process's container is marked restarted
 * the moment it exits, as a kubelet reports it. That report is the verified death of the fast path; the process
 * itself is restarted after a back-off and rejoins as the youngest member.
 *
 * Measured per round, from the kill (hrtime, one clock for every process of the machine):
 *   elected  the successor logs `leader elected` (its leadershipStartNs)
 *   labelled the emulator records the label on the successor's pod
 *   serving  the successor logs `PeSIT servers started (leader)`
 * and, over all rounds, that the leadership intervals of different members never overlap.
 *
 * Usage: npm run bench:failover-k8s -- [--rounds 20] [--nodes 3] [--base-ip 127.0.97.10]
 */
import '../common/polyfill.js'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { DevCluster } from '../dev-cluster/dev-cluster.js'
import { silentLogger } from '../common/logger.js'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '20' }, nodes: { type: 'string', default: '3' }, 'base-ip': { type: 'string', default: '127.0.97.10' } } })
const rounds = Number(values.rounds)
const nodes = Number(values.nodes)

type Line = Record<string, unknown>

async function logsOf (file: string): Promise<Line[]> {
  const text = await readFile(file, 'utf8').catch(() => '')
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line)
}

async function until<T> (what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

function pct (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!
}

const data = await mkdtemp(join(tmpdir(), 'vectis-bench-k8s-'))
const dc = new DevCluster({ logger: silentLogger() }, {
  nodes, baseIp: values['base-ip'], dataDir: data, lbHost: '127.0.0.1', lbPort: 0, httpPort: 8080, clusterPort: 7800,
  demoPesitPort: 5000, apiUser: 'vectis', apiPassword: 'bench-password', demoPassword: 'bench123', clusterSecret: 'bench-cluster-secret-0123456789',
  logLevel: 'info', restart: true
})
const labelledAt = new Map<string, bigint>()
dc.events.on('label:changed', (e) => { if (e.leader) labelledAt.set(e.pod, process.hrtime.bigint()) })

const killed: Array<{ name: string, start: bigint, end: bigint }> = []
const result = { rounds: 0, electedMs: [] as number[], labelledMs: [] as number[], servingMs: [] as number[], overlaps: 0, intervals: 0 }
try {
  await dc.start()
  const stable = async (): Promise<number> => await until('one leader in a committed view of all members', () => {
    const ms = dc.snapshot()
    if (ms.some((m) => m.state !== 'running' || m.status === undefined)) return undefined
    if (!ms.every((m) => m.status!.members.length === nodes && m.status!.quorum?.ok === true)) return undefined
    const leaders = ms.filter((m) => m.status!.isLeader && m.status!.servers?.[0]?.running === true)
    return leaders.length === 1 ? leaders[0]!.index : undefined
  })
  // Every member's pod watch has its baseline (since its last start): a crash is then reported, as in a pod that
  // has been running for more than a moment.
  const watching = async (): Promise<boolean> => {
    for (const m of dc.snapshot()) {
      const logs = await logsOf(m.logFile)
      const start = logs.findLastIndex((x) => x.msg === 'vectisd starting')
      if (!logs.slice(start).some((x) => x.msg === 'pod watch synced')) return false
    }
    return true
  }
  for (let r = 0; r < rounds; r++) {
    const leader = await stable()
    await until('every pod watch synced', async () => (await watching()) ? true : undefined)
    const victim = dc.snapshot()[leader]!
    const victimStart = (await logsOf(victim.logFile)).filter((x) => x.msg === 'leader elected: this member leads').at(-1)?.leadershipStartNs as string | undefined
    const killWall = Date.now()
    const killNs = process.hrtime.bigint()
    dc.kill(leader)
    // A killed leader acts on nothing after its death: its interval ends at the kill at the latest.
    if (victimStart !== undefined) killed.push({ name: victim.name, start: BigInt(victimStart), end: killNs })
    const others = dc.snapshot().filter((m) => m.index !== leader)
    const elected = await until('a successor', async () => {
      for (const m of others) {
        const l = (await logsOf(m.logFile)).filter((x) => x.msg === 'leader elected: this member leads' && BigInt(String(x.leadershipStartNs)) > killNs)
        if (l.length > 0) return { name: m.name, file: m.logFile, ns: BigInt(String(l[0]!.leadershipStartNs)) }
      }
      return undefined
    })
    const labelled = await until('the label on the successor', () => { const t = labelledAt.get(elected.name); return t !== undefined && t > killNs ? t : undefined })
    const serving = await until('PeSIT on the successor', async () => {
      const l = (await logsOf(elected.file)).filter((x) => x.msg === 'PeSIT servers started (leader)' && Date.parse(String(x.time)) >= killWall)
      return l.length > 0 ? Date.parse(String(l[l.length - 1]!.time)) : undefined
    })
    result.electedMs.push(Number(elected.ns - killNs) / 1e6)
    if (result.electedMs.at(-1)! > 500) {
      // A slow round: what the members logged between the kill and the election, to see which path was taken.
      for (const m of others) {
        for (const l of await logsOf(m.logFile)) {
          const t = Date.parse(String(l.time))
          const watch = l.component === 'cluster:k8s-pod-watch' && t <= killWall + result.electedMs.at(-1)! + 50
          if (watch || (t >= killWall - 5 && t <= killWall + result.electedMs.at(-1)! + 50 && l.component !== 'daemon:http')) {
            process.stderr.write(`  slow round, ${m.name} +${t - killWall} ms: ${String(l.component)} ${String(l.msg)} ${JSON.stringify(l.member ?? l.reason ?? l.epoch ?? '')}\n`)
          }
        }
      }
    }
    result.labelledMs.push(Number(labelled - killNs) / 1e6)
    // Log times are wall-clock ms: compared with the wall clock of the kill.
    result.servingMs.push(serving - killWall)
    result.rounds++
    process.stderr.write(`round ${r + 1}: ${victim.name} killed → ${elected.name} leads in ${result.electedMs.at(-1)!.toFixed(0)} ms, labelled ${result.labelledMs.at(-1)!.toFixed(0)} ms\n`)
  }
  // Overlap check over every member's logged intervals (the last incarnation's files hold all, appended).
  const intervals: Array<{ name: string, start: bigint, end: bigint }> = [...killed]
  for (const m of dc.snapshot()) {
    for (const l of await logsOf(m.logFile)) {
      const iv = l.leadershipInterval as { startNs?: string, endNs?: string } | undefined
      if (l.msg === 'leader demoted: this member no longer leads' && iv?.startNs !== undefined && iv.endNs !== undefined) {
        intervals.push({ name: m.name, start: BigInt(iv.startNs), end: BigInt(iv.endNs) })
      }
    }
  }
  result.intervals = intervals.length
  for (const a of intervals) for (const b of intervals) if (a !== b && a.name !== b.name && a.start < b.end && b.start < a.end) result.overlaps++
} finally {
  await dc.stop()
  await rm(data, { recursive: true, force: true })
}

const summary = {
  rounds: result.rounds,
  nodes,
  electedMs: { p50: pct(result.electedMs, 50), p99: pct(result.electedMs, 99), max: Math.max(...result.electedMs) },
  labelledMs: { p50: pct(result.labelledMs, 50), p99: pct(result.labelledMs, 99), max: Math.max(...result.labelledMs) },
  servingMs: { p50: pct(result.servingMs, 50), p99: pct(result.servingMs, 99), max: Math.max(...result.servingMs) },
  intervalsChecked: result.intervals,
  overlaps: result.overlaps / 2,
  samplesMs: { elected: result.electedMs, labelled: result.labelledMs, serving: result.servingMs }
}
console.log(JSON.stringify(summary))
console.log(`kill -9 of the leader, Kubernetes on (${summary.rounds} rounds, ${nodes} members)`)
console.log('               p50      p99      max')
for (const k of ['electedMs', 'labelledMs', 'servingMs'] as const) {
  const v = summary[k]
  console.log(`${k.padEnd(12)} ${v.p50.toFixed(0).padStart(6)} ${v.p99.toFixed(0).padStart(8)} ${v.max.toFixed(0).padStart(8)}`)
}
console.log(`leadership intervals checked: ${summary.intervalsChecked}, overlaps: ${summary.overlaps}`)
process.exitCode = summary.overlaps > 0 ? 1 : 0
