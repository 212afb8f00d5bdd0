// The queue of transfers the cluster initiates (store/transfer-queue.ts): rows of the journal with their own life
// (queued → in progress → queued again or final), due in priority order, leader-only, replicated like any row.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startStore, tempDataDir, transfer } from '../helpers/store-fixtures.js'
import { InvalidTransferError, NotLeaderError } from '../../store/errors.js'
import type { EnqueueInput } from '../../store/transfer-queue.js'

const send = (over: Partial<EnqueueInput> = {}): EnqueueInput => ({
  epoch: 3, member: 'vectis-0', direction: 'send', partner: 'BANK', serverId: 'BANKSRV', remoteFile: 'PAYIN',
  filePath: '/shared/out/a.csv', request: { priority: 1, articleSize: 4096, articlesPerSync: 256 }, ...over
})

void test('queued rows are due at their time, urgent first, then the longest waiting; a row runs, retries from its sync point, completes', async (t) => {
  const { store, clock } = await startStore(t, tempDataDir(t))
  const q = store.journal.queue
  const t0 = clock.wallNow()
  const low = q.enqueue(send({ request: { priority: 2 } }))
  clock.advance(10)
  const later = q.enqueue(send({ notBefore: t0 + 60_000 }))
  const urgent = q.enqueue(send({ request: { priority: 0 } }))
  assert.deepEqual([low.status, low.initiator, low.attempts, low.server, low.virtualFile], ['queued', 'cluster', 0, 'BANKSRV', 'PAYIN'])
  assert.notEqual(low.transferId, urgent.transferId, 'each its own PI 13')
  assert.deepEqual(q.due(clock.wallNow(), 10).map((r) => r.id), [urgent.id, low.id], 'not before its time; urgent first')
  assert.equal(q.nextDueAt(), t0, 'the earliest queued row')
  assert.equal(q.depth(), 3)

  const run = q.start(urgent.id, { member: 'vectis-1', epoch: 3, source: '100:5:7' })
  assert.deepEqual([run.status, run.attempts, run.member, run.source, run.nextAttemptAt], ['in-progress', 1, 'vectis-1', '100:5:7', null])
  assert.throws(() => q.start(urgent.id, { member: 'vectis-1', epoch: 3 }), InvalidTransferError, 'an attempt already runs')
  store.journal.recordSyncPoint(urgent.id, { syncPoint: 2, offset: 8192 })
  const again = q.retryLater(urgent.id, { diagnostic: 'D3-301: network incident', at: clock.wallNow() + 5000 })
  assert.deepEqual([again.status, again.syncPoint, again.syncOffset, again.diagnostic], ['queued', 2, 8192, 'D3-301: network incident'], 'the sync point stays for the restart')
  assert.deepEqual(q.due(clock.wallNow(), 10).map((r) => r.id), [low.id], 'not due before its retry time')
  clock.advance(5000)
  assert.throws(() => q.start(urgent.id, { member: 'vectis-2', epoch: 4, source: '100:6:7' }), /source changed/, 'a source that changed is not resent mixed')
  const second = q.start(urgent.id, { member: 'vectis-2', epoch: 4, source: '100:5:7' })
  assert.equal(second.attempts, 2)
  assert.deepEqual(q.running().map((r) => r.id), [urgent.id])
  assert.deepEqual(store.journal.inProgress(), [], 'a partner\'s transfers only: the queue resumes its own')
  const done = store.journal.complete(urgent.id, { bytes: 100, sha256: 'a'.repeat(64) })
  assert.equal(done.status, 'completed')
  assert.equal(q.depth(), 2)
  assert.equal(later.status, 'queued')
})

void test('cancel stops a queued or running row for good; unconfirmed is final; final rows do not change', async (t) => {
  const { store } = await startStore(t, tempDataDir(t))
  const q = store.journal.queue
  const a = q.enqueue(send())
  const cancelled = q.cancel(a.id, 'cancelled by an operator')
  assert.deepEqual([cancelled.status, cancelled.diagnostic, cancelled.finishedAt !== null], ['cancelled', 'cancelled by an operator', true])
  assert.throws(() => q.cancel(a.id, 'again'), /cancelled and cannot change any more/)
  assert.throws(() => q.start(a.id, { member: 'vectis-0', epoch: 3 }), InvalidTransferError)
  const b = q.enqueue(send())
  q.start(b.id, { member: 'vectis-0', epoch: 3 })
  assert.equal(q.cancel(b.id, 'stop').status, 'cancelled', 'a running one too: its runner sees the status')
  const c = q.enqueue(send())
  assert.throws(() => q.unconfirmed(c.id, 'D2-204'), /queued, not in-progress/)
  q.start(c.id, { member: 'vectis-0', epoch: 3 })
  assert.equal(q.unconfirmed(c.id, 'D2-204: the partner has it already').status, 'unconfirmed')
  assert.equal(q.depth(), 0)
})

void test('bad input is refused before anything is written; a member past its lease cannot queue', async (t) => {
  const { store } = await startStore(t, tempDataDir(t))
  const q = store.journal.queue
  const before = store.journal.lastSeq()
  assert.throws(() => q.enqueue(send({ partner: '' })), InvalidTransferError)
  assert.throws(() => q.enqueue(send({ filePath: undefined })), /filePath/)
  assert.throws(() => q.enqueue(send({ request: { priority: 3 } })), /priority/)
  assert.throws(() => q.enqueue(send({ direction: 'sideways' as 'send' })), /direction/)
  assert.equal(store.journal.lastSeq(), before)
  store.journal.setLeaderCheck(() => false)
  assert.throws(() => q.enqueue(send()), NotLeaderError)
  assert.equal(store.journal.lastSeq(), before)
})

void test('the queue replicates with the journal: a standby reads the same queued rows, and a PI 13 queued is not handed out again', async (t) => {
  const leader = (await startStore(t, tempDataDir(t))).store
  const standby = (await startStore(t, tempDataDir(t))).store
  const a = leader.journal.queue.enqueue(send())
  leader.journal.queue.start(a.id, { member: 'vectis-0', epoch: 3 })
  leader.journal.queue.retryLater(a.id, { diagnostic: 'D2-207: busy', at: Date.UTC(2030, 0, 1) })
  const b = leader.journal.queue.enqueue(send({ direction: 'receive', filePath: undefined, request: { priority: 0, into: 'INBOX', remoteName: 'x.csv' } }))
  standby.journal.applyRun({ after: 0, epoch: 3, entries: leader.journal.changesSince(0, 100) })
  assert.deepEqual(standby.journal.get(a.id), leader.journal.get(a.id))
  assert.deepEqual(standby.journal.get(b.id), leader.journal.get(b.id))
  assert.deepEqual(standby.journal.queue.due(Date.UTC(2031, 0, 1), 10).map((r) => r.id), [b.id, a.id])
  const next = leader.journal.begin(transfer(3))
  assert.ok(![a.transferId, b.transferId].includes(next.transferId))
})

void test('sendsOf: every send of one path to one partner\'s file, whatever its status, with the identity it was queued or sent with', async (t) => {
  const { store, clock } = await startStore(t, tempDataDir(t))
  const q = store.journal.queue
  const path = '/shared/out/a.csv'
  const done = q.enqueue(send({ source: '10:1:7' }))
  q.start(done.id, { member: 'vectis-0', epoch: 3, source: '10:1:7' })
  store.journal.complete(done.id, { bytes: 10, sha256: 'b'.repeat(64) })
  clock.advance(10)
  const failed = q.enqueue(send({ source: '11:2:7' }))
  q.start(failed.id, { member: 'vectis-0', epoch: 3, source: '11:2:7' })
  store.journal.fail(failed.id, 'D2-205: unknown file')
  clock.advance(10)
  const live = q.enqueue(send())
  clock.advance(10)
  q.enqueue(send({ filePath: '/shared/out/b.csv' }))
  q.enqueue(send({ partner: 'OTHER' }))
  q.enqueue(send({ remoteFile: 'PAYOUT' }))
  store.journal.begin(transfer(3, { partner: 'BANK', virtualFile: 'PAYIN', direction: 'send', filePath: path, source: '10:1:7' }))
  assert.deepEqual(q.sendsOf({ partner: 'BANK', remoteFile: 'PAYIN', filePath: path }), [
    { id: done.id, status: 'completed', source: '10:1:7' },
    { id: failed.id, status: 'failed', source: '11:2:7' },
    { id: live.id, status: 'queued', source: null }
  ], 'oldest first; other paths, partners, remote files and a partner\'s own pull are not counted')
  assert.deepEqual(q.sendsOf({ partner: 'BANK', remoteFile: 'PAYIN', filePath: '/shared/out/none.csv' }), [])
})

void test('a send queued with its source identity keeps it: an attempt that finds the file changed cannot start; a fetch has no source', async (t) => {
  const { store } = await startStore(t, tempDataDir(t))
  const q = store.journal.queue
  const a = q.enqueue(send({ source: '100:5:7' }))
  assert.equal(a.source, '100:5:7')
  assert.throws(() => q.start(a.id, { member: 'vectis-0', epoch: 3, source: '101:6:7' }), /source changed/)
  assert.equal(q.start(a.id, { member: 'vectis-0', epoch: 3, source: '100:5:7' }).status, 'in-progress')
  assert.throws(() => q.enqueue(send({ direction: 'receive', filePath: undefined, source: '1:1:1' })), /a fetch has none/)
  assert.throws(() => q.enqueue(send({ source: '' })), InvalidTransferError)
})

void test('lastScheduledRun: the latest scheduled time of a schedule\'s rows, whatever their status; none for a schedule without rows', async (t) => {
  const { store } = await startStore(t, tempDataDir(t))
  const q = store.journal.queue
  const run = (id: string, at: string): EnqueueInput => send({ request: { priority: 1, schedule: { id, at }, localFile: 'OUT' } })
  assert.equal(q.lastScheduledRun('nightly'), undefined)
  q.enqueue(run('nightly', '2026-01-02T00:00:00.000Z'))
  const cancelled = q.enqueue(run('nightly', '2026-01-03T00:00:00.000Z'))
  q.cancel(cancelled.id, 'not this one')
  q.enqueue(run('nightly', '2026-01-01T00:00:00.000Z'))
  q.enqueue(run('hourly', '2026-01-05T10:00:00.000Z'))
  q.enqueue(send())
  assert.equal(q.lastScheduledRun('nightly'), '2026-01-03T00:00:00.000Z')
  assert.equal(q.lastScheduledRun('hourly'), '2026-01-05T10:00:00.000Z')
  assert.equal(q.lastScheduledRun('weekly'), undefined)
})

void test('a started transfer is due before new ones of its priority; the spacing agreed is kept for restarts until the partner cannot restart', async (t) => {
  const { store, clock } = await startStore(t, tempDataDir(t))
  const q = store.journal.queue
  const fresh = q.enqueue(send())
  clock.advance(10)
  const started = q.enqueue(send())
  q.start(started.id, { member: 'vectis-0', epoch: 3 })
  assert.equal(q.agreed(started.id, 64).request?.agreedArticlesPerSync, 64)
  store.journal.recordSyncPoint(started.id, { syncPoint: 2, offset: 524288 })
  q.retryLater(started.id, { diagnostic: 'D3-310: the member that ran it no longer does', at: clock.wallNow() })
  const urgent = q.enqueue(send({ request: { priority: 0 } }))
  assert.deepEqual(q.due(clock.wallNow(), 10).map((r) => r.id), [urgent.id, started.id, fresh.id], 'urgent first, then the one already started, then the longest waiting')
  q.start(started.id, { member: 'vectis-1', epoch: 4 })
  const forgotten = q.forgetRestart(started.id)
  assert.deepEqual([forgotten.syncPoint, forgotten.syncOffset, forgotten.request?.agreedArticlesPerSync, forgotten.request?.priority], [0, 0, undefined, 1])
  assert.throws(() => q.agreed(fresh.id, 64), /queued, not in-progress/, 'only during an attempt')
})
