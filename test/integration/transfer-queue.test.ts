/**
 * Transfers the cluster initiates (issue 16), short form: a standalone `vectisd` queues sends and fetches through its
 * API and runs them as a PeSIT requester against another `vectisd` playing the partner's server. Queued files arrive
 * once with their SHA-256; fetched files land under the local virtual file's pattern; bad requests are 400s naming
 * the field; a partner that refuses (wrong password, an unknown file) fails the entry with its diagnostic and no
 * retry; a partner that is down is retried with back-off until it comes back; a queued entry is cancelled.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { silentLogger } from '../../common/logger.js'
import { TcpLoadBalancer } from '../../dev-cluster/load-balancer.js'
import { DaemonProcess, freePorts, tempDir } from '../helpers/daemon-process.js'
import { waitFor } from '../helpers/wait.js'

const AUTH = { authorization: `Basic ${Buffer.from('vectis:pw').toString('base64')}` }
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

interface Row { id: string, status: string, transferId: number, attempts: number, syncPoint: number, diagnostic: string | null, sha256: string | null, bytes: number, initiator: string }

describe('the transfer queue: the cluster sends files to a partner', () => {
  let dir: { path: string, remove: () => Promise<void> }
  let cluster: DaemonProcess
  let partner: DaemonProcess | undefined
  let http = 0
  let partnerHttp = 0
  let partnerPesit = 0
  /** A slow way to the same partner (SLOWBANK), so that a send can be cancelled while it runs. */
  const relay = new TcpLoadBalancer({ logger: silentLogger() }, { host: '127.0.0.1', port: 0, bytesPerSecond: 256 * 1024 })
  const shared = (): string => join(dir.path, 'shared')
  const inbox = (): string => join(dir.path, 'partner-shared', 'inbox')

  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number, json: Record<string, unknown> }> => {
    const res = await fetch(`http://127.0.0.1:${http}${path}`, {
      method, headers: { ...AUTH, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {})
    })
    return { status: res.status, json: await res.json() as Record<string, unknown> }
  }
  const row = async (id: string): Promise<Row> => (await api('GET', `/api/transfers/${id}`)).json as unknown as Row
  const until = async (id: string, what: string, ok: (r: Row) => boolean, timeoutMs = 30_000): Promise<Row> => {
    let last: Row | undefined
    try {
      await waitFor(async () => { last = await row(id); return ok(last) }, { timeoutMs, intervalMs: 100, what: `${id} ${what}` })
    } catch (err) {
      const queueLog = cluster.logs.filter((l) => l.component === 'transfer:queue').slice(-8).map((l) => JSON.stringify(l)).join('\n')
      throw new Error(`${(err as Error).message}; the row: ${JSON.stringify(last)}; the queue's last log lines:\n${queueLog}`)
    }
    return last!
  }
  const startPartner = async (): Promise<void> => {
    partner = new DaemonProcess({
      VECTIS_HTTP_PORT: String(partnerHttp), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_DATA_DIR: join(dir.path, 'partner-data'),
      VECTIS_SHARED_DIR: join(dir.path, 'partner-shared'), VECTIS_CONFIG: join(dir.path, 'partner.yaml'), VECTIS_API_PASSWORD: 'pw'
    }, { cwd: dir.path }).start()
    await partner.waitLog((l) => l.msg === 'PeSIT servers started (leader)')
  }

  before(async () => {
    dir = await tempDir()
    let pesit: number
    ;[http, pesit, partnerHttp, partnerPesit] = await freePorts(4)
    relay.setEndpoint({ host: '127.0.0.1', port: partnerPesit })
    await relay.start()
    // The partner's server knows this cluster as requester VECTIS.
    writeFileSync(join(dir.path, 'partner.yaml'), `servers:
  - id: BANKSRV
    port: ${partnerPesit}
    syncIntervalKb: 64
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
    writeFileSync(join(dir.path, 'vectis.yaml'), `servers:
  - id: VECTIS
    port: ${pesit}
partners:
  - id: BANK
    password: bank123
    host: 127.0.0.1
    port: ${partnerPesit}
    serverId: BANKSRV
    remotePassword: ours123
  - id: SLOWBANK
    password: slow1234
    host: 127.0.0.1
    port: ${relay.port!}
    serverId: BANKSRV
    localId: VECTIS
    remotePassword: ours123
  - id: BADPW
    password: bad12345
    host: 127.0.0.1
    port: ${partnerPesit}
    serverId: BANKSRV
    localId: VECTIS
    remotePassword: wrong
files:
  - id: INBOX
    directory: inbox
  - id: FETCHED
    directory: fetched/\${partner}
`)
    mkdirSync(join(dir.path, 'shared', 'out'), { recursive: true })
    mkdirSync(join(dir.path, 'partner-shared', 'outbox'), { recursive: true })
    await startPartner()
    cluster = new DaemonProcess({
      VECTIS_HTTP_PORT: String(http), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_DATA_DIR: join(dir.path, 'data'),
      VECTIS_SHARED_DIR: shared(), VECTIS_CONFIG: join(dir.path, 'vectis.yaml'), VECTIS_API_PASSWORD: 'pw'
    }, { cwd: dir.path }).start()
    await cluster.waitLog((l) => l.msg === 'running the transfer queue')
  })
  after(async () => {
    await cluster?.kill()
    await partner?.kill()
    await relay.stop()
    await dir?.remove()
  })

  it('queued sends arrive once on the partner with their SHA-256, each row completed', async () => {
    const sizes = [0, 1, 100 * 1024 + 3, 3 * 1024 * 1024 + 5]
    const sent = new Map<string, Buffer>()
    for (const [i, size] of sizes.entries()) {
      const data = randomBytes(size)
      writeFileSync(join(shared(), 'out', `f${i}.bin`), data)
      const r = await api('POST', '/api/transfers', { direction: 'send', partner: 'BANK', file: 'PAYIN', path: `out/f${i}.bin`, priority: i % 3 })
      assert.equal(r.status, 202, JSON.stringify(r.json))
      sent.set(r.json.id as string, data)
    }
    for (const [id, data] of sent) {
      const done = await until(id, 'completed', (r) => r.status === 'completed')
      assert.equal(done.initiator, 'cluster')
      assert.equal(done.bytes, data.length)
      assert.equal(done.sha256, sha256(data))
      assert.deepEqual(readFileSync(join(inbox(), `VECTIS_PAYIN_${done.transferId}`)), data, 'on the partner under its transfer id, whole')
    }
    assert.equal(readdirSync(inbox()).filter((n) => !n.startsWith('.')).length, sizes.length, 'each file once')
  })

  it('queued fetches land under the local virtual file\'s pattern, whole; an unknown remote file fails without retrying', async () => {
    const outbox = join(dir.path, 'partner-shared', 'outbox')
    const a = randomBytes(2 * 1024 * 1024 + 9)
    const b = randomBytes(10)
    writeFileSync(join(outbox, 'a.dat'), a)
    writeFileSync(join(outbox, 'b.dat'), b)
    const named = await api('POST', '/api/transfers', { direction: 'fetch', partner: 'BANK', file: 'PAYOUT', remoteName: 'b.dat', into: 'FETCHED' })
    assert.equal(named.status, 202, JSON.stringify(named.json))
    const gotB = await until(named.json.id as string, 'completed', (r) => r.status === 'completed')
    const pathB = join(shared(), 'fetched', 'BANK', `BANK_FETCHED_${gotB.transferId}`)
    assert.deepEqual(readFileSync(pathB), b, 'the named file, under the pattern')
    assert.equal(gotB.sha256, sha256(b))
    const oldest = await api('POST', '/api/transfers', { direction: 'fetch', partner: 'BANK', file: 'PAYOUT', into: 'FETCHED', priority: 0 })
    assert.equal(oldest.status, 202)
    const gotA = await until(oldest.json.id as string, 'completed', (r) => r.status === 'completed')
    assert.deepEqual(readFileSync(join(shared(), 'fetched', 'BANK', `BANK_FETCHED_${gotA.transferId}`)), a, 'the oldest file not yet sent to us')
    const missing = await api('POST', '/api/transfers', { direction: 'fetch', partner: 'BANK', file: 'PAYOUT', remoteName: 'none.dat', into: 'FETCHED' })
    const failed = await until(missing.json.id as string, 'failed', (r) => r.status === 'failed')
    assert.match(failed.diagnostic ?? '', /^D2-205/)
    assert.equal(failed.attempts, 1)
  })

  it('a bad request is a 400 naming what is wrong, and queues nothing', async () => {
    writeFileSync(join(dir.path, 'outside.bin'), 'x')
    const cases: Array<[unknown, number, RegExp]> = [
      [{ direction: 'send', partner: 'BANK', file: 'PAYIN', path: join(dir.path, 'outside.bin') }, 400, /not under VECTIS_SHARED_DIR/],
      [{ direction: 'send', partner: 'BANK', file: 'PAYIN', path: '../outside.bin' }, 400, /not under VECTIS_SHARED_DIR/],
      [{ direction: 'send', partner: 'BANK', file: 'PAYIN', path: 'out/none.bin' }, 400, /no such file/],
      [{ direction: 'send', partner: 'BANK', file: 'PAYIN', path: 'out' }, 400, /not a regular file/],
      [{ direction: 'send', partner: 'NOBODY', file: 'PAYIN', path: 'out/f1.bin' }, 400, /partner "NOBODY" is not configured/],
      [{ direction: 'send', partner: 'BANK', file: 'F'.repeat(77), path: 'out/f1.bin' }, 400, /^file: /],
      [{ direction: 'send', partner: 'BANK', file: 'PAYIN', path: 'out/f1.bin', priority: 7 }, 400, /priority/],
      [{ direction: 'send', partner: 'BANK', file: 'PAYIN', path: 'out/f1.bin', notBefore: 'tomorrow' }, 400, /RFC 3339/],
      [{ direction: 'send', partner: 'BANK', file: 'PAYIN', path: 'out/f1.bin', colour: 'red' }, 400, /unknown field "colour"/],
      [{ direction: 'upload', partner: 'BANK', file: 'PAYIN' }, 400, /direction/],
      [{ direction: 'fetch', partner: 'BANK', file: 'PAYOUT', into: 'INBOX', path: 'out/f1.bin' }, 400, /path is for a send/],
      [{ direction: 'fetch', partner: 'BANK', file: 'PAYOUT' }, 400, /into/],
      [{ direction: 'fetch', partner: 'BANK', file: 'PAYOUT', into: 'NOFILE' }, 400, /into: "NOFILE" is not a local virtual file/],
      [{ direction: 'fetch', partner: 'BANK', file: 'PAYOUT', into: 'FETCHED', remoteName: '../x' }, 400, /remoteName/],
      [{ direction: 'fetch', partner: 'BANK', file: 'PAYOUT', into: 'FETCHED', remoteName: '.hidden' }, 400, /remoteName/],
      [{ direction: 'send', partner: 'BANK', file: 'PAYIN', path: 'out/f1.bin', into: 'FETCHED' }, 400, /for a fetch/],
      [[1, 2], 400, /JSON object/]
    ]
    const before = ((await api('GET', '/api/transfers?limit=1000')).json.transfers as unknown[]).length
    for (const [body, status, msg] of cases) {
      const r = await api('POST', '/api/transfers', body)
      assert.equal(r.status, status, JSON.stringify(body))
      assert.match(r.json.error as string, msg, JSON.stringify(body))
    }
    assert.equal(((await api('GET', '/api/transfers?limit=1000')).json.transfers as unknown[]).length, before)
  })

  it('a partner that refuses (wrong password) fails the entry with its diagnostic, without retrying', async () => {
    writeFileSync(join(shared(), 'out', 'refused.bin'), 'refused')
    const r = await api('POST', '/api/transfers', { direction: 'send', partner: 'BADPW', file: 'PAYIN', path: 'out/refused.bin' })
    assert.equal(r.status, 202)
    const failed = await until(r.json.id as string, 'failed', (x) => x.status === 'failed')
    assert.match(failed.diagnostic ?? '', /^D3-304/)
    assert.equal(failed.attempts, 1, 'no retry loop')
  })

  it('a partner that is down: retried with back-off, sent once it is back', async () => {
    await partner!.kill()
    writeFileSync(join(shared(), 'out', 'later.bin'), randomBytes(50_000))
    const r = await api('POST', '/api/transfers', { direction: 'send', partner: 'BANK', file: 'PAYIN', path: 'out/later.bin' })
    assert.equal(r.status, 202)
    const id = r.json.id as string
    const waiting = await until(id, 'retried at least twice', (x) => x.status === 'queued' && x.attempts >= 2)
    assert.match(waiting.diagnostic ?? '', /^D3-310/)
    await startPartner()
    const done = await until(id, 'completed once the partner is back', (x) => x.status === 'completed')
    assert.deepEqual(readFileSync(join(inbox(), `VECTIS_PAYIN_${done.transferId}`)), readFileSync(join(shared(), 'out', 'later.bin')))
  })

  it('DELETE of a running send stops it with IDT (cancelled by the requester): the partner records it failed and keeps no file', async () => {
    // 1 MiB through 256 KiB/s: the IDT, behind what the sockets already hold of the data, arrives within 4 s.
    writeFileSync(join(shared(), 'out', 'slow.bin'), randomBytes(1024 * 1024))
    const r = await api('POST', '/api/transfers', { direction: 'send', partner: 'SLOWBANK', file: 'PAYIN', path: 'out/slow.bin' })
    assert.equal(r.status, 202)
    const id = r.json.id as string
    const running = await until(id, 'running past its first sync point', (x) => x.status === 'in-progress' && x.syncPoint > 0)
    const c = await api('DELETE', `/api/transfers/${id}`)
    assert.equal(c.status, 200)
    assert.equal(c.json.status, 'cancelled')
    await cluster.waitLog((l) => l.transfer === id && l.msg === 'attempt stopped: cancelled', 20_000)
    // The IDT reaches the partner after what the relay still holds of the data; it records the end once it got it.
    const there = await waitFor(async () => {
      const rows = await fetch(`http://127.0.0.1:${partnerHttp}/api/transfers?limit=100`, { headers: AUTH }).then(async (x) => await x.json() as { transfers: Array<{ transferId: number, status: string, diagnostic: string | null }> })
      const row = rows.transfers.find((x) => x.transferId === running.transferId)
      return row?.status === 'in-progress' ? undefined : row
    }, { timeoutMs: 20_000, intervalMs: 100, what: 'the partner to record the cancelled transfer' }).catch((err: unknown) => {
      const log = cluster.logs.filter((l) => l.transfer === id).map((l) => JSON.stringify(l)).join('\n')
      throw new Error(`${(err as Error).message}; the attempt's log:\n${log}`)
    })
    assert.equal(there?.status, 'failed', JSON.stringify(there))
    assert.match(there?.diagnostic ?? '', /IDT code 16/)
    const stopped = cluster.logs.find((l) => l.transfer === id && l.msg === 'queued transfer failed: retrying later')
    assert.equal(stopped, undefined, 'not retried')
    assert.ok(!readdirSync(inbox()).includes(`VECTIS_PAYIN_${running.transferId}`), 'no file delivered')
  })

  it('DELETE of a running fetch stops it with IDT too: the partner records its send failed, nothing is left here', async () => {
    writeFileSync(join(dir.path, 'partner-shared', 'outbox', 'slow.dat'), randomBytes(1024 * 1024))
    const r = await api('POST', '/api/transfers', { direction: 'fetch', partner: 'SLOWBANK', file: 'PAYOUT', remoteName: 'slow.dat', into: 'FETCHED' })
    assert.equal(r.status, 202)
    const id = r.json.id as string
    await until(id, 'running past its first sync point', (x) => x.status === 'in-progress' && x.syncPoint > 0)
    assert.equal((await api('DELETE', `/api/transfers/${id}`)).status, 200)
    await cluster.waitLog((l) => l.transfer === id && l.msg === 'attempt stopped: cancelled', 20_000)
    const there = await waitFor(async () => {
      const rows = await fetch(`http://127.0.0.1:${partnerHttp}/api/transfers?limit=100`, { headers: AUTH }).then(async (x) => await x.json() as { transfers: Array<{ filePath: string | null, direction: string, status: string, diagnostic: string | null }> })
      const row = rows.transfers.find((x) => x.direction === 'send' && x.filePath?.endsWith('slow.dat') === true)
      return row === undefined || row.status === 'in-progress' ? undefined : row
    }, { timeoutMs: 20_000, intervalMs: 100, what: 'the partner to record the cancelled pull' })
    assert.equal(there.status, 'failed', JSON.stringify(there))
    assert.match(there.diagnostic ?? '', /IDT code 16/)
    const landed = readdirSync(join(shared(), 'fetched', 'SLOWBANK'))
    assert.deepEqual(landed, [], `nothing left of the cancelled fetch: ${landed.join(', ')}`)
  })

  it('DELETE cancels a queued entry; a partner\'s transfer or an unknown id cannot be cancelled', async () => {
    const r = await api('POST', '/api/transfers', { direction: 'send', partner: 'BANK', file: 'PAYIN', path: 'out/f1.bin', notBefore: new Date(Date.now() + 3_600_000).toISOString() })
    assert.equal(r.status, 202)
    const id = r.json.id as string
    assert.equal((await row(id)).status, 'queued')
    const c = await api('DELETE', `/api/transfers/${id}`)
    assert.equal(c.status, 200)
    assert.equal(c.json.status, 'cancelled')
    assert.equal((await api('DELETE', `/api/transfers/${id}`)).status, 409, 'final already')
    assert.equal((await api('DELETE', '/api/transfers/99-99')).status, 404)
  })
})
