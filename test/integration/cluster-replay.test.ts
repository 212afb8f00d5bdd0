/**
 * Exactly once at the end of a push, with real processes (fault injection): the leader killed after the delivery
 * of a received file and before its ACK(TRANS.END), or frozen between the lease check and the delivery and woken
 * after its successor delivered: `vectis send --restart` to the new leader ends with exit 0 and the directory holds
 * the file once, intact. `npm run bench:replay` runs the first for many rounds.
 */
import { it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { ClusterHarness } from '../helpers/cluster-harness.js'
import { ROOT } from '../helpers/daemon-process.js'
import { killedAfterRenameRound, vectisSend, writeReplayConfig } from '../helpers/replay-round.js'

const SUBNET = 64

it('a leader killed between the rename and ACK(TRANS.END): vectis send --restart on the new leader delivers the file exactly once', async (t) => {
  const dir = join(ROOT, '.tmp', `cluster-replay-${process.pid}`)
  mkdirSync(dir, { recursive: true })
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  writeFileSync(join(dir, 'payload.bin'), randomBytes(300 * 1024))
  const h = await ClusterHarness.create(t, {
    nodes: 3, subnet: SUBNET,
    env: { VECTIS_CONFIG: writeReplayConfig(dir), VECTIS_SHARED_DIR: join(dir, 'shared'), VECTIS_FAULT_INJECTION: 'kill-after-rename' }
  })
  await h.startAll()
  const r = await killedAfterRenameRound(h, { dir, payload: join(dir, 'payload.bin'), round: 1 })
  assert.equal(r.copies, 1)
})

it('a leader frozen past its lease check before the delivery, woken after the new leader delivered: the file stays delivered once, intact', async (t) => {
  const dir = join(ROOT, '.tmp', `cluster-pause-${process.pid}`)
  mkdirSync(dir, { recursive: true })
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  const payload = randomBytes(300 * 1024)
  writeFileSync(join(dir, 'payload.bin'), payload)
  const h = await ClusterHarness.create(t, {
    nodes: 3, subnet: SUBNET + 1,
    env: { VECTIS_CONFIG: writeReplayConfig(dir), VECTIS_SHARED_DIR: join(dir, 'shared'), VECTIS_FAULT_INJECTION: 'pause-before-rename' }
  })
  await h.startAll()
  await h.waitViewCommitted()
  const a = await h.waitFor(async () => await h.servingLeader(), { timeoutMs: 60_000, what: 'a leader serving PeSIT' })
  t.after(() => { if (h.member(a).running) h.resume(a) })
  const send = (host: string, restart: boolean): ReturnType<typeof vectisSend> => vectisSend({ host, payload: join(dir, 'payload.bin'), stateDir: join(dir, 'state'), restart, timeoutMs: 4000 })
  const first = send(h.member(a).ip, false)
  assert.equal(first.status, 1, 'no ACK(TRANS.END) from the frozen leader')
  await h.waitFor(() => /fault injection: pause-before-rename/.test(h.member(a).stderr), { what: 'the leader frozen between its lease check and the delivery' })
  const b = await h.waitFor(async () => await h.servingLeader([0, 1, 2].filter((i) => i !== a)), { timeoutMs: 60_000, what: 'a new leader serving PeSIT' })
  const again = send(h.member(b).ip, true)
  assert.equal(again.status, 0, `vectis send --restart: ${String(again.stdout)} ${String(again.stderr)}`)
  // The frozen leader wakes up and goes on with its delivery.
  h.resume(a)
  await h.waitFor(async () => (await h.status(a).catch(() => undefined))?.isLeader === false, { what: 'the old leader awake, not leading' })
  await h.waitForLog(a, (l) => /delivery as|was delivered meanwhile|not leader/.test(JSON.stringify(l)), { timeoutMs: 15_000, what: 'the old leader\'s late delivery refused' })
  const inbox = join(dir, 'shared', 'inbox')
  const files = readdirSync(inbox).filter((n) => !n.startsWith('.'))
  assert.equal(files.length, 1)
  assert.equal(createHash('sha256').update(readFileSync(join(inbox, files[0]!))).digest('hex'), createHash('sha256').update(payload).digest('hex'))
})
