/**
 * PeSIT push throughput on loopback: the server runs in this process (real file layer, fsync at every sync
 * point), the requester in a child process (so the two do not share an event loop).
 *  1. one push of `--size-mib` (default 1024 = 1 GiB), sync points every 1 MiB: MiB/s, SHA-256 checked;
 *  2. `--concurrent` (default 100) simultaneous pushes of `--each-mib` (default 10): all must complete; wall time,
 *     aggregate MiB/s, peak RSS of the server process and of the requester process.
 *
 * Usage: node --import tsx --import ./common/polyfill.ts bench/transfer.ts [--size-mib 1024] [--concurrent 100]
 *        [--each-mib 10] [--sync-kb 1024] [--article-size 8192] [--dir DIR] [--no-verify]
 * DIR defaults to ./.tmp (on the project's disk: /tmp may be a tmpfs, where fsync costs nothing).
 * Prints one JSON object, then a short table.
 */
import '../common/polyfill.js'
import { parseArgs } from 'node:util'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, open, rm, unlink } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startHarness } from '../test/helpers/pesit-harness.js'
import { patternBytes } from '../test/helpers/pesit-vectors.js'
import { pushFile } from '../transfer/push.js'

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' }, concurrent: { type: 'string', default: '100' },
    'each-mib': { type: 'string', default: '10' }, 'sync-kb': { type: 'string', default: '1024' },
    'article-size': { type: 'string', default: '8192' }, dir: { type: 'string', default: resolve('.tmp') },
    'no-verify': { type: 'boolean', default: false },
    child: { type: 'string' }
  }
})

interface ChildJob { port: number, source: string, count: number, firstId: number, syncKb: number, articleSize: number }
interface ChildResult { seconds: number, bytes: number, ok: number, failed: string[], peakRssMiB: number }

if (values.child !== undefined) {
  // Requester side: run `count` pushes at once, report.
  const job = JSON.parse(values.child) as ChildJob
  const t0 = performance.now()
  const failed: string[] = []
  let bytes = 0
  let ok = 0
  await Promise.all(Array.from({ length: job.count }, async (_, i) => {
    try {
      const r = await pushFile({ host: '127.0.0.1', port: job.port, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'TESTFILE', source: job.source, transferId: job.firstId + i, syncIntervalKb: job.syncKb, syncWindow: 4, articleSize: job.articleSize, timeoutMs: 120_000 })
      bytes += r.bytes
      ok++
    } catch (err) {
      failed.push((err as Error).message)
    }
  }))
  const res: ChildResult = { seconds: (performance.now() - t0) / 1000, bytes, ok, failed, peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) }
  console.log(JSON.stringify(res))
  process.exit(0)
}

const sizeMiB = Number(values['size-mib'])
const concurrent = Number(values.concurrent)
const eachMiB = Number(values['each-mib'])
const syncKb = Number(values['sync-kb'])
const articleSize = Number(values['article-size'])
for (const [k, v, max] of [['size-mib', sizeMiB, 65536], ['concurrent', concurrent, 1000], ['each-mib', eachMiB, 4096], ['article-size', articleSize, 65535]] as const) {
  if (!Number.isInteger(v) || v < 1 || v > max) { console.error(`--${k}: 1..${max}`); process.exit(2) }
}
if (!Number.isInteger(syncKb) || syncKb < 0 || syncKb > 65534) { console.error('--sync-kb: 0..65534'); process.exit(2) }

await mkdir(values.dir, { recursive: true })
const base = await mkdtemp(join(values.dir, 'bench-transfer-'))
const h = await startHarness({ baseDir: base, syncIntervalKb: Math.max(syncKb, 1), maxConnections: concurrent + 10 })

async function makeSource (path: string, mib: number): Promise<string> {
  const fh = await open(path, 'w')
  const hash = createHash('sha256')
  const block = patternBytes(1 << 20, 3)
  for (let i = 0; i < mib; i++) {
    block[0] = i & 0xff // every MiB differs a little
    await fh.write(block)
    hash.update(block)
  }
  await fh.close()
  return hash.digest('hex')
}

async function sha (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(c as Buffer)
  return hash.digest('hex')
}

async function child (job: ChildJob): Promise<ChildResult> {
  const script = fileURLToPath(import.meta.url)
  const root = resolve(fileURLToPath(new URL('..', import.meta.url)))
  const p = spawn(process.execPath, ['--import', 'tsx', '--import', './common/polyfill.ts', script, '--child', JSON.stringify(job)], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  p.stdout.on('data', (c: Buffer) => { out += c.toString() })
  const code = await new Promise<number | null>((resolve) => { p.on('close', resolve) })
  if (code !== 0) throw new Error(`requester process exited ${code}`)
  return JSON.parse(out.trim().split('\n').at(-1)!) as ChildResult
}

try {
  // 1. one big push
  const big = join(base, 'big.bin')
  const bigSha = await makeSource(big, sizeMiB)
  const one = await child({ port: h.port, source: big, count: 1, firstId: 1, syncKb, articleSize })
  if (one.ok !== 1) throw new Error(`big push failed: ${one.failed.join('; ')}`)
  const storedBig = join(h.dir, 'CXCLIENT_TESTFILE_1')
  const verified = values['no-verify'] ? null : (await sha(storedBig)) === bigSha
  await unlink(storedBig)
  await unlink(big)
  const serverRssAfterBig = Math.round(process.resourceUsage().maxRSS / 1024)

  // 2. many concurrent pushes
  const small = join(base, 'each.bin')
  const smallSha = await makeSource(small, eachMiB)
  const many = await child({ port: h.port, source: small, count: concurrent, firstId: 1000, syncKb, articleSize })
  let manyVerified: boolean | null = null
  if (!values['no-verify']) {
    manyVerified = true
    for (let i = 0; i < concurrent; i++) {
      if ((await sha(join(h.dir, `CXCLIENT_TESTFILE_${1000 + i}`)).catch(() => '')) !== smallSha) manyVerified = false
    }
  }
  const result = {
    single: { sizeMiB, seconds: round(one.seconds), mibPerSecond: round(sizeMiB / one.seconds), syncKb, articleSize, sha256Equal: verified, requesterPeakRssMiB: one.peakRssMiB, serverPeakRssMiB: serverRssAfterBig },
    concurrent: { pushes: concurrent, eachMiB, completed: many.ok, failed: many.failed.slice(0, 5), seconds: round(many.seconds), aggregateMiBPerSecond: round(concurrent * eachMiB / many.seconds), sha256Equal: manyVerified, requesterPeakRssMiB: many.peakRssMiB, serverPeakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) },
    node: process.version
  }
  console.log(JSON.stringify(result))
  console.log(`\nscenario                 MiB/s    seconds  ok      server RSS  requester RSS`)
  console.log(`1 × ${sizeMiB} MiB push`.padEnd(24), String(result.single.mibPerSecond).padStart(6), String(result.single.seconds).padStart(9), ` ${verified === null ? 'n/a' : verified ? 'sha ok' : 'SHA BAD'}`.padEnd(8), `${result.single.serverPeakRssMiB} MiB`.padStart(10), `${one.peakRssMiB} MiB`.padStart(13))
  console.log(`${concurrent} × ${eachMiB} MiB pushes`.padEnd(24), String(result.concurrent.aggregateMiBPerSecond).padStart(6), String(result.concurrent.seconds).padStart(9), ` ${many.ok}/${concurrent}`.padEnd(8), `${result.concurrent.serverPeakRssMiB} MiB`.padStart(10), `${many.peakRssMiB} MiB`.padStart(13))
  process.exitCode = many.ok === concurrent && verified !== false && manyVerified !== false ? 0 : 1
} finally {
  await h.stop()
  await rm(base, { recursive: true, force: true })
}

function round (x: number): number { return Math.round(x * 100) / 100 }
