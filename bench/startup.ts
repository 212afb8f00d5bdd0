/**
 * Start-up time of one built `vectisd` (`npm run build` first), from the spawn of the process to:
 *   firstLog   its first stdout line (`vectisd starting`: the modules are loaded, the configuration read)
 *   member     the `cluster member starting` line (the transport listens; clustered scenarios only)
 *   healthz    `GET /healthz` answering 200 (polled every 5 ms)
 *   started    the `vectisd started` line (every part started)
 *   labelled   the emulator records `vectis-leader=true` on the member's pod (`k8s` scenario only)
 *
 * Scenarios: `standalone`; `cluster` (VECTIS_CLUSTER_SIZE=1, Kubernetes off); `k8s` (the same with the Kubernetes
 * part on, against the API emulator of the local cluster). Several builds can be compared in one run, interleaved
 * run by run so that a machine whose load changes treats them alike:
 *
 *   npm run bench:startup -- [--runs 7] [--only standalone,cluster,k8s] [--dist dist,/path/to/other/dist]
 *
 * A `--dist` folder outside this checkout finds no `node_modules`: copy it inside (e.g. `dist-before/`).
 * Extra `node` flags for the daemon go in `--node-args="--enable-source-maps --cpu-prof"` (with `=`).
 * Prints JSON, then a table of medians (and min/max).
 */
import '../common/polyfill.js'
import { spawn } from 'node:child_process'
import { get } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { performance } from 'node:perf_hooks'
import { freePorts } from '../test/helpers/daemon-process.js'
import { K8sApiEmulator } from '../dev-cluster/k8s-api-emulator.js'

const SCENARIOS = ['standalone', 'cluster', 'k8s'] as const
type Scenario = typeof SCENARIOS[number]
const MARKS = ['firstLog', 'member', 'healthz', 'started', 'labelled'] as const
type Mark = typeof MARKS[number]

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '7' },
    only: { type: 'string', default: SCENARIOS.join(',') },
    dist: { type: 'string', default: 'dist' },
    'node-args': { type: 'string', default: '' }
  }
})
const runs = Number(values.runs)
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs expects a positive integer, got ${values.runs}`)
const scenarios = values.only.split(',').map((s) => s.trim()) as Scenario[]
for (const s of scenarios) if (!SCENARIOS.includes(s)) throw new Error(`unknown scenario ${s} (expected ${SCENARIOS.join(', ')})`)
const dists = values.dist.split(',').map((d) => resolve(d.trim()))
const nodeArgs = values['node-args'].split(' ').filter((a) => a !== '')

const RUN_DEADLINE_MS = 30_000

async function healthzOk (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const req = get({ host: '127.0.0.1', port, path: '/healthz', timeout: 1000 }, (res) => {
      res.resume()
      resolve(res.statusCode === 200)
    })
    req.on('error', () => { resolve(false) })
    req.on('timeout', () => { req.destroy(); resolve(false) })
  })
}

async function oneRun (dist: string, scenario: Scenario, emulator: K8sApiEmulator | undefined, kubeconfig: string | undefined): Promise<Partial<Record<Mark, number>>> {
  const data = await mkdtemp(join(tmpdir(), 'vectis-bench-startup-'))
  const [httpPort, clusterPort] = await freePorts(2)
  const podName = `startup-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    POD_NAME: podName,
    POD_IP: '127.0.0.1',
    VECTIS_BIND_HOST: '127.0.0.1',
    VECTIS_DATA_DIR: data,
    VECTIS_HTTP_PORT: String(httpPort),
    VECTIS_API_PASSWORD: 'bench-password',
    VECTIS_K8S: 'off'
  }
  if (scenario !== 'standalone') {
    Object.assign(env, { VECTIS_CLUSTER_ENABLED: 'true', VECTIS_CLUSTER_SIZE: '1', VECTIS_CLUSTER_PORT: String(clusterPort) })
  }
  if (scenario === 'k8s') {
    emulator!.createPod('default', podName, { labels: { app: 'vectis' }, podIP: '127.0.0.1' })
    Object.assign(env, { VECTIS_K8S: 'on', KUBECONFIG: kubeconfig! })
  }
  const marks: Partial<Record<Mark, number>> = {}
  const want: Mark[] = scenario === 'standalone' ? ['firstLog', 'healthz', 'started'] : scenario === 'cluster' ? ['firstLog', 'member', 'healthz', 'started'] : [...MARKS]
  const offLabel = emulator?.events.on('pod:changed', (e) => {
    if (e.name === podName && e.pod?.metadata.labels?.['vectis-leader'] === 'true') marks.labelled ??= performance.now() - t0
  })
  const t0 = performance.now()
  const child = spawn(process.execPath, [...nodeArgs, join(dist, 'bin', 'vectisd.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  let partial = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    const at = performance.now() - t0
    partial += d
    let i
    while ((i = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, i)
      partial = partial.slice(i + 1)
      marks.firstLog ??= at
      let msg: unknown
      try { msg = (JSON.parse(line) as { msg?: unknown }).msg } catch { msg = undefined }
      if (msg === 'cluster member starting') marks.member ??= at
      if (msg === 'vectisd started') marks.started ??= at
    }
  })
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
  let gone = false
  void exited.then(() => { gone = true })
  try {
    const deadline = t0 + RUN_DEADLINE_MS
    while (want.some((m) => marks[m] === undefined)) {
      if (gone) throw new Error(`vectisd exited early: ${stderr.trim().slice(0, 500)}`)
      if (performance.now() > deadline) throw new Error(`timed out; missing ${want.filter((m) => marks[m] === undefined).join(', ')}`)
      if (marks.healthz === undefined && await healthzOk(httpPort)) marks.healthz = performance.now() - t0
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    return marks
  } finally {
    offLabel?.()
    if (!gone) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => { child.kill('SIGKILL') }, 10_000)
      await exited
      clearTimeout(timer)
    }
    if (scenario === 'k8s') emulator!.deletePod('default', podName)
    await rm(data, { recursive: true, force: true })
  }
}

function median (xs: number[]): number | null {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

const samples: Record<string, Record<string, Partial<Record<Mark, number[]>>>> = {}
const failures: string[] = []
const emulator = scenarios.includes('k8s') ? new K8sApiEmulator() : undefined
const work = await mkdtemp(join(tmpdir(), 'vectis-bench-startup-kube-'))
try {
  await emulator?.start()
  const kubeconfig = emulator === undefined ? undefined : await emulator.writeKubeconfig(join(work, 'kubeconfig'))
  for (let r = 0; r < runs; r++) {
    for (const scenario of scenarios) {
      for (const dist of dists) {
        try {
          const m = await oneRun(dist, scenario, emulator, kubeconfig)
          const into = ((samples[dist] ??= {})[scenario] ??= {})
          for (const k of MARKS) if (m[k] !== undefined) (into[k] ??= []).push(Math.round(m[k]))
        } catch (err) {
          failures.push(`${dist} ${scenario} run ${r}: ${(err as Error).message}`)
        }
      }
    }
  }
} finally {
  await emulator?.stop()
  await rm(work, { recursive: true, force: true })
}

console.log(JSON.stringify({ node: process.version, runs, nodeArgs, samplesMs: samples, failures }, null, 2))
console.log('\nmedian ms from spawn (min–max)')
console.log(['dist', 'scenario', ...MARKS].join('\t'))
for (const dist of dists) {
  for (const scenario of scenarios) {
    const s = samples[dist]?.[scenario] ?? {}
    const cell = (k: Mark): string => {
      const xs = s[k]
      if (xs === undefined || xs.length === 0) return '—'
      return `${median(xs)!.toFixed(0)} (${Math.min(...xs)}–${Math.max(...xs)})`
    }
    console.log([dist.split('/').at(-1), scenario, ...MARKS.map(cell)].join('\t'))
  }
}
if (failures.length > 0) process.exitCode = 1
