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
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { bankYaml, MEMBER_PESIT_PORT, startQueueCluster, type QueueRow } from '../helpers/queue-cluster.js'
import { waitFor } from '../helpers/wait.js'

const FILES = 8
const FILE_BYTES = 3 * 1024 * 1024 + 1234
/** Per connection: a 3 MiB file takes about 2 s, so the kill lands mid-transfer. */
const RELAY_BYTES_PER_S = 1536 * 1024

void test('queued sends survive a kill -9 of the leader: each file once on the partner, resumed from its last sync point', { timeout: 180_000 }, async (t) => {
  const qc = await startQueueCluster(t, {
    baseIp: '127.0.86.10',
    relayBytesPerSecond: RELAY_BYTES_PER_S,
    partnerYaml: (port) => bankYaml(port, 'sends'),
    clusterYaml: (relayPort) => `servers:
  - id: VECTIS
    port: ${MEMBER_PESIT_PORT}
partners:
  - id: BANK
    password: bank123
    host: 127.0.0.1
    port: ${relayPort}
    serverId: BANKSRV
    remotePassword: ours123
    maxConnections: 4
files:
  - id: INBOX
    directory: inbox
`
  })
  const { dc, leader } = qc

  // The files, queued half on the leader, half on a standby (forwarded).
  const out = join(dc.sharedDir, 'out')
  await mkdir(out, { recursive: true })
  const standby = [0, 1, 2].find((i) => i !== leader)!
  const files = new Map<string, Buffer>()
  for (let i = 0; i < FILES; i++) {
    const data = randomBytes(FILE_BYTES + i)
    await writeFile(join(out, `f${i}.bin`), data)
    const r = await qc.api(i % 2 === 0 ? leader : standby, 'POST', '/api/transfers', { direction: 'send', partner: 'BANK', file: 'PAYIN', path: `out/f${i}.bin` })
    assert.equal(r.status, 202, JSON.stringify(r.json))
    files.set(r.json.id as string, data)
  }

  // Killed while transfers run with acknowledged sync points.
  const rows = async (i: number): Promise<QueueRow[]> => (await qc.rows(i)).filter((r) => files.has(r.id))
  let seen: QueueRow[] = []
  const atKill = await waitFor(async () => {
    seen = await rows(leader)
    return seen.some((r) => r.status === 'in-progress' && r.syncPoint > 0) ? seen : undefined
  }, { timeoutMs: 60_000, intervalMs: 50, what: 'a queued transfer in progress with an acknowledged sync point' }).catch(async (err: unknown) => {
    throw new Error(`${(err as Error).message}; rows: ${JSON.stringify(seen.map((r) => [r.id, r.status, r.syncPoint, r.attempts, r.diagnostic]))}; the leader's queue log:\n${await qc.lastLog(leader, ['transfer:queue'], 6)}`)
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
  const inbox = join(qc.partnerShared, 'inbox')
  const names = (await readdir(inbox)).filter((n) => !n.startsWith('.'))
  assert.equal(names.length, FILES, `one file per queued transfer: ${names.join(', ')}`)
  for (const r of done) {
    const data = files.get(r.id)!
    assert.equal(r.sha256, createHash('sha256').update(data).digest('hex'))
    assert.deepEqual(await readFile(join(inbox, `VECTIS_PAYIN_${r.transferId}`)), data, `${r.id} on the partner under its PI 13`)
  }
  // Each transfer interrupted with a sync point resumed from it or later, not from the start.
  const resumed = new Map<string, number>()
  for (const l of await qc.logLines(survivors)) {
    if (l.msg === 'queued file sent') resumed.set(l.transfer as string, l.resumedAt as number)
  }
  for (const r of interrupted.filter((x) => x.syncPoint > 0)) {
    assert.ok((resumed.get(r.id) ?? -1) >= r.syncOffset, `${r.id}: resumed at ${resumed.get(r.id)}, its row had sync offset ${r.syncOffset} at the kill`)
  }
  t.diagnostic(`resumed at: ${interrupted.map((r) => `${r.id} ${resumed.get(r.id)} ≥ ${r.syncOffset}`).join('; ')}`)
})
