/**
 * PeSIT throughput on loopback against OpenSSH's sftp, whole commands timed.
 *
 *  1. `--runs` (default 3) interleaved rounds of: `vectis send` (push), `sftp put`, `vectis receive` (pull),
 *     `sftp get`, `vectis send --tls`, `vectis receive --tls`, each on the same `--size-mib` file (default 1 GiB),
 *     with `sync` before every command. Each command is a process of its own, timed from spawn to exit. PeSIT runs
 *     with sync points every `--sync-kb` (default 1024) made durable (fsync) on the receiving side; sftp with
 *     `-c aes128-gcm@openssh.com` against a local sshd (Debian `openssh-server`, a generated key; skipped with a
 *     line saying so when it is missing). Medians, and the ratios to sftp.
 *  2. `--concurrent` (default 100) simultaneous pushes, then as many simultaneous pulls, of `--each-mib` (default
 *     10): all must complete and be intact; the server's peak RSS.
 *
 * The server runs in its own process (bench/transfer-server.mjs, on the built code, as the daemon runs); it counts
 * its fsyncs, and the requester's are counted in one extra, untimed run of each PeSIT command under `strace -c`
 * (when strace exists).
 *
 * Usage: npm run bench:transfer -- [--size-mib 1024] [--runs 3] [--sync-kb 1024] [--concurrent 100]
 *        [--each-mib 10] [--dir DIR] [--no-sftp] [--no-concurrent]
 * DIR defaults to ./.tmp (the project's disk: /tmp may be a tmpfs, where fsync costs nothing).
 * Each scenario also gives the CPU the whole machine was busy per GiB (both ends and the kernel's writeback), and
 * the run the cost of SHA-256 here, which PeSIT pays on both ends and sftp does not.
 * Prints one JSON object, then a short table. Needs `npm run build` (the commands are the built `vectis`).
 */
import '../common/polyfill.js'
import { parseArgs } from 'node:util'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, readFile, rm, unlink } from 'node:fs/promises'
import { loadavg, cpus } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { makePki } from '../test/helpers/certs.js'
import { sha256OfFile, writePatternFile } from '../test/helpers/big-files.js'
import { startSshd, type Sshd } from './sshd.js'

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' }, runs: { type: 'string', default: '3' },
    'sync-kb': { type: 'string', default: '1024' }, concurrent: { type: 'string', default: '100' },
    'each-mib': { type: 'string', default: '10' }, dir: { type: 'string', default: resolve('.tmp') },
    'no-sftp': { type: 'boolean', default: false }, 'no-concurrent': { type: 'boolean', default: false }
  }
})
const sizeMiB = int('size-mib', 1, 65536)
const runs = int('runs', 1, 50)
const syncKb = int('sync-kb', 0, 65534)
const concurrent = int('concurrent', 1, 1000)
const eachMiB = int('each-mib', 1, 4096)

function int (k: keyof typeof values, min: number, max: number): number {
  const v = Number(values[k])
  if (!Number.isInteger(v) || v < min || v > max) {
    console.error(`--${k}: an integer from ${min} to ${max}`)
    process.exit(2)
  }
  return v
}

const root = resolve(fileURLToPath(new URL('..', import.meta.url)))
const vectisBin = join(root, 'dist', 'bin', 'vectis.js')
if (!existsSync(vectisBin)) {
  console.error('bench:transfer runs the built vectis: npm run build first')
  process.exit(2)
}

await mkdir(values.dir, { recursive: true })
const base = await mkdtemp(join(values.dir, 'bench-transfer-'))
const pki = makePki(join(base, 'pki'))

/** The server process and its stdin/stdout command channel. */
class ServerProcess {
  private readonly lines: string[] = []
  private waiter: (() => void) | undefined
  constructor (readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (l) => { this.lines.push(l); this.waiter?.() })
  }

  async next (): Promise<Record<string, unknown>> {
    for (;;) {
      const l = this.lines.shift()
      if (l !== undefined) return JSON.parse(l) as Record<string, unknown>
      await new Promise<void>((resolve) => { this.waiter = resolve })
    }
  }

  async command (cmd: string): Promise<Record<string, unknown>> {
    this.child.stdin!.write(`${cmd}\n`)
    return await this.next()
  }
}

const serverChild = spawn(process.execPath, ['bench/transfer-server.mjs', JSON.stringify({
  dir: base, syncIntervalKb: Math.max(syncKb, 1), maxConnections: concurrent + 10,
  tls: { certFile: pki.server.cert, keyFile: pki.server.key, clientAuth: 'none', minVersion: 'TLSv1.2' }
})], { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] })
const server = new ServerProcess(serverChild)
const ports = await server.next() as { port: number, tlsPort: number }
let sshd: Sshd | undefined
const sftpSkip = values['no-sftp'] ? 'skipped (--no-sftp)' : undefined

/** CPU time the whole machine spent busy so far, in seconds (/proc/stat: user, nice, system, irq, softirq). */
function machineCpuSeconds (): number | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
    return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]!) / 100
  } catch {
    return undefined // not Linux
  }
}

/**
 * Runs a command; its wall time, and the CPU the machine spent meanwhile (both ends, the kernel's writeback and
 * anything else running: the same measure for PeSIT and sftp).
 */
async function run (cmd: string, args: string[], opts: { strace?: string } = {}): Promise<{ seconds: number, cpuSeconds: number | undefined }> {
  execFileSync('sync')
  const cpu0 = machineCpuSeconds()
  const [file, argv] = opts.strace === undefined ? [cmd, args] : ['strace', ['-f', '-c', '-e', 'trace=fsync,fdatasync', '-o', opts.strace, cmd, ...args]]
  const t0 = performance.now()
  const p = spawn(file, argv, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  p.stderr.on('data', (c: Buffer) => { err += c.toString() })
  const code = await new Promise<number | null>((resolve) => { p.on('close', resolve) })
  const seconds = (performance.now() - t0) / 1000
  const cpu1 = machineCpuSeconds()
  if (code !== 0) throw new Error(`${cmd} ${args.slice(0, 2).join(' ')} … exited ${code}: ${err.trim()}`)
  return { seconds, cpuSeconds: cpu0 !== undefined && cpu1 !== undefined ? cpu1 - cpu0 : undefined }
}

const common = (port: number, tls: boolean): string[] => ['--host', '127.0.0.1', '--port', String(port), '--partner', 'CXCLIENT', '--password', 'test123',
  '--server', 'PESITSRV', '--sync-kb', String(syncKb), '--state-dir', join(base, 'state'), '--quiet', ...(tls ? ['--tls', '--ca', pki.ca] : [])]

interface Sample { seconds: number, cpuSeconds: number | undefined, serverFsyncs: number }
type Scenario = 'push' | 'sftp put' | 'pull' | 'sftp get' | 'push tls' | 'pull tls'

try {
  await mkdir(join(base, 'outbox'), { recursive: true })
  const src = join(base, 'outbox', 'big.bin')
  const srcSha = await writePatternFile(src, sizeMiB, 1)
  if (sftpSkip === undefined) {
    sshd = await startSshd(join(base, 'ssh')).catch((err: Error) => { console.error(`sftp baseline skipped: ${err.message}`); return undefined })
  }
  let transferId = 1
  const scenarios: Record<Scenario, () => Promise<Sample>> = {
    push: async () => await pesit('push', false),
    'push tls': async () => await pesit('push', true),
    pull: async () => await pesit('pull', false),
    'pull tls': async () => await pesit('pull', true),
    'sftp put': async () => { const r = await run('sftp', sshd!.batch([`put ${src} ${join(base, 'sftp-put.bin')}`])); await unlink(join(base, 'sftp-put.bin')); return { ...r, serverFsyncs: 0 } },
    'sftp get': async () => { const r = await run('sftp', sshd!.batch([`get ${src} ${join(base, 'sftp-get.bin')}`])); await unlink(join(base, 'sftp-get.bin')); return { ...r, serverFsyncs: 0 } }
  }
  async function pesit (kind: 'push' | 'pull', tls: boolean, strace?: string): Promise<Sample> {
    await server.command('reset')
    const port = tls ? ports.tlsPort : ports.port
    const id = transferId++
    const out = kind === 'push' ? join(base, 'inbox', `CXCLIENT_TESTFILE_${id}`) : join(base, `pulled-${id}.bin`)
    const r = kind === 'push'
      ? await run(process.execPath, [vectisBin, 'send', ...common(port, tls), '--file', 'TESTFILE', '--transfer-id', String(id), '--article-size', '65000', src], strace === undefined ? {} : { strace })
      : await run(process.execPath, [vectisBin, 'receive', ...common(port, tls), '--file', 'OUTBOX', '--name', 'big.bin', out], strace === undefined ? {} : { strace })
    const stats = await server.command('stats') as { fsyncs: number }
    if (id <= 6 && (await sha256OfFile(out)) !== srcSha) throw new Error(`${kind}${tls ? ' tls' : ''}: SHA-256 differs`)
    await unlink(out)
    return { ...r, serverFsyncs: stats.fsyncs }
  }
  const order: Scenario[] = ['push', 'sftp put', 'pull', 'sftp get', 'push tls', 'pull tls']
  const samples = new Map<Scenario, Sample[]>(order.map((s) => [s, []]))
  for (let r = 0; r < runs; r++) {
    for (const s of order) {
      if (s.startsWith('sftp') && sshd === undefined) continue
      samples.get(s)!.push(await scenarios[s]())
    }
  }
  // The requester's fsyncs: one more, untimed, run of each PeSIT command under strace.
  const requesterFsyncs: Partial<Record<Scenario, number>> = {}
  if (hasStrace()) {
    for (const [s, kind] of [['push', 'push'], ['pull', 'pull']] as const) {
      const f = join(base, `strace-${kind}.txt`)
      await pesit(kind, false, f)
      requesterFsyncs[s] = straceCount(await readFile(f, 'utf8'))
    }
  }
  const sync = (await server.command('stats')).sync

  const median = (xs: number[]): number => { const a = [...xs].sort((p, q) => p - q); return a[Math.floor(a.length / 2)]! }
  const rows = order.filter((s) => samples.get(s)!.length > 0).map((s) => {
    const xs = samples.get(s)!
    const sec = median(xs.map((x) => x.seconds))
    const cpu = xs.every((x) => x.cpuSeconds !== undefined) ? median(xs.map((x) => x.cpuSeconds!)) : undefined
    return {
      scenario: s, medianSeconds: round(sec), mibPerSecond: round(sizeMiB / sec), runsSeconds: xs.map((x) => round(x.seconds)),
      machineCpuSecondsPerGiB: cpu === undefined ? null : round(cpu * 1024 / sizeMiB), serverFsyncs: xs[0]!.serverFsyncs, requesterFsyncs: requesterFsyncs[s] ?? null
    }
  })
  const rate = (s: Scenario): number | undefined => rows.find((r) => r.scenario === s)?.mibPerSecond
  const ratio = (a: Scenario, b: Scenario): number | null => rate(a) !== undefined && rate(b) !== undefined ? round(rate(a)! / rate(b)!) : null
  let concurrency: Record<string, unknown> | undefined
  if (!values['no-concurrent']) concurrency = await concurrentRound()
  const result = {
    machine: { cpus: cpus().length, model: cpus()[0]?.model, loadAverage: loadavg().map(round), node: process.version },
    sizeMiB, runs, syncKb, negotiatedSync: sync, sha256SecondsPerGiB: round(sha256Cost()), sftp: sshd === undefined ? (sftpSkip ?? 'skipped: no sshd (apt-get install openssh-server)') : `sftp -c aes128-gcm@openssh.com, ${sshd.version}`,
    scenarios: rows,
    ratios: { pushVsSftpPut: ratio('push', 'sftp put'), pullVsSftpGet: ratio('pull', 'sftp get'), pushTlsVsSftpPut: ratio('push tls', 'sftp put'), pullTlsVsSftpGet: ratio('pull tls', 'sftp get') },
    concurrency
  }
  console.log(JSON.stringify(result))
  console.log(`\n${sizeMiB} MiB, median of ${runs}, sync every ${syncKb} KB (negotiated ${JSON.stringify(sync)}), load ${result.machine.loadAverage.join(' ')}`)
  console.log('scenario     MiB/s  median s  runs (s)               CPU s/GiB  server fsyncs  requester fsyncs')
  for (const r of rows) {
    console.log(`${r.scenario.padEnd(11)} ${String(r.mibPerSecond).padStart(6)} ${String(r.medianSeconds).padStart(9)}  ${r.runsSeconds.join(', ').padEnd(22)} ${String(r.machineCpuSecondsPerGiB ?? '-').padStart(9)} ${String(r.serverFsyncs).padStart(14)}  ${String(r.requesterFsyncs ?? '-').padStart(16)}`)
  }
  console.log(`CPU s/GiB: busy CPU of the whole machine (both ends, kernel writeback) per GiB moved; SHA-256 of 1 GiB in one thread here: ${result.sha256SecondsPerGiB} s (PeSIT hashes every byte on both ends, sftp does not)`)
  console.log(`ratios: push/put ${result.ratios.pushVsSftpPut}, pull/get ${result.ratios.pullVsSftpGet}, push tls/put ${result.ratios.pushTlsVsSftpPut}, pull tls/get ${result.ratios.pullTlsVsSftpGet}`)
  if (concurrency !== undefined) console.log(`concurrency: ${JSON.stringify(concurrency)}`)
} finally {
  serverChild.kill('SIGTERM')
  sshd?.stop()
  await new Promise((resolve) => setTimeout(resolve, 200))
  await rm(base, { recursive: true, force: true })
}

/** `--concurrent` pushes at once, then as many pulls of distinct files at once, from one requester process each. */
async function concurrentRound (): Promise<Record<string, unknown>> {
  const each = join(base, 'each.bin')
  const eachSha = await writePatternFile(each, eachMiB, 2)
  for (let i = 0; i < concurrent; i++) await copyFile(each, join(base, 'outbox', `each-${i}.bin`))
  const job = (kind: 'push' | 'pull'): string[] => ['--import', 'tsx', '--import', './common/polyfill.ts', 'bench/transfer-requesters.ts',
    JSON.stringify({ kind, port: ports.port, count: concurrent, source: each, into: join(base, 'pulled'), syncKb })]
  const out: Record<string, unknown> = { transfers: concurrent, eachMiB }
  for (const kind of ['push', 'pull'] as const) {
    const p = spawn(process.execPath, job(kind), { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
    let text = ''
    p.stdout.on('data', (c: Buffer) => { text += c.toString() })
    await new Promise((resolve) => { p.on('close', resolve) })
    const r = JSON.parse(text.trim().split('\n').at(-1)!) as { seconds: number, ok: number, failed: string[], paths: string[] }
    let intact = 0
    for (const path of r.paths) if ((await sha256OfFile(path).catch(() => '')) === eachSha) intact++
    // The peak so far: after the pushes, theirs; after the pulls, the higher of the two rounds.
    const peak = (await server.command('stats')).peakRssMiB
    out[kind] = { completed: r.ok, intact, failed: r.failed.slice(0, 3), seconds: round(r.seconds), aggregateMiBPerSecond: round(concurrent * eachMiB / r.seconds), serverPeakRssMiBSoFar: peak }
  }
  out.serverPeakRssMiB = (await server.command('stats')).peakRssMiB
  return out
}

function hasStrace (): boolean {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** fsync + fdatasync calls in a `strace -c` summary. */
function straceCount (summary: string): number {
  let n = 0
  for (const m of summary.matchAll(/^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)(?:\s+\d+)?\s+(fsync|fdatasync)\s*$/gm)) n += Number(m[1])
  return n
}

function round (x: number): number { return Math.round(x * 100) / 100 }

/** Seconds one thread takes to SHA-256 1 GiB in 1 MiB updates (best of 3): what each PeSIT end spends on it. */
function sha256Cost (): number {
  const block = Buffer.alloc(1 << 20, 7)
  let best = Infinity
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now()
    const h = createHash('sha256')
    for (let i = 0; i < 1024; i++) h.update(block)
    h.digest()
    best = Math.min(best, (performance.now() - t0) / 1000)
  }
  return best
}
