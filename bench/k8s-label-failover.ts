// How long the Kubernetes part of a failover takes: from `leader:elected` to `labels:ready` (other pods fenced, own
// pod labelled), with the real client against the API emulator, 3 members, the previous leader crashed (its label
// left behind). Run: node --import tsx --import ./common/polyfill.ts bench/k8s-label-failover.ts [rounds]
import { KubeConfig } from '@kubernetes/client-node'
import { K8sApiEmulator } from '../dev-cluster/k8s-api-emulator.js'
import { K8sLabelController } from '../k8s/label-controller.js'
import { silentLogger } from '../common/logger.js'
import { FakeLeadership } from '../test/helpers/k8s-fixtures.js'

const NS = 'bench'
const NAMES = ['vectis-0', 'vectis-1', 'vectis-2']
const rounds = Number(process.argv[2] ?? 40)

function pct (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

async function run (latencyMs: number): Promise<{ latencyMs: number, rounds: number, p50: number, p90: number, max: number, apiCallsPerFailover: number }> {
  const em = new K8sApiEmulator()
  await em.start()
  for (const n of NAMES) em.createPod(NS, n, { labels: { app: 'vectis' } })
  em.setLatency(latencyMs)
  const members = NAMES.map((name) => {
    const kc = new KubeConfig()
    kc.loadFromString(em.kubeconfigYaml({ namespace: NS, token: name }))
    const leadership = new FakeLeadership(name)
    const ctl = new K8sLabelController({ logger: silentLogger(), leadership }, { namespace: NS, podName: name, kubeConfig: kc, resyncMs: 60_000 })
    return { name, leadership, ctl }
  })
  for (const m of members) await m.ctl.start()
  const times: number[] = []
  let calls = 0
  for (let r = 0; r < rounds; r++) {
    const prev = members[(r + 2) % 3]!
    const next = members[r % 3]!
    prev.leadership.expire() // crashed: its label stays until fenced
    const before = em.requestLog().length
    const t0 = process.hrtime.bigint()
    next.leadership.elect(r + 1)
    await next.ctl.waitReady(AbortSignal.timeout(10_000))
    times.push(Number(process.hrtime.bigint() - t0) / 1e6)
    calls += em.requestLog().slice(before).filter((x) => x.token === next.name).length
    next.leadership.demote('handover') // keep the fake consistent; the next round elects another one
  }
  for (const m of members) await m.ctl.stop()
  await em.stop()
  return { latencyMs, rounds, p50: pct(times, 50), p90: pct(times, 90), max: Math.max(...times), apiCallsPerFailover: calls / rounds }
}

const results = []
for (const latency of [0, 2, 10]) results.push(await run(latency))
console.log(JSON.stringify({ bench: 'k8s-label-failover', node: process.version, results }))
console.log('api latency ms | rounds | elected→ready p50 ms | p90 ms | max ms | API calls/failover')
for (const r of results) {
  console.log(`${String(r.latencyMs).padStart(14)} | ${String(r.rounds).padStart(6)} | ${r.p50.toFixed(1).padStart(20)} | ${r.p90.toFixed(1).padStart(6)} | ${r.max.toFixed(1).padStart(6)} | ${r.apiCallsPerFailover.toFixed(1)}`)
}
