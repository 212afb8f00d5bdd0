/**
 * Exactly once at the end of a push, over many rounds (issue 13's long form of test/integration/cluster-replay):
 * 3 daemons with VECTIS_FAULT_INJECTION=kill-after-rename; each round pushes a file through the leader, which
 * kills itself after the rename and before ACK(TRANS.END); `vectis send --restart` to the new leader must exit 0
 * and the inbox hold that file exactly once. The killed member is started again before the next round.
 *
 * Usage: npm run build && npm run bench:replay -- [--rounds 20] [--size-kib 300]
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
import { killedAfterRenameRound, writeReplayConfig } from '../test/helpers/replay-round.js'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '20' }, 'size-kib': { type: 'string', default: '300' } } })
const rounds = Number(values.rounds)
const sizeKib = Number(values['size-kib'])
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 1000 || !Number.isInteger(sizeKib) || sizeKib < 1) {
  console.error('--rounds 1..1000, --size-kib a positive integer')
  process.exit(2)
}

const dir = join(ROOT, '.tmp', `bench-replay-${process.pid}`)
mkdirSync(join(dir, 'shared'), { recursive: true })
const config = writeReplayConfig(dir)
const h = await ClusterHarness.create(undefined, {
  nodes: 3, subnet: 241,
  env: { VECTIS_CONFIG: config, VECTIS_SHARED_DIR: join(dir, 'shared'), VECTIS_FAULT_INJECTION: 'kill-after-rename' }
})
const results: Array<{ round: number, copies: number, takeoverMs: number }> = []
const failures: string[] = []
try {
  await h.startAll()
  for (let r = 1; r <= rounds; r++) {
    // A new file each round: its copies are counted alone.
    const payload = join(dir, `payload-${r}.bin`)
    writeFileSync(payload, randomBytes(sizeKib * 1024))
    try {
      const x = await killedAfterRenameRound(h, { dir, payload, round: r })
      results.push({ round: r, ...x })
      if (x.copies !== 1) failures.push(`round ${r}: ${x.copies} copies`)
    } catch (err) {
      failures.push(`round ${r}: ${(err as Error).message.split('\n')[0]}`)
      break
    }
  }
} finally {
  await h.cleanup()
  rmSync(dir, { recursive: true, force: true })
}
const sorted = results.map((x) => x.takeoverMs).sort((a, b) => a - b)
const pct = (p: number): number | null => sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
const out = {
  machine: { cpus: cpus().length, loadAverage: loadavg().map((x) => Math.round(x * 100) / 100), node: process.version },
  rounds, sizeKib, completed: results.length, exactlyOnce: results.filter((x) => x.copies === 1).length, failures,
  takeoverMs: { p50: pct(0.5), p99: pct(0.99), max: sorted.at(-1) ?? null }
}
console.log(JSON.stringify(out))
console.log(`\n${out.completed}/${rounds} rounds, ${out.exactlyOnce} with the file delivered exactly once; kill to new leader serving p50 ${out.takeoverMs.p50} ms, p99 ${out.takeoverMs.p99} ms`)
if (failures.length > 0) {
  console.log(`failures: ${failures.join('; ')}`)
  process.exitCode = 1
}
