/**
 * The transfer queue across a failover (issue 16, short form; `npm run bench:queue` is the long one): a 3-member dev
 * cluster on this file's loopback range (127.0.86.x) queues sends to a partner, another `vectisd` reached through a
 * rate-capped relay so that the transfers last a few seconds. Half the requests are made on a standby (forwarded to the
 * leader). The leader is killed -9 while transfers run with acknowledged sync points; the new leader requeues them and
 * restarts each from its last acknowledged sync point with the same PI 13. Afterwards every file is on the partner
 * exactly once with its content, every row `completed`, and each interrupted transfer resumed from (at least) the sync
 * point its row had at the kill.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../common/logger.js'
import { DevCluster } from '../../dev-cluster/dev-cluster.js'
import { TcpLoadBalancer } from '../../dev-cluster/load-balancer.js'
import { servingLeader } from '../../bench/bench-util.js'
import { DaemonProcess, freePorts, ROOT } from '../helpers/daemon-process.js'
import { waitFor } from '../helpers/wait.js'

const VECTISD = join(ROOT, 'dist', 'bin', 'vectisd.js')
const BASE_IP = '127.0.86.10'
const HTTP_PORT = 8080
const AUTH = { authorization: `Basic ${Buffer.from('ops:queue-test').toString('base64')}` }
const FILES = 8
const FILE_BYTES = 3 * 1024 * 1024 + 1234
/** Per connection: a 3 MiB file takes about 2 s, so the kill lands mid-transfer. */
const RELAY_BYTES_PER_S = 1536 * 1024

interface Row { id: string, status: string, transferId: number, attempts: number, syncPoint: number, syncOffset: number, sha256: string | null, diagnostic: string | null }

void test('queued sends survive a kill -9 of the leader: each file once on the partner, resumed from its last sync point', { timeout: 180_000 }, async (t) => {
  if (!existsSync(VECTISD)) throw new Error(`${VECTISD} is missing: run npm run build first`)
  const work = await mkdtemp(join(tmpdir(), 'vectis-queue-failover-'))
  const cleanups: Array<() => Promise<void> | void> = []
  t.after(async () => {
    for (const c of cleanups.reverse()) {
      try { await c() } catch { /* the next one still runs */ }
    }
    await rm(work, { recursive: true, force: true })
  })

  // The partner: a standalone vectisd behind a slow relay.
  const [partnerHttp, partnerPesit] = await freePorts(2)
  await writeFile(join(work, 'partner.yaml'), `servers:
  - id: BANKSRV
    port: ${partnerPesit}
    syncIntervalKb: 256
partners:
  - id: VECTIS
    password: ours123
    access: write
files:
  - id: PAYIN
    directory: inbox
`)
  const partner = new DaemonProcess({
    VECTIS_HTTP_PORT: String(partnerHttp), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_DATA_DIR: join(work, 'partner-data'),
    VECTIS_SHARED_DIR: join(work, 'partner-shared'), VECTIS_CONFIG: join(work, 'partner.yaml'), VECTIS_API_PASSWORD: 'pw'
  }, { cwd: work }).start()
  cleanups.push(async () => { await partner.kill() })
  await partner.waitLog((l) => l.msg === 'PeSIT servers started (leader)')
  const relay = new TcpLoadBalancer({ logger: silentLogger() }, { host: '127.0.0.1', port: 0, bytesPerSecond: RELAY_BYTES_PER_S })
  relay.setEndpoint({ host: '127.0.0.1', port: partnerPesit, name: 'partner' })
  await relay.start()
  cleanups.push(async () => { await relay.stop() })

  await writeFile(join(work, 'vectis.yaml'), `servers:
  - id: VECTIS
    port: 5000
partners:
  - id: BANK
    password: bank123
    host: 127.0.0.1
    port: ${relay.port!}
    serverId: BANKSRV
    remotePassword: ours123
    maxConnections: 4
files:
  - id: INBOX
    directory: inbox
`)
  const dc = new DevCluster({ logger: silentLogger() }, {
    nodes: 3, baseIp: BASE_IP, dataDir: join(work, 'cluster'), lbHost: '127.0.0.1', lbPort: 0, httpPort: HTTP_PORT, clusterPort: 7800,
    configFile: join(work, 'vectis.yaml'), demoPesitPort: 5000, apiUser: 'ops', apiPassword: 'queue-test', demoPassword: 'unused12',
    clusterSecret: 'queue-failover-test-secret-01234', logLevel: 'info', restart: false, memberCommand: [process.execPath, VECTISD]
  })
  cleanups.push(async () => { await dc.stop() })
  await dc.start()
  const leader = await servingLeader(dc, 60_000)
  const ipOf = (i: number): string => dc.snapshot()[i]!.ip
  const api = async (i: number, method: string, path: string, body?: unknown): Promise<{ status: number, json: Record<string, unknown> }> => {
    const res = await fetch(`http://${ipOf(i)}:${HTTP_PORT}${path}`, {
      method, headers: { ...AUTH, 'content-type': 'application/json' }, signal: AbortSignal.timeout(20_000), ...(body !== undefined ? { body: JSON.stringify(body) } : {})
    })
    return { status: res.status, json: await res.json() as Record<string, unknown> }
  }

  // The files, queued half on the leader, half on a standby (forwarded).
  const out = join(dc.sharedDir, 'out')
  await mkdir(out, { recursive: true })
  const standby = [0, 1, 2].find((i) => i !== leader)!
  const files = new Map<string, Buffer>()
  for (let i = 0; i < FILES; i++) {
    const data = randomBytes(FILE_BYTES + i)
    await writeFile(join(out, `f${i}.bin`), data)
    const r = await api(i % 2 === 0 ? leader : standby, 'POST', '/api/transfers', { direction: 'send', partner: 'BANK', file: 'PAYIN', path: `out/f${i}.bin` })
    assert.equal(r.status, 202, JSON.stringify(r.json))
    files.set(r.json.id as string, data)
  }

  // Killed while transfers run with acknowledged sync points.
  const rows = async (i: number): Promise<Row[]> => ((await api(i, 'GET', '/api/transfers?limit=1000')).json.transfers as Row[]).filter((r) => files.has(r.id))
  let seen: Row[] = []
  const atKill = await waitFor(async () => {
    seen = await rows(leader)
    return seen.some((r) => r.status === 'in-progress' && r.syncPoint > 0) ? seen : undefined
  }, { timeoutMs: 60_000, intervalMs: 50, what: 'a queued transfer in progress with an acknowledged sync point' }).catch(async (err: unknown) => {
    const log = (await readFile(dc.snapshot()[leader]!.logFile, 'utf8')).split('\n').filter((l) => l.includes('transfer:queue')).slice(-6).join('\n')
    throw new Error(`${(err as Error).message}; rows: ${JSON.stringify(seen.map((r) => [r.id, r.status, r.syncPoint, r.attempts, r.diagnostic]))}; the leader's queue log:\n${log}`)
  })
  assert.ok(dc.kill(leader))
  const interrupted = atKill.filter((r) => r.status === 'in-progress')
  t.diagnostic(`killed the leader with ${interrupted.length} transfers running, sync points ${interrupted.map((r) => r.syncPoint).join(', ')}`)

  const survivors = [0, 1, 2].filter((i) => i !== leader)
  const done = await waitFor(async () => {
    const rs = await rows(survivors[0]!)
    return rs.length === FILES && rs.every((r) => r.status === 'completed') ? rs : undefined
  }, { timeoutMs: 120_000, intervalMs: 200, what: 'every queued transfer completed after the failover' })

  // Exactly once on the partner, whole.
  const inbox = join(work, 'partner-shared', 'inbox')
  const names = (await readdir(inbox)).filter((n) => !n.startsWith('.'))
  assert.equal(names.length, FILES, `one file per queued transfer: ${names.join(', ')}`)
  for (const r of done) {
    const data = files.get(r.id)!
    assert.equal(r.sha256, createHash('sha256').update(data).digest('hex'))
    assert.deepEqual(await readFile(join(inbox, `VECTIS_PAYIN_${r.transferId}`)), data, `${r.id} on the partner under its PI 13`)
  }
  // Each transfer interrupted with a sync point resumed from it or later, not from the start.
  const logs = (await Promise.all(survivors.map(async (i) => await readFile(dc.snapshot()[i]!.logFile, 'utf8').catch(() => '')))).join('\n')
  const resumed = new Map<string, number>()
  for (const line of logs.split('\n')) {
    if (!line.includes('queued file sent')) continue
    const l = JSON.parse(line) as { transfer: string, resumedAt: number }
    resumed.set(l.transfer, l.resumedAt)
  }
  for (const r of interrupted.filter((x) => x.syncPoint > 0)) {
    assert.ok((resumed.get(r.id) ?? -1) >= r.syncOffset, `${r.id}: resumed at ${resumed.get(r.id)}, its row had sync offset ${r.syncOffset} at the kill`)
  }
  t.diagnostic(`resumed at: ${interrupted.map((r) => `${r.id} ${resumed.get(r.id)} ≥ ${r.syncOffset}`).join('; ')}`)
})
