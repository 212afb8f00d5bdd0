/**
 * PeSIT server fuzzing at scale: valid pushes and pulls mutated at one frame (every state of both directions), and
 * garbage before or inside TLS handshakes on the TLS listener (one case in eight), against one in-process server
 * (real file layer, on tmpfs when available), while a healthy push keeps running. Fails (exit 1) on the first case
 * where the server sends a malformed FPDU or does not close in time, or if the healthy push fails; an uncaught
 * exception in the server would end the process. Reports the cases per direction and per state reached.
 *
 * Usage: node --import tsx --import ./common/polyfill.ts bench/fuzz.ts [--cases 100000] [--parallel 16] [--seed N]
 * Prints one JSON object, then a short table.
 */
import '../common/polyfill.js'
import { parseArgs } from 'node:util'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startHarness } from '../test/helpers/pesit-harness.js'
import { captureClientHello, runFuzzCase, runTlsFuzzCase, MUTATIONS, fuzzScratchDir, sweepOldFiles, writePullFiles, type Scenario } from '../test/helpers/pesit-fuzz.js'
import { makePki, opensslMissing } from '../test/helpers/certs.js'
import { patternBytes } from '../test/helpers/pesit-vectors.js'
import { pushFile } from '../transfer/push.js'

const { values } = parseArgs({ options: { cases: { type: 'string', default: '100000' }, parallel: { type: 'string', default: '16' }, seed: { type: 'string', default: '1' } } })
const cases = Number(values.cases)
const parallel = Number(values.parallel)
const seed0 = Number(values.seed)
if (!(Number.isInteger(cases) && cases > 0) || !(Number.isInteger(parallel) && parallel > 0 && parallel <= 256) || !Number.isInteger(seed0)) {
  console.error('usage: bench/fuzz.ts [--cases N>0] [--parallel 1..256] [--seed N]')
  process.exit(2)
}

// Real file layer on tmpfs (when there is one), swept as it goes: fuzzing leaves a partial file per aborted session.
const scratch = await fuzzScratchDir()
const noTls = opensslMissing()
if (noTls !== undefined) console.error(`TLS cases skipped: ${noTls}`)
const pki = noTls === undefined ? makePki(join(scratch, 'pki')) : undefined
const h = await startHarness({
  syncIntervalKb: 4, baseDir: scratch, maxConnections: 1000, init: { timeouts: { connectMs: 1000, readMs: 1000, idleMs: 1000, closeGraceMs: 100 } },
  ...(pki !== undefined ? { tls: { certFile: pki.server.cert, keyFile: pki.server.key, clientAuth: 'none' as const, minVersion: 'TLSv1.2' as const } } : {})
})
await writePullFiles(join(scratch, 'outbox'))
const hello = pki !== undefined ? await captureClientHello() : undefined
const fs = h.fs
const work = mkdtempSync(join(tmpdir(), 'vectis-bench-fuzz-'))
const src = patternBytes(64 * 1024, 9)
writeFileSync(join(work, 'healthy.bin'), src)
const started = Date.now()
let done = false
let healthyPushes = 0
let failure: string | undefined
const healthy = (async () => {
  for (let n = 1; !done && failure === undefined; n++) {
    try {
      const r = await pushFile({ host: '127.0.0.1', port: h.port, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'TESTFILE', source: join(work, 'healthy.bin'), transferId: 0xf00000 + (n % 0xffff), syncIntervalKb: 4, syncWindow: 1, articleSize: 1024 })
      if (r.bytes !== src.length) failure = `healthy push sent ${r.bytes} bytes`
      await fs.unlink(join(h.dir, `CXCLIENT_TESTFILE_${0xf00000 + (n % 0xffff)}`)).catch(() => {})
      healthyPushes++
    } catch (err) {
      failure = `healthy push failed: ${(err as Error).message}`
    }
  }
})()
const endings = new Map<string, number>()
const byMutation = new Map<string, number>()
const states = new Set<number>()
const byState = new Map<string, number>()
const tlsKinds = new Map<string, number>()
let next = 0
let completed = 0
const worker = async (): Promise<void> => {
  while (next < cases && failure === undefined) {
    const i = next++
    const seed = seed0 * 1_000_003 + i
    try {
      if (hello !== undefined && i % 8 === 7) {
        const t = await runTlsFuzzCase(h.tlsPort, seed, hello, 8000)
        tlsKinds.set(t.kind, (tlsKinds.get(t.kind) ?? 0) + 1)
        completed++
        continue
      }
      const scenario: Scenario = i % 2 === 0 ? 'push' : 'pull'
      const o = await runFuzzCase(h.port, seed, 8000, scenario)
      byState.set(`${o.scenario} ${o.state}`, (byState.get(`${o.scenario} ${o.state}`) ?? 0) + 1)
      const k = `${o.scenario} ${o.ending}${o.diagnostic !== undefined ? ' ' + o.diagnostic : ''}`
      endings.set(k, (endings.get(k) ?? 0) + 1)
      byMutation.set(o.mutation, (byMutation.get(o.mutation) ?? 0) + 1)
      states.add(o.index)
      completed++
      if (completed % 500 === 0) await sweepOldFiles(h.dir, 10_000)
    } catch (err) {
      failure = (err as Error).message
    }
  }
}
await Promise.all(Array.from({ length: parallel }, worker))
done = true
await healthy
const seconds = (Date.now() - started) / 1000
await h.stop()
rmSync(work, { recursive: true, force: true })
rmSync(scratch, { recursive: true, force: true })
const result = {
  cases: completed, requested: cases, parallel, seconds, casesPerSecond: Math.round(completed / seconds),
  statesHit: states.size, casesPerState: Object.fromEntries([...byState].sort()), tlsCases: Object.fromEntries(tlsKinds), mutations: Object.fromEntries(MUTATIONS.map((m) => [m, byMutation.get(m) ?? 0])),
  endings: Object.fromEntries([...endings].sort((a, b) => b[1] - a[1])), healthyPushes,
  peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024), failure: failure ?? null
}
console.log(JSON.stringify(result))
console.log(`\ncases      ${completed}/${cases} in ${seconds.toFixed(1)} s (${result.casesPerSecond}/s, ${parallel} parallel)`)
console.log(`states     ${states.size} distinct mutation points; healthy pushes completed: ${healthyPushes}`)
for (const [k, v] of Object.entries(result.casesPerState)) console.log(`  ${k.padEnd(22)} ${v}`)
console.log(`TLS        ${JSON.stringify(result.tlsCases)}`)
for (const [k, v] of Object.entries(result.endings).slice(0, 12)) console.log(`  ${k.padEnd(22)} ${v}`)
console.log(`peak RSS   ${result.peakRssMiB} MiB`)
console.log(`result     ${failure === undefined ? 'OK: no crash, no hang' : 'FAILED: ' + failure}`)
process.exit(failure === undefined && completed === cases ? 0 : 1)
