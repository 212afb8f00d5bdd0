/**
 * What Node's compile cache (common/compile-cache.ts, Node >= 22.1) saves at start-up: the time a fresh process
 * takes to enable it the way the entry points do and load every module a clustered member with the Kubernetes part
 * on loads (daemon, store, metrics, HTTP, libp2p, the Kubernetes client), without running anything. Loading is
 * most of the start-up; measuring imports instead of the whole daemon also works where the native SQLite module
 * was built for another Node version.
 *
 *   node --import tsx bench/startup-compile-cache.ts [--node /path/to/node22] [--runs 7] [--dist dist]
 *
 * Modes, interleaved run by run: `off` (NODE_DISABLE_COMPILE_CACHE=1), `cold` (an empty cache directory each
 * run: the cost of writing it), `warm` (the directory a previous run filled). The cache directory is chosen through
 * TMPDIR, as in production (`os.tmpdir()/node-compile-cache`). Prints JSON, then medians.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, readdirSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { node: { type: 'string', default: process.execPath }, runs: { type: 'string', default: '7' }, dist: { type: 'string', default: 'dist' } } })
const runs = Number(values.runs)
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs expects a positive integer, got ${values.runs}`)
const dist = resolve(values.dist)
const url = (p: string): string => pathToFileURL(join(dist, p)).href

// Not daemon/vectisd.js: importing it runs the daemon. What it adds to these is itself.
const MODULES = ['daemon/daemon.js', 'daemon/config.js', 'cluster/transport.js', 'k8s/parts.js']
// The child: what bin/vectisd.ts does first, then every module of the clustered, Kubernetes-on daemon.
const child = `
const { enableCompileCache } = await import(${JSON.stringify(url('common/compile-cache.js'))})
const cache = enableCompileCache()
await import(${JSON.stringify(url('common/polyfill.js'))})
await Promise.all([${MODULES.map((p) => `import(${JSON.stringify(url(p))})`).join(', ')}])
process.stdout.write(JSON.stringify({ ms: performance.now(), cache: cache.status }))
`

type Mode = 'off' | 'cold' | 'warm'

function dirSize (dir: string): number {
  if (!existsSync(dir)) return 0 // Node 20: no cache was written
  let n = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    n += e.isDirectory() ? dirSize(p) : statSync(p).size
  }
  return n
}

function once (mode: Mode, tmp: string): { ms: number, cache: string } {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', TMPDIR: tmp }
  if (mode === 'off') env.NODE_DISABLE_COMPILE_CACHE = '1'
  const r = spawnSync(values.node, ['--input-type=module', '-e', child], { env, encoding: 'utf8', timeout: 60_000 })
  if (r.status !== 0) throw new Error(`child failed (${mode}): ${r.stderr.slice(0, 500)}`)
  return JSON.parse(r.stdout) as { ms: number, cache: string }
}

const warmTmp = mkdtempSync(join(tmpdir(), 'vectis-bench-cc-warm-'))
const samples: Record<Mode, number[]> = { off: [], cold: [], warm: [] }
let status: Record<Mode, string> = { off: '', cold: '', warm: '' }
let cacheBytes = 0
try {
  once('warm', warmTmp) // fills the warm cache
  cacheBytes = dirSize(join(warmTmp, 'node-compile-cache'))
  for (let i = 0; i < runs; i++) {
    for (const mode of ['off', 'cold', 'warm'] as const) {
      const tmp = mode === 'warm' ? warmTmp : mkdtempSync(join(tmpdir(), 'vectis-bench-cc-'))
      try {
        const r = once(mode, tmp)
        samples[mode].push(Math.round(r.ms))
        status = { ...status, [mode]: r.cache }
      } finally {
        if (mode !== 'warm') rmSync(tmp, { recursive: true, force: true })
      }
    }
  }
} finally {
  rmSync(warmTmp, { recursive: true, force: true })
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const nodeVersion = spawnSync(values.node, ['--version'], { encoding: 'utf8' }).stdout.trim()
console.log(JSON.stringify({ node: nodeVersion, runs, cacheBytes, status, samplesMs: samples }, null, 2))
console.log(`\nprocess start → all modules loaded, median ms (${nodeVersion}, ${runs} runs; cache ${(cacheBytes / 1e6).toFixed(1)} MB)`)
for (const mode of ['off', 'cold', 'warm'] as const) console.log(`${mode}\t${median(samples[mode])}\t(${Math.min(...samples[mode])}–${Math.max(...samples[mode])})\t${status[mode]}`)
