/**
 * Journal backups with real daemons: scheduled backups come from the leader only; `vectis backup create` on a
 * standby copies its replica; a new cluster (every data directory lost, the shared directory kept) restored with
 * `vectis backup restore` through a standby lists the same journal on every member, and goes on with new transfers.
 */
import { it } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ClusterHarness, type TransferRow } from '../helpers/cluster-harness.js'
import { ROOT } from '../helpers/daemon-process.js'
import { writeReplayConfig } from '../helpers/replay-round.js'
import { pushFile } from '../../transfer/push.js'

const SUBNET = 77
const PESIT_PORT = 5000
const run = promisify(execFile)

interface Manifest { id: string, member: string, transfers: number }

/** `vectis backup ...` against member i; returns stdout (a non-zero exit rejects with its stderr). */
async function vectisBackup (h: ClusterHarness, i: number, ...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [join(ROOT, 'dist', 'bin', 'vectis.js'), 'backup', ...args, '--url', h.httpUrl(i)],
    { env: { ...process.env, VECTIS_API_USER: h.apiUser, VECTIS_API_PASSWORD: h.apiPassword }, timeout: 60_000 })
  return stdout
}

/** What a restore keeps of a row: all but `seq` (the restoring leadership's log position). */
const history = (rows: TransferRow[]): unknown[] => rows.map(({ seq: _seq, ...r }) => r)

it('backups: scheduled on the leader only, taken on a standby, restored on a new cluster: the same journal everywhere', async (t) => {
  const dir = join(ROOT, '.tmp', `cluster-backup-${process.pid}`)
  mkdirSync(dir, { recursive: true })
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  const config = writeReplayConfig(dir)
  const payload = join(dir, 'payload.bin')
  writeFileSync(payload, randomBytes(8 * 1024))
  const shared = join(dir, 'shared')
  const env = { VECTIS_CONFIG: config, VECTIS_SHARED_DIR: shared }
  let nextId = 1
  const push = async (h: ClusterHarness, leader: number, count: number): Promise<void> => {
    for (let k = 0; k < count; k++) {
      await pushFile({ host: h.member(leader).ip, port: PESIT_PORT, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'PAYMENTS', source: payload, transferId: nextId++, timeoutMs: 20_000 })
    }
  }

  // The first cluster: every member has the schedule (every 2 s), only the leader acts on it.
  const a = await ClusterHarness.create(t, { nodes: 3, subnet: SUBNET, env: { ...env, VECTIS_BACKUP_SCHEDULE: '*/2 * * * * *', VECTIS_BACKUP_KEEP: '50' } })
  await a.startAll()
  const leaderA = await a.waitFor(async () => await a.servingLeader([0, 1, 2]), { timeoutMs: 60_000, what: 'a leader serving PeSIT' })
  await a.waitViewCommitted()
  await push(a, leaderA, 12)
  const before = await a.waitSameTransfers([0, 1, 2], 12, { what: 'the 12 transfers on every member' })
  const scheduled = await a.waitFor(async () => {
    const r = await a.http(leaderA, '/api/backups')
    const list = (r.body as { backups: Manifest[] }).backups
    return list.length >= 2 ? list : undefined
  }, { timeoutMs: 30_000, what: 'two scheduled backups' })
  assert.ok(scheduled.every((b) => b.member === a.member(leaderA).name), JSON.stringify(scheduled.map((b) => b.member)))
  const metrics = await fetch(a.httpUrl(leaderA, '/metrics')).then(async (r) => await r.text())
  assert.match(metrics, /vectis_backups_total\{result="ok"\} [1-9]/)

  // A standby's copy: its replica, caught up.
  const standby = [0, 1, 2].find((i) => i !== leaderA)!
  const created = await vectisBackup(a, standby, 'create')
  const id = /^backup (\S+): 12 transfers/.exec(created)?.[1]
  assert.ok(id !== undefined, created)
  assert.ok(id.endsWith(a.member(standby).name))
  assert.match(await vectisBackup(a, leaderA, 'list'), new RegExp(id))
  for (const i of [0, 1, 2]) await a.stop(i)

  // Every member's data directory lost: a new cluster on the same shared directory, restored through a standby.
  const b = await ClusterHarness.create(t, { nodes: 3, subnet: SUBNET + 1, env })
  await b.startAll()
  const leaderB = await b.waitFor(async () => await b.servingLeader([0, 1, 2]), { timeoutMs: 60_000, what: 'a leader of the new cluster' })
  await b.waitViewCommitted()
  assert.equal((await b.transfers(leaderB)).length, 0)
  const asked = [0, 1, 2].find((i) => i !== leaderB)!
  // A leadership change right after the cold start answers 409/502/503; running the restore again is the documented way.
  const first = await b.waitFor(async () => await vectisBackup(b, asked, 'restore', id).catch((err: Error) => {
    if (/HTTP (409|502|503)/.test(err.message)) return undefined
    throw err
  }), { timeoutMs: 60_000, what: 'the restore through a standby' })
  assert.match(first, /12 rows read, 12 added, 0 already here/)
  const restored = await b.waitSameTransfers([0, 1, 2], 12, { what: 'the restored journal on every member' })
  assert.deepEqual(history(restored), history(before))
  // Running it again changes nothing; the new cluster's own transfers take keys of their own.
  assert.match(await vectisBackup(b, leaderB, 'restore', id), /12 rows read, 0 added, 12 already here/)
  await push(b, leaderB, 3)
  const after = await b.waitSameTransfers([0, 1, 2], 15, { what: 'the restored and the new transfers on every member' })
  assert.equal(new Set(after.map((r) => r.id)).size, 15)
  // A backup that does not exist is refused with a reason.
  await assert.rejects(vectisBackup(b, asked, 'restore', '20990101T000000000Z-nobody'), /HTTP 404: no backup/)
})
