/**
 * The set-up of the transfer queue's failover tests (issue 16): a dev cluster of built `vectisd` members on a loopback
 * range of the test file's own, without automatic restarts (a killed member stays down until `restartNow`), whose
 * transfers go to a partner, a standalone `vectisd` on 127.0.0.1 reached through a rate-capped relay so that each one
 * lasts long enough for a fault to land in its middle. Everything started here is stopped by `t.after`, even when the
 * set-up or the test fails.
 */
import type { TestContext } from 'node:test'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../common/logger.js'
import { DevCluster } from '../../dev-cluster/dev-cluster.js'
import { TcpLoadBalancer } from '../../dev-cluster/load-balancer.js'
import { servingLeader } from '../../bench/bench-util.js'
import type { InitiatedRequest } from '../../store/journal-records.js'
import { DaemonProcess, freePorts, ROOT, type LogLine } from './daemon-process.js'
import { waitFor } from './wait.js'

const VECTISD = join(ROOT, 'dist', 'bin', 'vectisd.js')
const HTTP_PORT = 8080
/** The members' own server (the configuration's `servers`), on each member's address. */
export const MEMBER_PESIT_PORT = 5000

/**
 * The partner's configuration: server BANKSRV (sync points every 256 KiB) knowing the cluster as requester VECTIS,
 * with a receive virtual file PAYIN (`inbox`) for the cluster's sends, or a send virtual file PAYOUT (`outbox`) for
 * its fetches.
 */
export function bankYaml (port: number, serves: 'sends' | 'fetches'): string {
  const files = serves === 'sends' ? '  - id: PAYIN\n    directory: inbox\n' : '  - id: PAYOUT\n    direction: send\n    directory: outbox\n'
  return `servers:
  - id: BANKSRV
    port: ${port}
    syncIntervalKb: 256
partners:
  - id: VECTIS
    password: ours123
    access: ${serves === 'sends' ? 'write' : 'both'}
files:
${files}`
}
const API_USER = 'ops'
const API_PASSWORD = 'queue-test'
const AUTH = { authorization: `Basic ${Buffer.from(`${API_USER}:${API_PASSWORD}`).toString('base64')}` }

/** A row of GET /api/transfers, as these tests read it. */
export interface QueueRow {
  id: string
  status: string
  direction: 'send' | 'receive'
  initiator: string
  transferId: number
  attempts: number
  bytes: number
  syncPoint: number
  syncOffset: number
  sha256: string | null
  filePath: string | null
  diagnostic: string | null
  finishedAt: string | null
  request: InitiatedRequest | null
}

export interface QueueClusterInit {
  /** the address of member 0; member i gets the last octet + i */
  baseIp: string
  nodes?: number
  /** the partner's configuration, given its PeSIT port (127.0.0.1) */
  partnerYaml: (pesitPort: number) => string
  /** the cluster's configuration, given the relay's port: the partner's `port` as the cluster calls it */
  clusterYaml: (relayPort: number) => string
  /** the relay's cap, per connection and direction */
  relayBytesPerSecond: number
}

export interface QueueCluster {
  work: string
  dc: DevCluster
  /** the partner's VECTIS_SHARED_DIR */
  partnerShared: string
  /** the leader serving once every member runs */
  leader: number
  api: (i: number, method: string, path: string, body?: unknown) => Promise<{ status: number, json: Record<string, unknown> }>
  /** the rows the cluster initiated, in member i's journal */
  rows: (i: number) => Promise<QueueRow[]>
  /** the JSON lines of these members' logs (a restarted member's log holds every run of it) */
  logLines: (members: readonly number[]) => Promise<LogLine[]>
  /** the last lines of member i's log from these components, for a failure's message */
  lastLog: (i: number, components: readonly string[], n?: number) => Promise<string>
}

export async function startQueueCluster (t: TestContext, init: QueueClusterInit): Promise<QueueCluster> {
  if (!existsSync(VECTISD)) throw new Error(`${VECTISD} is missing: run npm run build first`)
  const work = await mkdtemp(join(tmpdir(), 'vectis-queue-failover-'))
  const cleanups: Array<() => Promise<void> | void> = []
  t.after(async () => {
    for (const c of cleanups.reverse()) {
      try { await c() } catch { /* the next one still runs */ }
    }
    await rm(work, { recursive: true, force: true })
  })

  const [partnerHttp, partnerPesit] = await freePorts(2)
  await writeFile(join(work, 'partner.yaml'), init.partnerYaml(partnerPesit))
  const partnerShared = join(work, 'partner-shared')
  const partner = new DaemonProcess({
    VECTIS_HTTP_PORT: String(partnerHttp), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_DATA_DIR: join(work, 'partner-data'),
    VECTIS_SHARED_DIR: partnerShared, VECTIS_CONFIG: join(work, 'partner.yaml'), VECTIS_API_PASSWORD: 'pw'
  }, { cwd: work }).start()
  cleanups.push(async () => { await partner.kill() })
  await partner.waitLog((l) => l.msg === 'PeSIT servers started (leader)')
  const relay = new TcpLoadBalancer({ logger: silentLogger() }, { host: '127.0.0.1', port: 0, bytesPerSecond: init.relayBytesPerSecond })
  relay.setEndpoint({ host: '127.0.0.1', port: partnerPesit, name: 'partner' })
  await relay.start()
  cleanups.push(async () => { await relay.stop() })

  await writeFile(join(work, 'vectis.yaml'), init.clusterYaml(relay.port!))
  const nodes = init.nodes ?? 3
  const dc = new DevCluster({ logger: silentLogger() }, {
    nodes, baseIp: init.baseIp, dataDir: join(work, 'cluster'), lbHost: '127.0.0.1', lbPort: 0, httpPort: HTTP_PORT, clusterPort: 7800,
    configFile: join(work, 'vectis.yaml'), demoPesitPort: MEMBER_PESIT_PORT, apiUser: API_USER, apiPassword: API_PASSWORD, demoPassword: 'unused12',
    clusterSecret: 'queue-failover-test-secret-01234', logLevel: 'info', restart: false, memberCommand: [process.execPath, VECTISD]
  })
  cleanups.push(async () => { await dc.stop() })
  await dc.start()
  const leader = await servingLeader(dc, 60_000)

  const api = async (i: number, method: string, path: string, body?: unknown): Promise<{ status: number, json: Record<string, unknown> }> => {
    const res = await fetch(`http://${dc.snapshot()[i]!.ip}:${HTTP_PORT}${path}`, {
      method, headers: { ...AUTH, 'content-type': 'application/json' }, signal: AbortSignal.timeout(20_000), ...(body !== undefined ? { body: JSON.stringify(body) } : {})
    })
    return { status: res.status, json: await res.json() as Record<string, unknown> }
  }
  const rows = async (i: number): Promise<QueueRow[]> => {
    const r = await api(i, 'GET', '/api/transfers?limit=1000')
    if (r.status !== 200) throw new Error(`GET /api/transfers on member ${i}: ${r.status} ${JSON.stringify(r.json)}`)
    return (r.json.transfers as QueueRow[]).filter((x) => x.initiator === 'cluster')
  }
  const logLines = async (members: readonly number[]): Promise<LogLine[]> => {
    const texts = await Promise.all(members.map(async (i) => await readFile(dc.snapshot()[i]!.logFile, 'utf8').catch(() => '')))
    // Complete lines only: a running member may be in the middle of writing the last one.
    return texts.flatMap((text) => text.split('\n').slice(0, -1).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine))
  }
  const lastLog = async (i: number, components: readonly string[], n = 8): Promise<string> =>
    (await logLines([i])).filter((l) => components.includes(l.component ?? '')).slice(-n).map((l) => JSON.stringify(l)).join('\n')
  return { work, dc, partnerShared, leader, api, rows, logLines, lastLog }
}

/**
 * The member among `members` that leads and serves once they all agree on it (each one's status names it, the load
 * balancer follows it), and whose transfer queue runs.
 */
export async function leaderAmong (qc: QueueCluster, members: readonly number[], timeoutMs = 30_000): Promise<number> {
  return await waitFor(async () => {
    const ms = qc.dc.snapshot()
    if (members.some((i) => ms[i]?.state !== 'running' || ms[i]?.status === undefined)) return undefined
    const leaders = members.filter((i) => ms[i]!.status!.isLeader && ms[i]!.status!.servers?.[0]?.running === true)
    if (leaders.length !== 1) return undefined
    const l = ms[leaders[0]!]!
    if (members.some((i) => ms[i]!.status!.leader !== l.name) || qc.dc.lb.current()?.name !== l.name) return undefined
    return leaders[0]!
  }, { timeoutMs, intervalMs: 100, what: `one leader among members ${members.join(', ')}` })
}
