/**
 * The journal on every member, at scale (issue 13's long forms), with real daemons on loopback:
 *  1. `--transfers` pushes (default 1,000) through the leader of 3 members, kill -9 of the leader: the new leader
 *     and the standby must list them all, with identical rows; the killed member, restarted, too. Once with
 *     VECTIS_REPLICATION=async and once with sync; the time until every member lists them.
 *  2. `--rounds` (default 20) rounds, in sync mode, of a push killed (kill -9 of the leader) right after the
 *     requester saw an ACK(SYN): the new leader's row must hold that sync point.
 *
 * Usage: npm run build && npm run bench:journal -- [--transfers 1000] [--rounds 20]
 * Prints one JSON object, then a short table.
 */
import '../common/polyfill.js'
import { parseArgs } from 'node:util'
import { randomBytes } from 'node:crypto'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { ClusterHarness } from '../test/helpers/cluster-harness.js'
import { ROOT } from '../test/helpers/daemon-process.js'
import { pushFile } from '../transfer/push.js'

const { values } = parseArgs({ options: { transfers: { type: 'string', default: '1000' }, rounds: { type: 'string', default: '20' } } })
const transfers = Number(values.transfers)
const rounds = Number(values.rounds)
if (!Number.isInteger(transfers) || transfers < 1 || !Number.isInteger(rounds) || rounds < 0) {
  console.error('--transfers N>=1, --rounds N>=0')
  process.exit(2)
}
const PESIT_PORT = 5000
const dir = join(ROOT, '.tmp', `bench-journal-${process.pid}`)
mkdirSync(dir, { recursive: true })
writeFileSync(join(dir, 'vectis.yaml'), `servers:\n  - id: PESITSRV\n    port: ${PESIT_PORT}\n    syncIntervalKb: 16\npartners:\n  - id: CXCLIENT\n    password: test123\n    access: write\n` +
  'files:\n  - id: PAYMENTS\n    directory: inbox\n    filenamePattern: \'${partner}_${transferId}\'\n')
const small = join(dir, 'small.bin')
writeFileSync(small, randomBytes(4096))
const big = join(dir, 'big.bin')
writeFileSync(big, randomBytes(4 << 20))

async function withCluster<T> (subnet: number, mode: 'async' | 'sync', fn: (h: ClusterHarness) => Promise<T>): Promise<T> {
  const shared = join(dir, `shared-${subnet}`)
  const h = await ClusterHarness.create(undefined, { nodes: 3, subnet, env: { VECTIS_CONFIG: join(dir, 'vectis.yaml'), VECTIS_SHARED_DIR: shared, VECTIS_REPLICATION: mode } })
  try {
    await h.startAll()
    await h.waitViewCommitted()
    return await fn(h)
  } finally {
    await h.cleanup()
    rmSync(shared, { recursive: true, force: true })
  }
}

async function identical (h: ClusterHarness, alive: number[], n: number, timeoutMs: number): Promise<boolean> {
  return await h.waitSameTransfers(alive, n, { timeoutMs }).then(() => true, () => false)
}

async function manyThenKill (mode: 'async' | 'sync', subnet: number): Promise<Record<string, unknown>> {
  return await withCluster(subnet, mode, async (h) => {
    const leader = (await h.waitFor(async () => await h.servingLeader([0, 1, 2]), { timeoutMs: 60_000, what: 'a leader' }))
    const t0 = performance.now()
    for (let k = 1; k <= transfers; k++) {
      await pushFile({ host: h.member(leader).ip, port: PESIT_PORT, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'PAYMENTS', source: small, transferId: k, timeoutMs: 20_000 })
    }
    const pushSeconds = (performance.now() - t0) / 1000
    await h.kill(leader)
    const killedAt = performance.now()
    const alive = [0, 1, 2].filter((i) => i !== leader)
    // Compared once the new leader serves: its rows then are the ones partners' restarts meet.
    await h.waitFor(async () => await h.servingLeader(alive), { timeoutMs: 60_000, what: 'a new leader' })
    const newLeaderMs = Math.round(performance.now() - killedAt)
    const afterKill = await identical(h, alive, transfers, 60_000)
    await h.start(leader)
    const afterRestart = await identical(h, [0, 1, 2], transfers, 60_000)
    return { mode, transfers, pushSeconds: Math.round(pushSeconds * 100) / 100, newLeaderServingMs: newLeaderMs, identicalOnSurvivors: afterKill, identicalWithRestarted: afterRestart }
  })
}

async function killAfterAck (subnet: number): Promise<Record<string, unknown>> {
  return await withCluster(subnet, 'sync', async (h) => {
    const results: Array<{ acked: number, onNewLeader: number | null }> = []
    for (let r = 1; r <= rounds; r++) {
      const all = [0, 1, 2].filter((i) => h.member(i).running)
      const leader = await h.waitFor(async () => await h.servingLeader(all), { timeoutMs: 60_000, what: 'a leader' })
      let acked = 0
      const target = 2 + (r % 7)
      await pushFile({
        host: h.member(leader).ip, port: PESIT_PORT, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'PAYMENTS', source: big,
        transferId: 100_000 + r, syncIntervalKb: 16, syncWindow: 1, articleSize: 1024, timeoutMs: 10_000,
        onProgress: (p) => { if (p.acknowledgedSyncPoint >= target && acked === 0) { acked = p.acknowledgedSyncPoint; h.signal(leader, 'SIGKILL') } }
      }).catch(() => {})
      await h.member(leader).waitExit(15_000)
      const alive = all.filter((i) => i !== leader)
      const next = await h.waitFor(async () => await h.servingLeader(alive), { timeoutMs: 60_000, what: 'a new leader' })
      const row = (await h.transfers(next)).find((x) => x.transferId === 100_000 + r)
      results.push({ acked, onNewLeader: row?.syncPoint ?? null })
      await h.start(leader)
      await h.waitViewCommitted()
    }
    return { rounds, kept: results.filter((x) => x.onNewLeader !== null && x.onNewLeader >= x.acked).length, results }
  })
}

const out: Record<string, unknown> = { machine: { cpus: cpus().length, loadAverage: loadavg().map((x) => Math.round(x * 100) / 100), node: process.version } }
try {
  out.async = await manyThenKill('async', 245)
  out.sync = await manyThenKill('sync', 246)
  if (rounds > 0) out.killAfterAckSync = await killAfterAck(247)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
console.log(JSON.stringify(out))
console.log('')
for (const k of ['async', 'sync'] as const) {
  const r = out[k] as Record<string, unknown>
  console.log(`${k.padEnd(5)}: ${String(r.transfers)} pushes in ${String(r.pushSeconds)} s; kill -9 of the leader, new leader serving after ${String(r.newLeaderServingMs)} ms; it and the standby identical: ${String(r.identicalOnSurvivors)}; with the restarted member: ${String(r.identicalWithRestarted)}`)
}
if (out.killAfterAckSync !== undefined) {
  const r = out.killAfterAckSync as { rounds: number, kept: number }
  console.log(`sync, kill -9 right after an ACK(SYN): ${r.kept}/${r.rounds} rounds with the acknowledged sync point on the new leader`)
}
