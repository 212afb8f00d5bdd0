/**
 * The journal's hot path: one committed (fsynced) journal update per PeSIT sync point. Measures sync-point
 * commits per second and their latency, next to the cost of a bare fsync on the same file system, measured in
 * the same run (the floor for a durable commit; the ratio is what to compare across machines). Then the journal's
 * replication lag at `--rate` transfers per second (bench/replication-lag.ts), in `async` and in `sync` mode.
 *
 * Usage: node --import tsx bench/store.ts [--seconds 3] [--sync-points 50] [--rate 100] [--dir DIR]
 * DIR defaults to ./.tmp (on the project's disk: /tmp may be a tmpfs, where fsync costs nothing).
 * Prints one JSON object, then a short table.
 */
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { silentLogger } from '../common/logger.js'
import { Store } from '../store/store.js'
import { measureReplicationLag, type LagResult } from './replication-lag.js'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    'sync-points': { type: 'string', default: '50' },
    rate: { type: 'string', default: '100' },
    dir: { type: 'string', default: resolve('.tmp') }
  }
})
const seconds = Number(values.seconds)
const syncPointsPerTransfer = Number(values['sync-points'])
if (!(seconds > 0 && seconds <= 60) || !(Number.isInteger(syncPointsPerTransfer) && syncPointsPerTransfer > 0)) {
  console.error('usage: bench/store.ts [--seconds 0<N<=60] [--sync-points N>0] [--dir DIR]')
  process.exit(2)
}
mkdirSync(values.dir, { recursive: true })
const dir = mkdtempSync(join(values.dir, 'bench-store-'))

function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!
}

function summary (ms: number[]): { p50: number, p90: number, p99: number, max: number, mean: number } {
  const s = Float64Array.from(ms).sort()
  const round = (x: number): number => Math.round(x * 1000) / 1000
  return {
    p50: round(percentile(s, 0.5)),
    p90: round(percentile(s, 0.9)),
    p99: round(percentile(s, 0.99)),
    max: round(s[s.length - 1] ?? Number.NaN),
    mean: round(ms.reduce((a, b) => a + b, 0) / ms.length)
  }
}

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6

/** Baseline: append 256 bytes and fsync, the least a durable commit can cost here. */
function fsyncBaseline (n: number): number[] {
  const fd = openSync(join(dir, 'fsync-probe'), 'w')
  const buf = Buffer.alloc(256, 1)
  const out: number[] = []
  try {
    for (let i = 0; i < n; i++) {
      const t0 = nowMs()
      writeSync(fd, buf)
      fsyncSync(fd)
      out.push(nowMs() - t0)
    }
  } finally {
    closeSync(fd)
  }
  return out
}

const store = new Store({ logger: silentLogger() }, { dataDir: dir })
try {
  const fsync = summary(fsyncBaseline(200))
  await store.start()
  const j = store.journal
  const epoch = store.clusterState.raiseEpoch('bench').number
  const syncLat: number[] = []
  const otherLat: number[] = []
  let transfers = 0
  const t0 = nowMs()
  const end = t0 + seconds * 1000
  while (nowMs() < end) {
    let t = nowMs()
    const r = j.begin({ epoch, member: 'bench', server: 'PESITSRV', partner: 'CXCLIENT', virtualFile: 'PAYMENTS', direction: 'receive' })
    otherLat.push(nowMs() - t)
    for (let s = 1; s <= syncPointsPerTransfer && nowMs() < end; s++) {
      t = nowMs()
      j.recordSyncPoint(r.id, { syncPoint: s, offset: s * 1_048_576 })
      syncLat.push(nowMs() - t)
    }
    t = nowMs()
    j.complete(r.id, { bytes: syncPointsPerTransfer * 1_048_576, sha256: 'ab'.repeat(32) })
    otherLat.push(nowMs() - t)
    transfers++
  }
  const elapsedS = (nowMs() - t0) / 1000
  const sync = summary(syncLat)
  const result = {
    bench: 'store',
    node: process.version,
    seconds: Math.round(elapsedS * 1000) / 1000,
    syncPointsPerTransfer,
    transfers,
    syncPointCommits: syncLat.length,
    syncPointCommitsPerSec: Math.round(syncLat.length / elapsedS),
    allCommitsPerSec: Math.round((syncLat.length + otherLat.length) / elapsedS),
    syncPointLatencyMs: sync,
    beginCompleteLatencyMs: summary(otherLat),
    fsyncBaselineMs: fsync,
    p50OverFsyncP50: Math.round((sync.p50 / fsync.p50) * 100) / 100,
    dir,
    replication: [] as LagResult[]
  }
  const rate = Number(values.rate)
  for (const mode of ['async', 'sync'] as const) {
    result.replication.push(await measureReplicationLag({ dir: values.dir, mode, transfersPerSecond: rate, seconds: 5 }))
  }
  console.log(JSON.stringify(result))
  console.log('')
  console.log('metric                              value')
  console.log(`sync-point commits/s                ${result.syncPointCommitsPerSec}`)
  console.log(`all commits/s                       ${result.allCommitsPerSec}`)
  console.log(`sync-point commit p50 / p99 / max   ${sync.p50} / ${sync.p99} / ${sync.max} ms`)
  console.log(`bare fsync p50 / p99                ${fsync.p50} / ${fsync.p99} ms`)
  console.log(`commit p50 / fsync p50              ${result.p50OverFsyncP50}`)
  for (const r of result.replication) {
    console.log(`replication ${r.mode.padEnd(5)} lag p50 / p99 / max  ${r.lagMs.p50} / ${r.lagMs.p99} / ${r.lagMs.max} ms (${r.entries} entries at ${r.transfersPerSecond} transfers/s, ${r.missing} missing)` +
      (r.majorityMs !== undefined ? `; to a majority p50 / p99 ${r.majorityMs.p50} / ${r.majorityMs.p99} ms` : ''))
  }
} finally {
  await store.stop()
  rmSync(dir, { recursive: true, force: true })
}
