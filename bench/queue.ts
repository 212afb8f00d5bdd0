/**
 * Transfers the cluster initiates, across kills of the leader (issue 16's long form; the short one is
 * test/integration/transfer-queue-failover.test.ts): a 3-member dev cluster (the built `vectisd`, on loopback from
 * `--base-ip`) queues `--sends` sends to a partner and `--fetches` fetches from it, a third of the requests made on a
 * standby (forwarded to the leader). The partner is another `vectisd`, standalone, whose server has
 * `syncIntervalKb: 256`, a receive file PAYIN and a send file PAYOUT holding the fetch sources; the cluster reaches it
 * through a relay (dev-cluster/load-balancer.ts) that caps each connection at `--relay-kbps` KiB/s each way, so the
 * run lasts minutes and every transfer a few seconds. Fetches are queued among the sends (one every
 * sends/fetches), so both kinds run together.
 *
 * The leader is killed -9 `--kills` times, once a share of the transfers completed (1/(kills+1), 2/(kills+1), …),
 * each time while transfers run with an acknowledged sync point in their row (for up to 20 s it waits for a moment
 * with both a send and a fetch in that state); the killed member is started again at once so that a majority stays,
 * and the next kill waits for a new leader serving.
 *
 * Checks, each `ok` or `failed` in the JSON: every row `completed` (GET /api/transfers/{id} on the leader); every
 * sent file on the partner exactly once under its PI 13 and byte-equal to its source, every fetched file in the
 * shared directory exactly once and byte-equal, the SHA-256 of each row equal; for each interrupted transfer, the
 * bytes sent again at most one sync interval (256 KiB).
 *
 * Bytes sent again are measured from the outside: the relay reports every piece it forwards (its `observe` hook).
 * This benchmark parses each connection's two byte streams as PeSIT (entities, FPDUs; the codec of the daemon), so
 * it needs no estimate of the framing: a connection is mapped to its transfer by what it carries itself, the PI 13
 * of the CREATE for a send (fixed in the row when it was queued) or the file name of the SELECT's PI 12 for a fetch
 * (each fetch names a distinct file), and the file bytes it carried are the article bytes of its DTF FPDUs in the
 * data's direction (client → partner for a send, partner → client for a fetch): DTF payloads minus the 2-byte
 * article prefixes of the multi-article form. A transfer's bytes sent again are the sum over its connections minus
 * its file size, plus the bytes of an entity cut off by the kill (counted whole, so an upper bound). A transfer that
 * ran on one connection must have carried exactly its size: that is checked too, as a check of the method.
 *
 * Usage: npm run build && npm run bench:queue -- [--sends 100] [--fetches 20] [--kills 2] [--file-kb 2048]
 *   [--relay-kbps 512] [--concurrency 4 (the partner's maxConnections)] [--base-ip 127.0.88.10]
 *   [--timeout-min 15] [--keep (the work directory and every log)]
 * Prints one JSON object, then a short table.
 */
import '../common/polyfill.js'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { silentLogger } from '../common/logger.js'
import { DevCluster } from '../dev-cluster/dev-cluster.js'
import { TcpLoadBalancer, type ConnectionEvent } from '../dev-cluster/load-balancer.js'
import { EntityReader, HEADER_SIZE, decodeFpdu, getGroup, getNumber, getString, peekFpduType, splitEntity } from '../transfer/codec.js'
import { isDataFpdu } from '../transfer/fpdu-types.js'
import { DaemonProcess, freePorts } from '../test/helpers/daemon-process.js'
import { pct, servingLeader, until } from './bench-util.js'

const { values } = parseArgs({
  options: {
    sends: { type: 'string', default: '100' },
    fetches: { type: 'string', default: '20' },
    kills: { type: 'string', default: '2' },
    'file-kb': { type: 'string', default: '2048' },
    'relay-kbps': { type: 'string', default: '512' },
    concurrency: { type: 'string', default: '4' },
    'base-ip': { type: 'string', default: '127.0.88.10' },
    'timeout-min': { type: 'string', default: '15' },
    keep: { type: 'boolean', default: false }
  }
})
const num = (k: keyof typeof values, min: number, max = Number.MAX_SAFE_INTEGER): number => {
  const n = Number(values[k])
  if (!Number.isInteger(n) || n < min || n > max) {
    console.error(`--${k}: an integer from ${min} to ${max}, got ${String(values[k])}`)
    process.exit(2)
  }
  return n
}
const SENDS = num('sends', 0)
const FETCHES = num('fetches', 0)
const KILLS = num('kills', 0)
const FILE_BYTES = num('file-kb', 1) * 1024
const RELAY_KBPS = num('relay-kbps', 1)
const CONCURRENCY = num('concurrency', 1, 100)
const TIMEOUT_MS = num('timeout-min', 1) * 60_000
if (SENDS + FETCHES === 0) {
  console.error('nothing to transfer: --sends and --fetches are both 0')
  process.exit(2)
}
/** The partner's server offers this interval; the cluster proposes 1 MiB; the smaller one is used. */
const SYNC_INTERVAL_KB = 256
const SYNC_INTERVAL = SYNC_INTERVAL_KB * 1024
const HTTP_PORT = 8080
const API_USER = 'ops'
const API_PASSWORD = 'queue-bench'
const AUTH = { authorization: `Basic ${Buffer.from(`${API_USER}:${API_PASSWORD}`).toString('base64')}` }
const VECTISD = fileURLToPath(new URL('../dist/bin/vectisd.js', import.meta.url))
if (!existsSync(VECTISD)) {
  console.error(`${VECTISD} is missing: run npm run build first`)
  process.exit(2)
}
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const log = (s: string): void => { process.stderr.write(`${new Date().toISOString().slice(11, 23)} ${s}\n`) }

interface Row {
  id: string, status: string, direction: 'send' | 'receive', transferId: number, attempts: number, syncPoint: number, syncOffset: number,
  bytes: number, sha256: string | null, filePath: string | null, diagnostic: string | null, createdAt: string, finishedAt: string | null
}

// ---- the relay's traffic, parsed as PeSIT ---------------------------------------------------------------------

/** One direction of one connection: its entities as they complete. */
interface Stream { reader: EntityReader, raw: number, fileBytes: number, broken?: string }
interface Conn {
  id: number
  openedAt: number
  closedAt?: number
  up: Stream
  down: Stream
  /** from its CREATE (a send: PI 13) or its SELECT (a fetch: the name in PI 12) */
  kind?: 'send' | 'fetch'
  transferId?: number
  remoteName?: string
  /** PI 15 of the CREATE/SELECT: a restart */
  restart?: boolean
  /** the restart point granted: ACK(WRITE) PI 18 for a send, READ PI 18 for a fetch */
  restartPoint?: number
  /** the last SYN sent in the data's direction and the last acknowledged */
  lastSyn: number
  lastAckSyn: number
  /** TRANS.END acknowledged on it */
  ended: boolean
}
const conns = new Map<number, Conn>()
const stream = (): Stream => ({ reader: new EntityReader(), raw: 0, fileBytes: 0 })

function onFpdu (c: Conn, up: boolean, f: Uint8Array): void {
  const type = peekFpduType(f)
  if (type === undefined) return
  const s = up ? c.up : c.down
  if (isDataFpdu(type)) {
    // A multi-article DTF (ID.SRC = n ≥ 1 articles) prefixes each article with its 2-byte length.
    const n = type === 'DTF' ? f[5]! : 0
    s.fileBytes += f.length - HEADER_SIZE - 2 * n
    return
  }
  const p = decodeFpdu(f).params
  switch (type) {
    case 'CREATE': c.kind = 'send'; c.transferId = getNumber(p, 13); c.restart = getNumber(p, 15) === 1; break
    case 'SELECT': {
      c.kind = 'fetch'
      const name = getString(getGroup(p, 9), 12) ?? ''
      c.remoteName = name.slice(name.indexOf('/') + 1)
      c.restart = getNumber(p, 15) === 1
      break
    }
    case 'ACK_WRITE': c.restartPoint = getNumber(p, 18) ?? 0; break
    case 'READ': c.restartPoint = getNumber(p, 18) ?? 0; break
    case 'SYN': c.lastSyn = Math.max(c.lastSyn, getNumber(p, 20) ?? 0); break
    case 'ACK_SYN': c.lastAckSyn = Math.max(c.lastAckSyn, getNumber(p, 20) ?? 0); break
    case 'ACK_TRANS_END': c.ended = true; break
  }
}

function observe (e: ConnectionEvent): void {
  if (e.type === 'opened') {
    conns.set(e.connection, { id: e.connection, openedAt: Date.now(), up: stream(), down: stream(), lastSyn: 0, lastAckSyn: 0, ended: false })
    return
  }
  const c = conns.get(e.connection)
  if (c === undefined) return
  if (e.type === 'closed') {
    c.closedAt = Date.now()
    return
  }
  const s = e.toEndpoint ? c.up : c.down
  s.raw += e.bytes.length
  if (s.broken !== undefined) return
  try {
    s.reader.push(e.bytes)
    for (let u = s.reader.next(); u !== undefined; u = s.reader.next()) {
      if (u.kind === 'entity') for (const f of splitEntity(u.body)) onFpdu(c, e.toEndpoint, f)
    }
  } catch (err) {
    s.broken = (err as Error).message
  }
}

// ---- the cluster and the partner -------------------------------------------------------------------------------

const work = await mkdtemp(join(tmpdir(), 'vectis-bench-queue-'))
const partnerShared = join(work, 'partner-shared')
const [partnerHttp, partnerPesit] = await freePorts(2)
await mkdir(join(partnerShared, 'outbox'), { recursive: true })
await writeFile(join(work, 'partner.yaml'), `servers:
  - id: BANKSRV
    port: ${partnerPesit}
    syncIntervalKb: ${SYNC_INTERVAL_KB}
partners:
  - id: VECTIS
    password: ours123
    access: both
files:
  - id: PAYIN
    directory: inbox
  - id: PAYOUT
    direction: send
    directory: outbox
`)
const partner = new DaemonProcess({
  VECTIS_HTTP_PORT: String(partnerHttp), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_DATA_DIR: join(work, 'partner-data'),
  VECTIS_SHARED_DIR: partnerShared, VECTIS_CONFIG: join(work, 'partner.yaml'), VECTIS_API_PASSWORD: 'pw'
}, { cwd: work })
const relay = new TcpLoadBalancer({ logger: silentLogger() }, { host: '127.0.0.1', port: 0, bytesPerSecond: RELAY_KBPS * 1024, observe })
const clusterDir = join(work, 'cluster')
await mkdir(clusterDir, { recursive: true })
const dc = new DevCluster({ logger: silentLogger() }, {
  nodes: 3, baseIp: values['base-ip'], dataDir: clusterDir, lbHost: '127.0.0.1', lbPort: 0, httpPort: HTTP_PORT, clusterPort: 7800,
  configFile: join(work, 'vectis.yaml'), demoPesitPort: 5000, apiUser: API_USER, apiPassword: API_PASSWORD, demoPassword: 'unused12',
  clusterSecret: 'queue-bench-cluster-secret-0123', logLevel: 'info', restart: false, memberCommand: [process.execPath, VECTISD]
})

const stopAll = async (): Promise<void> => {
  await dc.stop().catch(() => {})
  await relay.stop().catch(() => {})
  await partner.kill()
  if (values.keep) await writeFile(join(work, 'partner.log'), partner.stdout + partner.stderr).catch(() => {})
}
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    void stopAll().finally(async () => {
      if (!values.keep) await rm(work, { recursive: true, force: true })
      process.exit(1)
    })
  })
}

const ipOf = (i: number): string => dc.snapshot()[i]!.ip
async function api (i: number, method: string, path: string, body?: unknown): Promise<{ status: number, json: Record<string, unknown> }> {
  const res = await fetch(`http://${ipOf(i)}:${HTTP_PORT}${path}`, {
    method, headers: { ...AUTH, 'content-type': 'application/json' }, signal: AbortSignal.timeout(20_000), ...(body !== undefined ? { body: JSON.stringify(body) } : {})
  })
  return { status: res.status, json: await res.json() as Record<string, unknown> }
}

interface Item { kind: 'send' | 'fetch', index: number, data: Buffer, sha256: string, id?: string, remoteName?: string, via?: 'leader' | 'standby' }
const items: Item[] = []
interface Kill {
  n: number, member: number, at: number, completedBefore: number, running: Array<{ id: string, kind: string, syncPoint: number, syncOffset: number }>,
  newLeader?: number, servingAfterMs?: number
  /** the relay's connections open at the kill: file bytes each way and the last sync point acknowledged on it by then */
  open: Map<number, { up: number, down: number, ackSyn: number }>
}
const kills: Kill[] = []
const failures: string[] = []
const startedAt = Date.now()
let queuedAt = 0
let finishedAt = 0
let leader = -1

try {
  partner.start()
  await partner.waitLog((l) => l.msg === 'PeSIT servers started (leader)', 30_000, 'the partner serving')
  relay.setEndpoint({ host: '127.0.0.1', port: partnerPesit, name: 'partner' })
  await relay.start()
  await writeFile(join(work, 'vectis.yaml'), `servers:
  - id: VECTIS
    port: 5000
partners:
  - id: BANK
    password: bank123
    host: 127.0.0.1
    port: ${relay.port!}
    serverId: BANKSRV
    localId: VECTIS
    remotePassword: ours123
    maxConnections: ${CONCURRENCY}
files:
  - id: INBOX
    directory: inbox
  - id: FETCHED
    directory: fetched
`)
  await dc.start()
  leader = await servingLeader(dc, 120_000)
  log(`cluster up, leader vectis-${leader}; relay ${RELAY_KBPS} KiB/s per connection and direction, ${CONCURRENCY} transfers at a time`)

  // The files: sends in the shared directory, fetch sources in the partner's outbox; fetches spread among the sends.
  const out = join(dc.sharedDir, 'out')
  await mkdir(out, { recursive: true })
  const every = FETCHES === 0 ? Infinity : (SENDS + FETCHES) / FETCHES
  let s = 0
  let f = 0
  for (let k = 0; k < SENDS + FETCHES; k++) {
    const isFetch = f < FETCHES && (s >= SENDS || (k + 1) >= (f + 1) * every)
    const data = randomBytes(FILE_BYTES)
    const item: Item = { kind: isFetch ? 'fetch' : 'send', index: isFetch ? f++ : s++, data, sha256: sha(data) }
    if (isFetch) {
      item.remoteName = `g${item.index}.bin`
      await writeFile(join(partnerShared, 'outbox', item.remoteName), data)
    } else {
      await writeFile(join(out, `f${item.index}.bin`), data)
    }
    items.push(item)
  }
  const standby = [0, 1, 2].find((i) => i !== leader)!
  for (const [k, it] of items.entries()) {
    const via = k % 3 === 2 ? standby : leader
    const body = it.kind === 'send'
      ? { direction: 'send', partner: 'BANK', file: 'PAYIN', path: `out/f${it.index}.bin` }
      : { direction: 'fetch', partner: 'BANK', file: 'PAYOUT', remoteName: it.remoteName, into: 'FETCHED' }
    const r = await api(via, 'POST', '/api/transfers', body)
    if (r.status !== 202) throw new Error(`POST ${JSON.stringify(body)} on vectis-${via}: ${r.status} ${JSON.stringify(r.json)}`)
    it.id = r.json.id as string
    it.via = via === leader ? 'leader' : 'standby'
  }
  queuedAt = Date.now()
  log(`queued ${SENDS} sends and ${FETCHES} fetches in ${queuedAt - startedAt} ms from the start (a third through vectis-${standby}, a standby)`)

  const ids = new Map(items.map((it) => [it.id!, it]))
  const listed = async (i: number, status: string): Promise<Row[]> =>
    ((await api(i, 'GET', `/api/transfers?status=${status}&limit=1000`)).json.transfers as Row[]).filter((r) => ids.has(r.id))

  for (let n = 1; n <= KILLS; n++) {
    const target = Math.ceil(n * items.length / (KILLS + 1))
    let completed = 0
    await until(`${target} transfers completed before kill ${n}`, async () => {
      completed = (await listed(leader, 'completed').catch(() => [])).length
      return completed >= target ? true : undefined
    }, TIMEOUT_MS, 500)
    // Running with an acknowledged sync point; for up to 20 s, a moment with a send and a fetch both so.
    const wantBoth = Date.now() + 20_000
    const running = await until(`a queued transfer running with an acknowledged sync point (kill ${n})`, async () => {
      const rs = (await listed(leader, 'in-progress').catch(() => [])).filter((r) => r.syncPoint > 0)
      if (rs.length === 0) return undefined
      const both = rs.some((r) => r.direction === 'send') && rs.some((r) => r.direction === 'receive')
      return both || FETCHES === 0 || SENDS === 0 || Date.now() > wantBoth ? rs : undefined
    }, 120_000, 100)
    const allRunning = await listed(leader, 'in-progress').catch(() => running)
    const pid = dc.snapshot()[leader]!.pid
    const at = Date.now()
    dc.kill(leader)
    const open = new Map([...conns.values()].filter((c) => c.closedAt === undefined).map((c) => [c.id, { up: c.up.fileBytes, down: c.down.fileBytes, ackSyn: c.lastAckSyn }]))
    const kill: Kill = {
      n, member: leader, at, completedBefore: completed, open,
      running: allRunning.map((r) => ({ id: r.id, kind: ids.get(r.id)!.kind, syncPoint: r.syncPoint, syncOffset: r.syncOffset }))
    }
    kills.push(kill)
    log(`kill ${n}: vectis-${leader} (-9) with ${completed} completed and ${allRunning.length} running: ${kill.running.map((r) => `${r.kind} ${r.id} at sync point ${r.syncPoint}`).join(', ')}`)
    const killed = leader
    await until(`vectis-${killed} exited`, () => { const m = dc.snapshot()[killed]!; return m.pid !== pid || m.state !== 'running' ? true : undefined }, 30_000)
    dc.restartNow(killed)
    // A new leader serving, every member back (the killed one restarted).
    leader = await until('a new leader serving', () => {
      const l = dc.snapshot().find((m) => m.index !== killed && m.status?.isLeader === true && m.status.servers?.[0]?.running === true)
      return l?.index
    }, 120_000)
    kill.newLeader = leader
    kill.servingAfterMs = Date.now() - at
    log(`kill ${n}: vectis-${leader} leads and serves ${kill.servingAfterMs} ms after the kill`)
    leader = await servingLeader(dc, 120_000)
  }

  // Until every row is final.
  let last = ''
  await until('every queued transfer final', async () => {
    const res = await api(leader, 'GET', '/api/transfers?limit=1000').catch(() => undefined)
    if (res === undefined) return undefined
    const rows = (res.json.transfers as Row[]).filter((r) => ids.has(r.id))
    const byStatus: Record<string, number> = {}
    for (const r of rows) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1
    const line = JSON.stringify(byStatus)
    if (line !== last) { last = line; log(`rows: ${line}`) }
    return rows.length === items.length && rows.every((r) => ['completed', 'failed', 'cancelled', 'unconfirmed'].includes(r.status)) ? true : undefined
  }, TIMEOUT_MS, 1000)
  finishedAt = Date.now()
} catch (err) {
  failures.push((err as Error).message.split('\n')[0]!)
  log(`failed: ${(err as Error).message}`)
}

// ---- checks ----------------------------------------------------------------------------------------------------
const checks: Record<string, { ok: boolean, detail: string }> = {}
const check = (name: string, ok: boolean, detail: string): void => { checks[name] = { ok, detail } }

// Every row completed, each asked on its own.
const rows = new Map<string, Row>()
for (const it of items) {
  if (it.id === undefined || leader < 0) continue
  const r = await api(leader, 'GET', `/api/transfers/${it.id}`).catch(() => undefined)
  if (r?.status === 200) rows.set(it.id, r.json as unknown as Row)
}
const notCompleted = items.filter((it) => rows.get(it.id ?? '')?.status !== 'completed')
check('every row completed (GET /api/transfers/{id})', notCompleted.length === 0,
  notCompleted.length === 0 ? `${items.length} of ${items.length}` : `not completed: ${notCompleted.slice(0, 10).map((it) => `${it.kind} ${it.id ?? '(not queued)'} ${rows.get(it.id ?? '')?.status ?? 'unknown'} ${rows.get(it.id ?? '')?.diagnostic ?? ''}`).join('; ')}`)

// Every file once, whole; the SHA-256 of each row.
const visible = async (dir: string): Promise<{ names: string[], hidden: string[] }> => {
  const all = await readdir(dir).catch(() => [] as string[])
  return { names: all.filter((n) => !n.startsWith('.')), hidden: all.filter((n) => n.startsWith('.')) }
}
const sends = items.filter((it) => it.kind === 'send')
const fetches = items.filter((it) => it.kind === 'fetch')
const inbox = await visible(join(partnerShared, 'inbox'))
const badSends: string[] = []
for (const it of sends) {
  const r = rows.get(it.id ?? '')
  if (r === undefined) { badSends.push(`${it.id}: no row`); continue }
  const name = `VECTIS_PAYIN_${r.transferId}`
  const there = await readFile(join(partnerShared, 'inbox', name)).catch(() => undefined)
  if (there === undefined || !there.equals(it.data)) badSends.push(`${it.id}: ${name} ${there === undefined ? 'missing' : 'differs'}`)
  if (r.sha256 !== it.sha256) badSends.push(`${it.id}: the row's SHA-256 ${r.sha256}`)
}
check('every send on the partner exactly once, byte-equal, SHA-256 equal', badSends.length === 0 && inbox.names.length === sends.length,
  `${inbox.names.length} files in the partner's inbox for ${sends.length} sends${badSends.length > 0 ? `; ${badSends.slice(0, 10).join('; ')}` : ''}`)
const fetchedDir = join(dc.sharedDir, 'fetched')
const fetched = await visible(fetchedDir)
const badFetches: string[] = []
for (const it of fetches) {
  const r = rows.get(it.id ?? '')
  if (r?.filePath == null) { badFetches.push(`${it.id}: no destination`); continue }
  const there = await readFile(r.filePath).catch(() => undefined)
  if (there === undefined || !there.equals(it.data)) badFetches.push(`${it.id}: ${r.filePath} ${there === undefined ? 'missing' : 'differs'}`)
  if (r.sha256 !== it.sha256) badFetches.push(`${it.id}: the row's SHA-256 ${r.sha256}`)
}
check('every fetch in the shared directory exactly once, byte-equal, SHA-256 equal', badFetches.length === 0 && fetched.names.length === fetches.length,
  `${fetched.names.length} files in ${fetchedDir} for ${fetches.length} fetches${badFetches.length > 0 ? `; ${badFetches.slice(0, 10).join('; ')}` : ''}`)

// What crossed the relay, per transfer.
const byTransferId = new Map(sends.map((it) => [rows.get(it.id ?? '')?.transferId, it]))
const byName = new Map(fetches.map((it) => [it.remoteName, it]))
const connsOf = new Map<Item, Conn[]>()
const unmapped: Conn[] = []
for (const c of [...conns.values()].sort((a, b) => a.id - b.id)) {
  const it = c.kind === 'send' ? byTransferId.get(c.transferId) : c.kind === 'fetch' ? byName.get(c.remoteName) : undefined
  if (it === undefined) { unmapped.push(c); continue }
  connsOf.set(it, [...(connsOf.get(it) ?? []), c])
}
interface PerTransfer {
  kind: string, id: string, connections: number, attempts: number, fileBytes: number, cutBytes: number, resentBytes: number, durationMs: number | null,
  restartPoints: number[], syncPointAtKills: number[], broken?: string
  /**
   * Each of its connections open at a kill: the sync point its row had then; the file bytes the relay had forwarded by
   * the kill and by the connection's end (what the killed member's kernel had handed over still went on); the last sync point the
   * partner acknowledged by the kill and by the end; when it closed after the kill.
   */
  atKill: Array<{
    kill: number, rowSyncPoint: number | null, fileBytesByKill: number, fileBytesByClose: number, ackSynByKill: number, ackSynByClose: number,
    closedAfterKillMs: number | null, nextAttemptAfterKillMs: number | null
  }>
}
const per: PerTransfer[] = items.map((it) => {
  const cs = connsOf.get(it) ?? []
  const data = (c: Conn): Stream => it.kind === 'send' ? c.up : c.down
  const fileBytes = cs.reduce((a, c) => a + data(c).fileBytes, 0)
  // Bytes of an entity the kill cut off: counted as sent again (an upper bound of the file bytes in it).
  const cutBytes = cs.reduce((a, c) => a + data(c).reader.buffered, 0)
  const opened = cs.map((c) => c.openedAt)
  const closed = cs.map((c) => c.closedAt ?? finishedAt)
  const broken = cs.map((c) => data(c).broken).find((b) => b !== undefined)
  return {
    kind: it.kind, id: it.id ?? '', connections: cs.length, attempts: rows.get(it.id ?? '')?.attempts ?? 0, fileBytes, cutBytes,
    resentBytes: fileBytes + cutBytes - it.data.length,
    durationMs: cs.length === 0 ? null : Math.max(...closed) - Math.min(...opened),
    restartPoints: cs.slice(1).map((c) => c.restartPoint ?? -1),
    syncPointAtKills: kills.flatMap((k) => k.running.filter((r) => r.id === it.id).map((r) => r.syncPoint)),
    atKill: kills.flatMap((k) => cs.filter((c) => k.open.has(c.id)).map((c) => {
      const o = k.open.get(c.id)!
      return {
        kill: k.n, rowSyncPoint: k.running.find((r) => r.id === it.id)?.syncPoint ?? null,
        fileBytesByKill: it.kind === 'send' ? o.up : o.down, fileBytesByClose: data(c).fileBytes,
        ackSynByKill: o.ackSyn, ackSynByClose: c.lastAckSyn, closedAfterKillMs: c.closedAt === undefined ? null : c.closedAt - k.at,
        nextAttemptAfterKillMs: ((n) => n === undefined ? null : n.openedAt - k.at)(cs.find((x) => x.id > c.id))
      }
    })),
    ...(broken !== undefined ? { broken } : {})
  }
})
const interrupted = per.filter((p) => p.connections > 1)
const single = per.filter((p) => p.connections === 1)
const inexact = single.filter((p) => p.resentBytes !== 0 || p.broken !== undefined)
check('the relay\'s count: a transfer on one connection carried exactly its file', inexact.length === 0 && unmapped.every((c) => c.up.raw + c.down.raw < 4096),
  `${single.length - inexact.length} of ${single.length} exact${inexact.length > 0 ? `; off: ${inexact.slice(0, 5).map((p) => `${p.id} ${p.resentBytes} B${p.broken !== undefined ? ` (${p.broken})` : ''}`).join(', ')}` : ''}; ` +
  `${unmapped.length} connection(s) without a CREATE or SELECT (${unmapped.reduce((a, c) => a + c.up.raw + c.down.raw, 0)} bytes)`)
const over = interrupted.filter((p) => p.resentBytes > SYNC_INTERVAL)
check(`bytes sent again per interrupted transfer ≤ one sync interval (${SYNC_INTERVAL_KB} KiB)`, over.length === 0,
  `${interrupted.length} interrupted, max ${Math.max(0, ...interrupted.map((p) => p.resentBytes))} B${over.length > 0 ? `; over: ${over.map((p) => `${p.kind} ${p.id} ${p.resentBytes} B`).join(', ')}` : ''}`)
const unresumed = interrupted.filter((p) => p.syncPointAtKills.length > 0 && p.restartPoints.length > 0 && Math.max(...p.restartPoints) < Math.max(...p.syncPointAtKills))
check('each transfer running at a kill restarted at or after the sync point its row had then', unresumed.length === 0,
  unresumed.length === 0 ? `${interrupted.filter((p) => p.syncPointAtKills.length > 0).length} checked` : unresumed.map((p) => `${p.kind} ${p.id}: restart points ${p.restartPoints.join(',')}, row at the kill ${p.syncPointAtKills.join(',')}`).join('; '))
check(`${KILLS} kill(s) of the leader, each with a transfer running past an acknowledged sync point`, kills.length === KILLS && kills.every((k) => k.running.some((r) => r.syncPoint > 0)),
  kills.map((k) => `kill ${k.n}: ${k.running.filter((r) => r.syncPoint > 0).length} of ${k.running.length} running past a sync point`).join('; '))

await stopAll()
if (values.keep) log(`kept: ${work} (members' logs in cluster/logs, the partner's in partner.log)`)
else await rm(work, { recursive: true, force: true })

const kib = (b: number): number => Math.round(b / 102.4) / 10
const perKind = Object.fromEntries((['send', 'fetch'] as const).filter((k) => items.some((it) => it.kind === k)).map((k) => {
  const ps = per.filter((p) => p.kind === k)
  const irs = ps.filter((p) => p.connections > 1)
  const durations = ps.map((p) => p.durationMs).filter((d): d is number => d !== null)
  return [k, {
    count: ps.length,
    completed: ps.filter((p) => rows.get(p.id)?.status === 'completed').length,
    interrupted: irs.length,
    resentKiB: irs.map((p) => kib(p.resentBytes)),
    maxResentKiB: irs.length === 0 ? null : kib(Math.max(...irs.map((p) => p.resentBytes))),
    durationP50Ms: pct(durations, 50),
    /** from a kill to the next attempt of a transfer it interrupted, the longest */
    killToNextAttemptMaxMs: ((xs) => xs.length === 0 ? null : Math.max(...xs))(irs.flatMap((p) => p.atKill.flatMap((a) => a.nextAttemptAfterKillMs ?? []))),
    durationMaxMs: durations.length === 0 ? null : Math.max(...durations),
    attemptsMax: Math.max(0, ...ps.map((p) => p.attempts))
  }]
}))
for (const [name, c] of Object.entries(checks)) if (!c.ok) failures.push(`check failed: ${name}`)
const result = {
  machine: { cpus: cpus().length, loadAverage: loadavg().map((x) => Math.round(x * 100) / 100), node: process.version },
  load: { sends: SENDS, fetches: FETCHES, fileKiB: FILE_BYTES / 1024, relayKiBps: RELAY_KBPS, concurrency: CONCURRENCY, syncIntervalKiB: SYNC_INTERVAL_KB, kills: KILLS },
  runMs: finishedAt > 0 ? finishedAt - queuedAt : null,
  kills: kills.map(({ open, ...k }) => ({ ...k, at: k.at - queuedAt, relayConnectionsOpen: open.size })),
  perKind,
  interrupted: interrupted.map((p) => ({ ...p, resentKiB: kib(p.resentBytes) })),
  relay: { connections: conns.size, unmapped: unmapped.length, leftoverPartialFiles: { partnerInbox: inbox.hidden.filter((n) => !n.endsWith('.ckpt')), fetched: fetched.hidden } },
  checks: Object.fromEntries(Object.entries(checks).map(([k, v]) => [k, { result: v.ok ? 'ok' : 'failed', detail: v.detail }])),
  failures
}
console.log(JSON.stringify(result, null, 2))
const secs = (ms: number | null): string => ms === null ? '–' : `${(ms / 1000).toFixed(1)} s`
console.log('\n| kind | count | completed | interrupted | bytes sent again per interrupted transfer, max | duration p50 (first connection to last close) | kill → next attempt of a transfer it cut, max |')
console.log('|---|---|---|---|---|---|---|')
for (const [k, x] of Object.entries(perKind)) {
  console.log(`| ${k} | ${x.count} | ${x.completed} | ${x.interrupted} | ${x.maxResentKiB === null ? '–' : `${x.maxResentKiB} KiB`} | ${secs(x.durationP50Ms)} | ${secs(x.killToNextAttemptMaxMs)} |`)
}
console.log(`\n${Object.entries(checks).map(([k, v]) => `${v.ok ? 'ok' : 'FAILED'}: ${k}`).join('\n')}`)
if (failures.length > 0) process.exitCode = 1
