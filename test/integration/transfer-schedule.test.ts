/**
 * Schedules (issue 16), short form: a standalone `vectisd` with a schedule firing every two seconds sends the `*.csv`
 * files of a local send virtual file to a partner, another `vectisd` playing the partner's server. The files arrive
 * once each with their content; hidden, temporary and other names are never sent; the runs after that queue nothing
 * (the journal knows the files were sent); a file dropped later is sent by a later run.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DaemonProcess, freePorts, tempDir, type LogLine } from '../helpers/daemon-process.js'
import { waitFor } from '../helpers/wait.js'

const AUTH = { authorization: `Basic ${Buffer.from('vectis:pw').toString('base64')}` }
const SCHEDULE = 'OUT-BANK-PAYIN'

interface Row {
  id: string
  status: string
  transferId: number
  filePath: string | null
  initiator: string
  request: { schedule?: { id: string, at: string }, localFile?: string, priority: number } | null
}

describe('schedules: the leader sends the matching files of a directory to a partner at each run', () => {
  let dir: { path: string, remove: () => Promise<void> }
  let cluster: DaemonProcess | undefined
  let partner: DaemonProcess | undefined
  let http = 0
  const outbox = (): string => join(dir.path, 'shared', 'out', 'BANK')
  const inbox = (): string => join(dir.path, 'partner-shared', 'inbox')
  const sent = new Map<string, Buffer>()

  /** Writes `name` as producers do: under a hidden temporary name, then renamed. */
  const drop = (name: string, data: Buffer): void => {
    const tmp = join(outbox(), `.${name}.writing`)
    writeFileSync(tmp, data)
    renameSync(tmp, join(outbox(), name))
  }
  const rows = async (): Promise<Row[]> => {
    const res = await fetch(`http://127.0.0.1:${http}/api/transfers?limit=1000`, { headers: AUTH })
    assert.equal(res.status, 200)
    return ((await res.json()) as { transfers: Row[] }).transfers.filter((r) => r.initiator === 'cluster')
  }
  /** The partner's received files (not its hidden partial files), by content. */
  const received = (): Buffer[] => readdirSync(inbox()).filter((n) => !n.startsWith('.')).map((n) => readFileSync(join(inbox(), n)))
  const runs = (): LogLine[] => (cluster?.logs ?? []).filter((l) => l.msg === 'schedule ran' && l.schedule === SCHEDULE)
  /** Polls until every file of `sent` is completed on a row and on the partner, once. */
  const allArrived = async (what: string): Promise<Row[]> => {
    let last: Row[] = []
    try {
      return await waitFor(async () => {
        last = await rows()
        const done = last.filter((r) => r.status === 'completed')
        return done.length === sent.size && received().length === sent.size ? done : undefined
      }, { timeoutMs: 30_000, intervalMs: 100, what })
    } catch (err) {
      const log = (cluster?.logs ?? []).filter((l) => l.component === 'transfer:queue' || l.component === 'transfer:schedules').slice(-10).map((l) => JSON.stringify(l)).join('\n')
      throw new Error(`${(err as Error).message}; rows: ${JSON.stringify(last)}; last log lines:\n${log}`)
    }
  }

  before(async () => {
    dir = await tempDir()
    let pesit: number, partnerHttp: number, partnerPesit: number
    ;[http, pesit, partnerHttp, partnerPesit] = await freePorts(4)
    // The partner's server knows this cluster as requester VECTIS.
    writeFileSync(join(dir.path, 'partner.yaml'), `servers:
  - id: BANKSRV
    port: ${partnerPesit}
partners:
  - id: VECTIS
    password: ours123
    access: write
files:
  - id: PAYIN
    directory: inbox
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
files:
  - id: OUT
    direction: send
    directory: out/\${partner}
schedules:
  - cron: "*/2 * * * * *"
    partner: BANK
    file: OUT
    pattern: "*.csv"
    remoteFile: PAYIN
`)
    partner = new DaemonProcess({
      VECTIS_HTTP_PORT: String(partnerHttp), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_DATA_DIR: join(dir.path, 'partner-data'),
      VECTIS_SHARED_DIR: join(dir.path, 'partner-shared'), VECTIS_CONFIG: join(dir.path, 'partner.yaml'), VECTIS_API_PASSWORD: 'pw'
    }, { cwd: dir.path }).start()
    await partner.waitLog((l) => l.msg === 'PeSIT servers started (leader)')
    cluster = new DaemonProcess({
      VECTIS_HTTP_PORT: String(http), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_DATA_DIR: join(dir.path, 'data'),
      VECTIS_SHARED_DIR: join(dir.path, 'shared'), VECTIS_CONFIG: join(dir.path, 'vectis.yaml'), VECTIS_API_PASSWORD: 'pw'
    }, { cwd: dir.path }).start()
    await cluster.waitLog((l) => l.msg === 'schedule on' && l.schedule === SCHEDULE)
  })
  after(async () => {
    await cluster?.kill()
    await partner?.kill()
    await dir?.remove()
  })

  it('the matching files arrive once each with their content; other names are never sent', async () => {
    mkdirSync(outbox(), { recursive: true })
    for (const name of ['a.csv', 'b.csv', 'c.csv']) {
      const data = randomBytes(20_000 + sent.size * 70_000)
      sent.set(name, data)
      drop(name, data)
    }
    for (const name of ['.hidden.csv', 'x.tmp', 'y.txt']) writeFileSync(join(outbox(), name), name)
    const done = await allArrived('the three csv files on the partner')
    for (const r of done) {
      const name = r.filePath!.slice(outbox().length + 1)
      assert.ok(sent.has(name), `${r.filePath} is one of the csv files`)
      assert.equal(r.request?.schedule?.id, SCHEDULE)
      assert.equal(r.request?.localFile, 'OUT')
      assert.equal(r.request?.priority, 1)
      assert.ok(Date.parse(r.request.schedule.at) % 2000 === 0, `the run's scheduled time, not the moment it ran: ${r.request.schedule.at}`)
      assert.deepEqual(readFileSync(join(inbox(), `VECTIS_PAYIN_${r.transferId}`)), sent.get(name), `${name} arrived whole`)
    }
    assert.deepEqual(new Set(done.map((r) => r.filePath)).size, 3, 'each file once')
  })

  it('the runs after that queue nothing: the journal knows the files were sent', async () => {
    const lastAt = (await rows()).map((r) => r.request!.schedule!.at).sort().at(-1)!
    const later = await waitFor(() => {
      const rs = runs().filter((l) => (l.at as string) > lastAt && l.finished === true)
      return rs.length >= 2 ? rs : undefined
    }, { timeoutMs: 15_000, intervalMs: 100, what: 'two runs after the files were queued' })
    for (const l of later) assert.deepEqual([l.matched, l.queued, l.alreadyQueued], [3, 0, 3], JSON.stringify(l))
    assert.equal((await rows()).length, 3, 'no new row')
    assert.equal(received().length, 3, 'nothing sent twice')
  })

  it('a file dropped later is sent by a later run', async () => {
    const before = new Set((await rows()).map((r) => r.id))
    const data = randomBytes(5000)
    sent.set('d.csv', data)
    drop('d.csv', data)
    const done = await allArrived('d.csv on the partner')
    const d = done.filter((r) => !before.has(r.id))
    assert.equal(d.length, 1)
    assert.equal(d[0]!.filePath, join(outbox(), 'd.csv'))
    assert.deepEqual(readFileSync(join(inbox(), `VECTIS_PAYIN_${d[0]!.transferId}`)), data)
    const earlier = done.filter((r) => before.has(r.id)).map((r) => r.request!.schedule!.at).sort().at(-1)!
    assert.ok(d[0]!.request!.schedule!.at > earlier, 'queued by a run after the first ones')
  })
})
