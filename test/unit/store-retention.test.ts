import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ManualClock } from '../helpers/manual-clock.js'
import { silentLogger } from '../../common/logger.js'
import { JournalRetention } from '../../store/retention.js'
import { startStore, tempDataDir, transfer } from '../helpers/store-fixtures.js'

const DAY = 24 * 60 * 60 * 1000
const SHA = 'ef'.repeat(32)

test('final transfers older than the retention are pruned with their log; restartable ones are kept', async (t) => {
  const clock = new ManualClock()
  const { store } = await startStore(t, tempDataDir(t), { retentionDays: 30 }, clock)
  const j = store.journal
  j.setLeaderCheck(() => true) // retention removes rows on the leader only
  const e = store.clusterState.raiseEpoch('vectis-0').number

  const oldDone = j.begin(transfer(e))
  j.recordSyncPoint(oldDone.id, { syncPoint: 1, offset: 10 })
  j.complete(oldDone.id, { bytes: 10, sha256: SHA })
  const oldFailed = j.begin(transfer(e))
  j.fail(oldFailed.id, 'D3-301')
  const oldInterrupted = j.begin(transfer(e))
  j.recordSyncPoint(oldInterrupted.id, { syncPoint: 1, offset: 10 })
  const keptInterrupted = j.interrupt(oldInterrupted.id, 'connection lost')
  const oldRunning = j.begin(transfer(e))

  clock.advance(20 * DAY)
  const recentDone = j.begin(transfer(e))
  const recent = j.complete(recentDone.id, { bytes: 1, sha256: SHA })
  const lastSeqBefore = j.lastSeq()

  clock.advance(11 * DAY) // the old ones finished 31 days ago, the recent one 11
  const r = await store.retention.runOnce()
  assert.equal(r.transfers, 2)
  assert.deepEqual(j.list({ limit: 100 }).map((x) => x.id).sort(), [oldInterrupted.id, oldRunning.id, recentDone.id].sort())
  assert.equal(j.get(oldDone.id), undefined)
  assert.equal(j.get(oldFailed.id), undefined)
  assert.deepEqual(j.get(oldInterrupted.id), keptInterrupted)
  assert.deepEqual(j.get(recentDone.id), recent)

  // The rows removed are logged, for every member to remove them too.
  const left = j.changesSince(0, 1000)
  const pruned = left.at(-1)!
  assert.equal(pruned.kind, 'prune')
  assert.deepEqual(pruned.kind === 'prune' && [...pruned.data.ids].sort(), [oldDone.id, oldFailed.id].sort())
  assert.equal(pruned.seq, lastSeqBefore + 1)
  // Old log entries are gone, except the newest of each remaining row: a standby catching up from 0 still
  // receives every row.
  const keys = left.flatMap((x) => x.kind === 'transfer' ? [x.data.id] : [])
  assert.deepEqual(keys.filter((k) => k === oldDone.id || k === oldFailed.id), [])
  assert.equal(keys.filter((k) => k === oldInterrupted.id).length, 1)
  assert.equal(left.find((x) => x.kind === 'transfer' && x.data.id === oldInterrupted.id)?.seq, keptInterrupted.seq)
  assert.equal(r.events, 1, 'the old epoch:raised event is pruned')
  assert.deepEqual(j.events(10), [])
  assert.equal(r.logEntries, lastSeqBefore - (left.length - 1))

  // Sequence numbers are never reused after pruning.
  assert.equal(j.lastSeq(), lastSeqBefore + 1)
  const after = j.begin(transfer(e))
  assert.equal(after.seq, lastSeqBefore + 2)

  // Nothing more to prune.
  assert.deepEqual(await store.retention.runOnce(), { transfers: 0, logEntries: 0, events: 0 })
})

test('pruning goes in bounded batches and stops at the per-run cap', async (t) => {
  const clock = new ManualClock()
  const { store } = await startStore(t, tempDataDir(t), {}, clock)
  store.journal.setLeaderCheck(() => true)
  for (let i = 0; i < 10; i++) {
    const r = store.journal.begin(transfer(1))
    store.journal.complete(r.id, { bytes: 1, sha256: SHA })
  }
  clock.advance(31 * DAY)
  const calls: number[] = []
  const retention = new JournalRetention({
    logger: silentLogger(),
    clock,
    journal: {
      pruneBatch: (cutoff, batch) => {
        const res = store.journal.pruneBatch(cutoff, batch)
        calls.push(res.transfers)
        return res
      }
    }
  }, { retentionDays: 30, batchSize: 3, maxBatches: 2 })
  assert.deepEqual(await retention.runOnce(), { transfers: 6, logEntries: 6, events: 0 })
  assert.deepEqual(calls, [3, 3])
  assert.equal(store.journal.list({ limit: 100 }).length, 4)
  // 20 log entries (a begin and a completion each) at 6 per run: the rest goes in later runs.
  let runs = 1
  for (; runs < 10; runs++) {
    calls.length = 0
    const res = await retention.runOnce()
    assert.ok(calls.length <= 2, 'never more batches per run than the cap')
    if (res.transfers === 0 && res.logEntries === 0) break
  }
  assert.equal(runs, 4)
  assert.equal(store.journal.list({ limit: 100 }).length, 0)
  // What is left is the prune entries (one per batch that removed rows), newer than the retention.
  const left = store.journal.changesSince(0, 100)
  assert.deepEqual(left.map((e) => e.kind), ['prune', 'prune', 'prune', 'prune'])
  assert.equal(left.flatMap((e) => e.kind === 'prune' ? e.data.ids : []).length, 10)
})

test('the background timer prunes on its own, is unref\'d, and stops', async (t) => {
  const clock = new ManualClock()
  const { store } = await startStore(t, tempDataDir(t), { retentionDays: 1, retention: { intervalMs: 5 } }, clock)
  store.journal.setLeaderCheck(() => true)
  const r = store.journal.begin(transfer(1))
  store.journal.complete(r.id, { bytes: 1, sha256: SHA })
  clock.advance(2 * DAY)
  const deadline = Date.now() + 5000
  while (store.journal.get(r.id) !== undefined && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  assert.equal(store.journal.get(r.id), undefined, 'pruned by the timer')
  await store.retention.stop()
  await store.retention.stop()
})

test('the retention must be a positive number of days', () => {
  const deps = { logger: silentLogger(), clock: new ManualClock(), journal: { pruneBatch: () => ({ transfers: 0, logEntries: 0, events: 0 }) } }
  assert.throws(() => new JournalRetention(deps, { retentionDays: 0 }), /VECTIS_JOURNAL_RETENTION_DAYS: must be a positive/)
  assert.throws(() => new JournalRetention(deps, { batchSize: 0 }), /batchSize/)
  assert.equal(new JournalRetention(deps).retentionDays, 30)
})
