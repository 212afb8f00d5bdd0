/**
 * Exactly once at the end of a push, and fencing of the shared directory, with real processes (fault injection):
 * the leader killed after the delivery of a received file and before its ACK(TRANS.END), or frozen between the
 * lease check and the delivery, or between the lease check and a checkpoint, and woken after its successor
 * delivered: `vectis send --restart` to the new leader ends with exit 0 and the directory holds the file once,
 * intact. `npm run bench:replay` runs the first for many rounds.
 */
import { it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { ClusterHarness } from '../helpers/cluster-harness.js'
import { ROOT } from '../helpers/daemon-process.js'
import { killedAfterRenameRound, vectisSend, writeReplayConfig } from '../helpers/replay-round.js'

const SUBNET = 74

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

/**
 * A leader frozen at `fault` while `vectis send` pushes a file of `kib` KiB to it (that push fails), then the restart
 * of the same transfer with `vectis send --restart` on the new leader (returned, with both leaders' indexes and the
 * frozen one's epoch: the test wakes it up).
 */
async function frozenLeaderRound (t: TestContext, o: { name: string, subnet: number, fault: string, kib: number }): Promise<{
  h: ClusterHarness, dir: string, payload: Buffer, a: number, epochA: number, again: ReturnType<typeof vectisSend>
}> {
  const dir = join(ROOT, '.tmp', `${o.name}-${process.pid}`)
  mkdirSync(dir, { recursive: true })
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  const payload = randomBytes(o.kib * 1024)
  writeFileSync(join(dir, 'payload.bin'), payload)
  const h = await ClusterHarness.create(t, {
    nodes: 3, subnet: o.subnet,
    env: { VECTIS_CONFIG: writeReplayConfig(dir), VECTIS_SHARED_DIR: join(dir, 'shared'), VECTIS_FAULT_INJECTION: o.fault }
  })
  await h.startAll()
  await h.waitViewCommitted()
  const a = await h.waitFor(async () => await h.servingLeader(), { timeoutMs: 60_000, what: 'a leader serving PeSIT' })
  t.after(() => { if (h.member(a).running) h.resume(a) })
  const epochA = (await h.status(a)).epoch as number
  const send = (host: string, restart: boolean): ReturnType<typeof vectisSend> => vectisSend({ host, payload: join(dir, 'payload.bin'), stateDir: join(dir, 'state'), restart, timeoutMs: 4000 })
  const first = send(h.member(a).ip, false)
  assert.equal(first.status, 1, 'the push to the frozen leader fails')
  await h.waitFor(() => h.member(a).stderr.includes(`fault injection: ${o.fault}`), { what: `the leader frozen at ${o.fault}` })
  const b = await h.waitFor(async () => await h.servingLeader([0, 1, 2].filter((i) => i !== a)), { timeoutMs: 60_000, what: 'a new leader serving PeSIT' })
  const again = send(h.member(b).ip, true)
  assert.equal(again.status, 0, `vectis send --restart: ${String(again.stdout)} ${String(again.stderr)}`)
  return { h, dir, payload, a, epochA, again }
}

/** The inbox holds one file, with the payload's content. */
function deliveredOnce (dir: string, payload: Buffer): void {
  const inbox = join(dir, 'shared', 'inbox')
  const files = readdirSync(inbox).filter((n) => !n.startsWith('.'))
  assert.equal(files.length, 1)
  assert.equal(createHash('sha256').update(readFileSync(join(inbox, files[0]!))).digest('hex'), createHash('sha256').update(payload).digest('hex'))
}

it('a leader frozen past its lease check before the delivery, woken after the new leader delivered: the file stays delivered once, intact', async (t) => {
  const { h, dir, payload, a } = await frozenLeaderRound(t, { name: 'cluster-pause', subnet: SUBNET + 1, fault: 'pause-before-rename', kib: 300 })
  // The frozen leader wakes up and goes on with its delivery.
  h.resume(a)
  await h.waitFor(async () => (await h.status(a).catch(() => undefined))?.isLeader === false, { what: 'the old leader awake, not leading' })
  await h.waitForLog(a, (l) => /delivery as|was delivered meanwhile|not leader/.test(JSON.stringify(l)), { timeoutMs: 15_000, what: 'the old leader\'s late delivery refused' })
  deliveredOnce(dir, payload)
})

it('a leader frozen past its lease check before a checkpoint, woken after the new leader resumed and delivered: its late checkpoint lands in an orphan, the file is intact', async (t) => {
  // 600 KiB with sync points every 64 KB: the leader freezes before the third.
  const { h, dir, payload, a, epochA, again } = await frozenLeaderRound(t, { name: 'cluster-pause-ckpt', subnet: SUBNET + 2, fault: 'pause-before-checkpoint', kib: 600 })
  // From the last sync point the frozen leader acknowledged (one before the frozen checkpoint, or more with a window).
  const resumed = /resumed at sync point (\d+) \(byte (\d+)\)/.exec(String(again.stdout))
  assert.ok(resumed !== null, String(again.stdout))
  const resumedAt = Number(resumed[1])
  assert.ok(resumedAt >= 1 && resumedAt < 3 && Number(resumed[2]) === resumedAt * 65536, resumed[0])
  // The frozen leader wakes up and goes on: it writes the checkpoint of sync point 3, then its journal refuses.
  const inbox = join(dir, 'shared', 'inbox')
  const stem = readdirSync(inbox).find((n) => n.endsWith(`.${epochA}.part`))?.slice(0, -`.${epochA}.part`.length)
  assert.equal(stem, undefined, 'the delivery removed the old leader\'s partial file')
  h.resume(a)
  await h.waitFor(async () => (await h.status(a).catch(() => undefined))?.isLeader === false, { what: 'the old leader awake, not leading' })
  const late = await h.waitFor(() => readdirSync(inbox).find((n) => n.endsWith(`.${epochA}.ckpt`)), { timeoutMs: 15_000, what: 'the old leader\'s late checkpoint' })
  const record = JSON.parse(readFileSync(join(inbox, late), 'utf8')) as { syncPoint: number, completed?: unknown }
  assert.ok(record.syncPoint >= 3 && record.syncPoint > resumedAt && record.completed === undefined, 'the late write happened, in a checkpoint of its own epoch')
  // The new leader's completion record is still the newest checkpoint: a replay would find the delivery.
  const newest = readdirSync(inbox).filter((n) => n.endsWith('.ckpt') && n.startsWith(late.slice(0, late.length - `.${epochA}.ckpt`.length)))
    .map((n) => ({ n, epoch: Number(/\.(\d+)\.ckpt$/.exec(n)?.[1]) })).sort((x, y) => y.epoch - x.epoch)[0]!
  assert.ok(newest.epoch > epochA)
  assert.ok((JSON.parse(readFileSync(join(inbox, newest.n), 'utf8')) as { completed?: unknown }).completed !== undefined)
  deliveredOnce(dir, payload)
})
