/**
 * Large transfers through the load balancer of `vectis dev-cluster` while the leader is killed (issue 13's long
 * form): a 3-member cluster as deployed (Kubernetes API emulator, label-following load balancer, shared directory);
 * each round a `vectis send` (push) or `vectis receive` (pull) of a large file goes through the load balancer, the
 * leader is killed with -9 at a random point between 25 % and 75 % of the file, and the partner runs the same
 * command with `--restart` through the load balancer until it succeeds, as a partner's script does. Each round
 * checks the SHA-256 of the file delivered, that the restart resumed from the last acknowledged sync point (not from
 * zero), and measures what was sent twice and the time from the kill to the restart that succeeded.
 *
 * With `--compare-replication`, it also measures the cost of VECTIS_REPLICATION=sync against async: plain pushes
 * of the same file through the load balancer of a cluster in each mode (median MiB/s of `--compare-runs`, with the
 * window of `--compare-window`, the CLI's default 16). `--rounds 0` runs only that.
 *
 * Usage: npm run build && npm run bench:failover-transfer -- [--rounds 10] [--mib 1024] [--sync-kb 1024] [--window 1]
 *        [--compare-replication] [--compare-runs 3] [--compare-window 16]
 * Prints one JSON object, then a short table.
 */
import '../common/polyfill.js'
import { spawn } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { silentLogger } from '../common/logger.js'
import { DevCluster } from '../dev-cluster/dev-cluster.js'
import { partialPathOf } from '../transfer/pull.js'
import { ROOT } from '../test/helpers/daemon-process.js'
import { sha256OfFile, writePatternFile } from '../test/helpers/big-files.js'
import { pct, servingLeader, until } from './bench-util.js'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '10' },
    mib: { type: 'string', default: '1024' },
    'sync-kb': { type: 'string', default: '1024' },
    window: { type: 'string', default: '1' },
    'compare-replication': { type: 'boolean', default: false },
    'compare-runs': { type: 'string', default: '3' },
    'compare-window': { type: 'string', default: '16' },
    'base-ip': { type: 'string', default: '127.0.98.10' }
  }
})
const rounds = Number(values.rounds)
const mib = Number(values.mib)
const syncKb = Number(values['sync-kb'])
const windowSize = Number(values.window)
const compareRuns = Number(values['compare-runs'])
const compareWindow = Number(values['compare-window'])
for (const [k, v] of Object.entries({ rounds: rounds + 1, mib, 'sync-kb': syncKb, window: windowSize, 'compare-runs': compareRuns, 'compare-window': compareWindow })) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`--${k} must be a positive integer`)
    process.exit(2)
  }
}

const VECTIS = join(ROOT, 'dist', 'bin', 'vectis.js')
const PASSWORD = 'bench123'
const CONFIG = [
  'servers:',
  '  - id: PESITSRV',
  '    port: 5000',
  `    syncIntervalKb: ${syncKb}`,
  'partners:',
  '  - id: CXCLIENT',
  `    password: ${PASSWORD}`,
  '    access: both',
  'files:',
  '  - id: INBOX',
  '    directory: inbox',
  '    filenamePattern: "${partner}_${transferId}"',
  '  - id: OUTBOX',
  '    direction: send',
  '    directory: outbox',
  ''
].join('\n')

interface Run { code: number, stdout: string, stderr: string }

/** `vectis <args>` as a child process, its exit code and output once it ends. */
async function vectis (args: string[]): Promise<Run> {
  return await new Promise((resolve) => {
    const child = spawn(process.execPath, [VECTIS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    child.on('close', (code) => { resolve({ code: code ?? 1, stdout, stderr }) })
  })
}

async function sizeOf (path: string): Promise<number | undefined> {
  return (await stat(path).catch(() => undefined))?.size
}

async function startCluster (data: string, replication: 'async' | 'sync'): Promise<DevCluster> {
  await mkdir(data, { recursive: true })
  const configFile = join(data, 'vectis.yaml')
  await writeFile(configFile, CONFIG)
  const dc = new DevCluster({ logger: silentLogger() }, {
    nodes: 3, baseIp: values['base-ip'], dataDir: data, lbHost: '127.0.0.1', lbPort: 0, httpPort: 8080, clusterPort: 7800,
    configFile, demoPesitPort: 5000, apiUser: 'vectis', apiPassword: 'bench-password', demoPassword: PASSWORD,
    clusterSecret: 'bench-cluster-secret-0123456789', logLevel: 'info', restart: true, env: { VECTIS_REPLICATION: replication }
  })
  await dc.start()
  return dc
}

/** The serving leader once every member runs in one view and the load balancer points at it. */
function requesterArgs (dc: DevCluster, stateDir: string, window = windowSize): string[] {
  return ['--host', '127.0.0.1', '--port', String(dc.lb.port), '--partner', 'CXCLIENT', '--password', PASSWORD, '--server', 'PESITSRV',
    '--sync-kb', String(syncKb), '--window', String(window), '--timeout-ms', '5000', '--quiet', '--state-dir', stateDir]
}

interface RoundResult {
  round: number
  direction: 'push' | 'pull'
  killedAtMiB: number
  resumedAtMiB: number
  /** bytes the side receiving held at the kill beyond the restart point: sent twice */
  resentKiB: number
  /** from the kill to the load balancer sending new connections to the new leader (takeover + label); null if not seen */
  lbMovedMs: number | null
  /** from the kill to the start of the restart that succeeded (the failed attempt's exit, retries) */
  restartAfterMs: number
  attempts: number
  sha256Ok: boolean
}

/**
 * One round: `first` runs the transfer; the leader is killed once `progress()` passes the kill point; then `again`
 * (the same with --restart) runs until it succeeds. `check` verifies the result.
 */
async function round (dc: DevCluster, o: { r: number, direction: 'push' | 'pull', first: string[], progress: () => Promise<number | undefined>, check: () => Promise<boolean> }): Promise<RoundResult> {
  const leader = await servingLeader(dc)
  const killAt = Math.floor(mib * (0.25 + Math.random() * 0.5)) * 1048576
  const running = vectis(o.first)
  const held = await until('the kill point', async () => { const s = await o.progress(); return s !== undefined && s >= killAt ? s : undefined }, 300_000, 5)
  const victim = dc.snapshot()[leader]!.name
  let lbMovedAt: number | undefined
  const off = dc.events.on('lb:endpoint', (e) => { if (e.name !== undefined && e.name !== victim) lbMovedAt ??= Date.now() })
  const killedAt = Date.now()
  dc.kill(leader)
  const atKill = (await o.progress()) ?? held
  const first = await running
  if (first.code === 0) throw new Error(`round ${o.r}: the ${o.direction} completed although the leader was killed`)
  let attempts = 0
  let started = 0
  let done: Run | undefined
  await until('a restart that succeeds', async () => {
    attempts++
    started = Date.now()
    const res = await vectis([...o.first.slice(0, -1), '--restart', o.first.at(-1)!])
    if (res.code === 0) { done = res; return true }
    if (attempts > 200) throw new Error(`round ${o.r}: restart keeps failing: ${res.stderr.trim()}`)
    return undefined
  }, 120_000, 100)
  off()
  const m = /resumed at sync point (\d+) \(byte (\d+)\)/.exec(done!.stdout)
  if (m === null) throw new Error(`round ${o.r}: the restart did not resume: ${done!.stdout.trim()}`)
  const resumedAt = Number(m[2])
  return {
    round: o.r, direction: o.direction, killedAtMiB: Math.round(atKill / 1048576), resumedAtMiB: Math.round(resumedAt / 1048576),
    resentKiB: Math.max(0, Math.round((atKill - resumedAt) / 1024)), lbMovedMs: lbMovedAt === undefined ? null : lbMovedAt - killedAt, restartAfterMs: started - killedAt,
    attempts, sha256Ok: await o.check()
  }
}

const work = await mkdtemp(join(tmpdir(), 'vectis-bench-failover-transfer-'))
const results: RoundResult[] = []
const compare: Record<string, number[]> = { async: [], sync: [] }
const failures: string[] = []
try {
  const source = join(work, 'source.bin')
  const want = await writePatternFile(source, mib, 7)
  const data = join(work, 'cluster')
  const dc = await startCluster(data, 'async')
  try {
    const inbox = join(data, 'shared', 'inbox')
    const outbox = join(data, 'shared', 'outbox')
    await mkdir(outbox, { recursive: true })
    await copyFile(source, join(outbox, 'big.bin'))
    for (let r = 1; r <= rounds; r++) {
      try {
        const push = await round(dc, {
          r, direction: 'push',
          first: ['send', ...requesterArgs(dc, join(work, `push-state-${r}`)), '--file', 'INBOX', source],
          progress: async () => {
            const parts = (await readdir(inbox).catch(() => [] as string[])).filter((n) => n.endsWith('.part'))
            const sizes = await Promise.all(parts.map(async (n) => await sizeOf(join(inbox, n)) ?? 0))
            return sizes.length === 0 ? undefined : Math.max(...sizes)
          },
          check: async () => {
            const files = (await readdir(inbox)).filter((n) => !n.startsWith('.'))
            const ok = files.length === 1 && await sha256OfFile(join(inbox, files[0]!)) === want
            for (const n of await readdir(inbox)) await unlink(join(inbox, n))
            return ok
          }
        })
        results.push(push)
        const dest = join(work, `pulled-${r}.bin`)
        const pull = await round(dc, {
          r, direction: 'pull',
          first: ['receive', ...requesterArgs(dc, join(work, `pull-state-${r}`)), '--file', 'OUTBOX', '--name', 'big.bin', dest],
          progress: async () => await sizeOf(partialPathOf(dest)),
          check: async () => {
            const ok = await sha256OfFile(dest) === want
            await unlink(dest)
            return ok
          }
        })
        results.push(pull)
        for (const x of [push, pull]) {
          if (!x.sha256Ok) failures.push(`round ${r} ${x.direction}: SHA-256 differs`)
          process.stderr.write(`round ${r} ${x.direction}: killed at ${x.killedAtMiB} MiB, resumed at ${x.resumedAtMiB} MiB, resent ${x.resentKiB} KiB, ` +
            `load balancer on the new leader after ${x.lbMovedMs} ms, restart started after ${x.restartAfterMs} ms (${x.attempts} attempts), ` +
            `sha256 ${x.sha256Ok ? 'ok' : 'DIFFERS'}\n`)
        }
      } catch (err) {
        failures.push(`round ${r}: ${(err as Error).message.split('\n')[0]}`)
        break
      }
    }
  } finally {
    await dc.stop()
    await rm(data, { recursive: true, force: true })
  }

  if (values['compare-replication'] === true) {
    for (const mode of ['async', 'sync'] as const) {
      const cdata = join(work, `compare-${mode}`)
      const c = await startCluster(cdata, mode)
      try {
        for (let i = 0; i < compareRuns; i++) {
          await servingLeader(c)
          const res = await vectis(['send', ...requesterArgs(c, join(work, `cmp-state-${mode}-${i}`), compareWindow), '--file', 'INBOX', source])
          const rate = /, ([\d.]+) MiB\/s/.exec(res.stdout)
          if (res.code !== 0 || rate === null) throw new Error(`${mode} push ${i}: ${res.stderr.trim()}`)
          compare[mode]!.push(Number(rate[1]))
          const inbox = join(cdata, 'shared', 'inbox')
          for (const n of await readdir(inbox)) await unlink(join(inbox, n))
          process.stderr.write(`${mode} push ${i + 1}: ${rate[1]} MiB/s\n`)
        }
      } finally {
        await c.stop()
        await rm(cdata, { recursive: true, force: true })
      }
    }
  }
} finally {
  await rm(work, { recursive: true, force: true })
}

const of = (d: 'push' | 'pull'): RoundResult[] => results.filter((x) => x.direction === d)
const stats = (d: 'push' | 'pull'): Record<string, unknown> => {
  const xs = of(d)
  return {
    rounds: xs.length,
    sha256Ok: xs.filter((x) => x.sha256Ok).length,
    resentKiB: { p50: pct(xs.map((x) => x.resentKiB), 50), max: xs.length === 0 ? null : Math.max(...xs.map((x) => x.resentKiB)) },
    lbMovedMs: { p50: pct(xs.flatMap((x) => x.lbMovedMs ?? []), 50), p99: pct(xs.flatMap((x) => x.lbMovedMs ?? []), 99) },
    restartAfterMs: { p50: pct(xs.map((x) => x.restartAfterMs), 50), p99: pct(xs.map((x) => x.restartAfterMs), 99) }
  }
}
const median = (xs: number[]): number | null => pct(xs, 50)
const out = {
  machine: { cpus: cpus().length, loadAverage: loadavg().map((x) => Math.round(x * 100) / 100), node: process.version },
  mib, syncKb, window: windowSize, push: stats('push'), pull: stats('pull'),
  ...(values['compare-replication'] === true
    ? { replication: { runs: compareRuns, window: compareWindow, asyncMiBps: median(compare.async!), syncMiBps: median(compare.sync!), all: compare } }
    : {}),
  failures, rounds: results
}
console.log(JSON.stringify(out, null, 2))
console.log('\n| direction | rounds | SHA-256 equal | resent p50 / max (KiB) | kill → load balancer on the new leader p50 / p99 (ms) | kill → restart started p50 / p99 (ms) |')
console.log('|---|---|---|---|---|---|')
for (const d of ['push', 'pull'] as const) {
  type P = { p50: number, p99: number }
  const s = stats(d) as { rounds: number, sha256Ok: number, resentKiB: { p50: number, max: number }, lbMovedMs: P, restartAfterMs: P }
  console.log(`| ${d} | ${s.rounds} | ${s.sha256Ok} | ${s.resentKiB.p50} / ${s.resentKiB.max} | ${s.lbMovedMs.p50} / ${s.lbMovedMs.p99} | ${s.restartAfterMs.p50} / ${s.restartAfterMs.p99} |`)
}
if (values['compare-replication'] === true) console.log(`\nreplication: async ${median(compare.async!)} MiB/s, sync ${median(compare.sync!)} MiB/s (median of ${compareRuns}, window ${compareWindow})`)
if (failures.length > 0) process.exitCode = 1
