// The journal's side of replication: runs of the leader's log applied on another member (Journal.applyRun), the
// position, and a new leader's unconfirmed tail (Journal.truncateAfterPosition).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ReplicationConflictError } from '../../store/errors.js'
import type { LogEntry } from '../../store/journal.js'
import { ManualClock } from '../helpers/manual-clock.js'
import { startStore, tempDataDir, transfer } from '../helpers/store-fixtures.js'

const SHA = 'ab'.repeat(32)
const DAY = 24 * 60 * 60 * 1000

test('a member applying the leader\'s log in runs ends with the same rows and log; applying again changes nothing', async (t) => {
  const leader = (await startStore(t, tempDataDir(t))).store
  const standby = (await startStore(t, tempDataDir(t))).store
  const e = leader.clusterState.raiseEpoch('vectis-0').number
  const appended: LogEntry[] = []
  leader.journal.onAppended((x) => { appended.push(x) })
  for (let i = 0; i < 6; i++) {
    const r = leader.journal.begin(transfer(e, { partner: `P${i}` }))
    for (let s = 1; s <= 3; s++) leader.journal.recordSyncPoint(r.id, { syncPoint: s, offset: s * 100 })
    if (i % 2 === 0) leader.journal.complete(r.id, { bytes: 300, sha256: SHA })
  }
  // What the leader announces as it appends is exactly its log.
  assert.deepEqual(appended, leader.journal.changesSince(0, 1000))
  assert.equal(leader.journal.position(), leader.journal.lastSeq())
  // Ship in runs of 5, the way a member catches up.
  for (let guard = 0; guard < 100; guard++) {
    const after = standby.journal.position()
    const page = leader.journal.changesSince(after, 5)
    if (page.length === 0) break
    const r = standby.journal.applyRun({ after, epoch: e, entries: page })
    assert.equal(r.applied, page.length)
    assert.equal(r.position, page.at(-1)!.seq)
  }
  assert.equal(standby.journal.position(), leader.journal.position())
  assert.deepEqual(standby.journal.list({ limit: 100 }), leader.journal.list({ limit: 100 }))
  assert.deepEqual(standby.journal.changesSince(0, 1000), leader.journal.changesSince(0, 1000))

  // Idempotent: the whole log again, and an overlapping window, are skipped; the position stays.
  const all = leader.journal.changesSince(0, 1000)
  const end = standby.journal.position()
  assert.deepEqual(standby.journal.applyRun({ after: 0, epoch: e, entries: all }), { applied: 0, skipped: all.length, removed: 0, position: end })
  assert.equal(standby.journal.applyRun({ after: all[9]!.seq, epoch: e, entries: all.slice(10, 20) }).skipped, 10)
  assert.equal(standby.journal.position(), end)
  assert.deepEqual(standby.journal.list({ limit: 100 }), leader.journal.list({ limit: 100 }))
})

test('a run that starts beyond the position is a gap, refused without a change', async (t) => {
  const leader = (await startStore(t, tempDataDir(t))).store
  const standby = (await startStore(t, tempDataDir(t))).store
  for (let i = 0; i < 3; i++) leader.journal.begin(transfer(1))
  const [e1, e2, e3] = leader.journal.changesSince(0, 10)
  assert.throws(() => standby.journal.applyRun({ after: e2!.seq, epoch: 1, entries: [e3!] }), RangeError)
  assert.equal(standby.journal.position(), 0)
  standby.journal.applyRun({ after: 0, epoch: 1, entries: [e1!] })
  standby.journal.applyRun({ after: e1!.seq, epoch: 1, entries: [e2!, e3!] })
  assert.equal(standby.journal.position(), e3!.seq)
})

test('malformed or unordered runs are refused whole', async (t) => {
  const leader = (await startStore(t, tempDataDir(t))).store
  const standby = (await startStore(t, tempDataDir(t))).store
  for (let i = 0; i < 3; i++) leader.journal.begin(transfer(1))
  const [e1, e2, e3] = leader.journal.changesSince(0, 10)
  assert.throws(() => standby.journal.applyRun({ after: 0, epoch: 1, entries: [e2!, e1!] }), /out of order/)
  assert.throws(() => standby.journal.applyRun({ after: 0, epoch: 1, entries: [e1!, { ...e2!, seq: 0 }] }), ReplicationConflictError)
  assert.throws(() => standby.journal.applyRun({ after: 0, epoch: 1, entries: [e1!, { ...e3!, kind: 'bogus' } as unknown as LogEntry] }), /unknown kind/)
  assert.throws(() => standby.journal.applyRun({ after: 0, epoch: 0, entries: [e1!] }), /in a run of epoch 0/)
  assert.equal(standby.journal.position(), 0)
  assert.deepEqual(standby.journal.list({ limit: 10 }), [])
})

test('after a failover, the new leader\'s log replaces the old leader\'s unshipped tail, rows included; a deposed leader is refused', async (t) => {
  const a = (await startStore(t, tempDataDir(t))).store // leader of epoch 1, then a member
  const b = (await startStore(t, tempDataDir(t))).store // a member, then leader of epoch 2
  a.clusterState.raiseEpoch('vectis-0', 1)
  const r = a.journal.begin(transfer(1))
  const other = a.journal.begin(transfer(1, { partner: 'OTHER' }))
  a.journal.recordSyncPoint(r.id, { syncPoint: 1, offset: 100 })
  b.journal.applyRun({ after: 0, epoch: 1, entries: a.journal.changesSince(0, 100) }) // shipped up to here
  const shipped = a.journal.position()
  const confirmed = a.journal.get(r.id)
  // Never shipped: a dies after these.
  a.journal.recordSyncPoint(r.id, { syncPoint: 2, offset: 200 })
  a.journal.interrupt(other.id, 'D3-301')
  a.journal.begin(transfer(1, { partner: 'LOST' }))

  // b leads epoch 2 and goes on from the point both share.
  b.clusterState.raiseEpoch('vectis-1', 2)
  assert.equal(b.journal.truncateAfterPosition(2), 0, 'nothing of its own past the position')
  const resumed = b.journal.resume(r.id, { member: 'vectis-1', epoch: 2, syncPoint: 1, offset: 100 })
  const finished = b.journal.complete(r.id, { bytes: 300, sha256: SHA })
  assert.ok(resumed.seq > shipped)

  const res = a.journal.applyRun({ after: shipped, epoch: 2, entries: b.journal.changesSince(shipped, 100) })
  assert.equal(res.removed, 2, 'the tail a held alone in the run\'s range is gone')
  assert.deepEqual(a.journal.get(r.id), finished)
  assert.deepEqual(a.journal.get(other.id), b.journal.get(other.id), 'a row changed only by the lost tail is put back')
  // a's third lost entry lies past the run; b's head (its log ends here, epoch 2) clears it.
  assert.equal(a.journal.alignTo({ seq: b.journal.position(), epoch: 2 }), 1)
  assert.deepEqual(a.journal.list({ limit: 100 }), b.journal.list({ limit: 100 }), 'the row begun in the lost tail is gone')
  assert.deepEqual(a.journal.changesSince(0, 100), b.journal.changesSince(0, 100))
  assert.equal(a.journal.position(), b.journal.position())
  assert.equal(confirmed?.syncPoint, 1)
  assert.equal(a.journal.alignTo({ seq: b.journal.position() - 1, epoch: 2 }), 0, 'entries of the head\'s own epoch past it stay')
  assert.equal(a.journal.position(), b.journal.position())

  // A run from epoch 1 over a range that now holds epoch 2's entries comes from a deposed leader.
  const stale: LogEntry = { seq: shipped + 1, at: new Date().toISOString(), epoch: 1, kind: 'transfer', data: { ...r, epoch: 1, seq: shipped + 1 } }
  assert.throws(() => a.journal.applyRun({ after: shipped, epoch: 1, entries: [stale] }), ReplicationConflictError)
  assert.deepEqual(a.journal.changesSince(0, 100), b.journal.changesSince(0, 100), 'a refused run changes nothing')
})

test('a new leader drops its own unconfirmed tail from an earlier leadership, rows put back', async (t) => {
  const a = (await startStore(t, tempDataDir(t))).store
  const b = (await startStore(t, tempDataDir(t))).store
  // a leads epoch 1 and writes four entries; b receives the first two.
  const r = a.journal.begin(transfer(1))
  a.journal.recordSyncPoint(r.id, { syncPoint: 1, offset: 10 })
  b.journal.applyRun({ after: 0, epoch: 1, entries: a.journal.changesSince(0, 10) })
  const lone = a.journal.begin(transfer(1, { partner: 'LONE' }))
  a.journal.recordSyncPoint(r.id, { syncPoint: 2, offset: 20 })
  // b leads epoch 2; its first entry takes the number of a's third: a's run replaces that one only.
  b.clusterState.raiseEpoch('vectis-1', 2)
  b.journal.recordSyncPoint(r.id, { syncPoint: 2, offset: 25 })
  const run = b.journal.changesSince(2, 10)
  assert.equal(run[0]!.seq, 3)
  assert.equal(a.journal.applyRun({ after: 2, epoch: 2, entries: run }).removed, 1)
  assert.equal(a.journal.position(), 3)
  assert.equal(a.journal.get(lone.id), undefined)
  // a is elected for epoch 3 before b's head reached it: its fourth entry (epoch 1) is not the cluster's.
  assert.equal(a.journal.truncateAfterPosition(3), 1)
  assert.deepEqual(a.journal.list({ limit: 10 }), b.journal.list({ limit: 10 }))
  assert.deepEqual(a.journal.changesSince(0, 10), b.journal.changesSince(0, 10))
})

test('aligning to a new leader\'s start removes the deposed leader\'s tail below entries already taken, and moves the position back', async (t) => {
  const a = (await startStore(t, tempDataDir(t))).store
  const b = (await startStore(t, tempDataDir(t))).store
  const r = a.journal.begin(transfer(1))
  b.journal.applyRun({ after: 0, epoch: 1, entries: a.journal.changesSince(0, 10) })
  const start = b.journal.position()
  a.journal.recordSyncPoint(r.id, { syncPoint: 1, offset: 1 }) // a's tail, never shipped
  a.journal.recordSyncPoint(r.id, { syncPoint: 2, offset: 2 })
  b.clusterState.raiseEpoch('vectis-1', 2)
  for (let i = 0; i < 4; i++) b.journal.begin(transfer(2))
  // a already took b's last entries (a catch-up from its own position), past its tail: b's first ones are missing.
  const tail = b.journal.changesSince(a.journal.position(), 10)
  a.journal.applyRun({ after: a.journal.position(), epoch: 2, entries: tail })
  assert.equal(a.journal.alignTo({ seq: start, epoch: 2 }), 2)
  assert.equal(a.journal.position(), start, 'back to where the histories meet')
  a.journal.applyRun({ after: start, epoch: 2, entries: b.journal.changesSince(start, 10) })
  assert.deepEqual(a.journal.changesSince(0, 10), b.journal.changesSince(0, 10))
  // (Rows created at the same instant list in insertion order: compare them by key.)
  const byId = (rows: Array<{ id: string }>): Array<{ id: string }> => [...rows].sort((x, y) => x.id.localeCompare(y.id))
  assert.deepEqual(byId(a.journal.list({ limit: 10 })), byId(b.journal.list({ limit: 10 })))
})

test('a run covering the leader\'s log up to `through` removes what is not there and moves the position to it', async (t) => {
  const leader = (await startStore(t, tempDataDir(t))).store
  const standby = (await startStore(t, tempDataDir(t))).store
  leader.journal.setLeaderCheck(() => true)
  const done = leader.journal.begin(transfer(1))
  leader.journal.complete(done.id, { bytes: 1, sha256: SHA })
  const kept = leader.journal.begin(transfer(1))
  standby.journal.applyRun({ after: 0, epoch: 1, entries: leader.journal.changesSince(0, 10) })
  const p = standby.journal.position()
  // Nothing in the leader's log past p up to p + 10 (pruned there): an empty run through p + 10 says so.
  assert.equal(standby.journal.applyRun({ after: p, epoch: 1, entries: [], through: p + 10 }).position, p + 10)
  assert.throws(() => standby.journal.applyRun({ after: p, epoch: 1, entries: [], through: p - 1 }), ReplicationConflictError)
  // A run from 0 through the end, without the entries of `done` (pruned at the leader with its row): the row goes.
  const rest = leader.journal.changesSince(0, 10).filter((e) => e.kind === 'transfer' && e.data.id === kept.id)
  const r = standby.journal.applyRun({ after: 0, epoch: 1, entries: rest, through: p + 10 })
  assert.equal(r.removed, 2)
  assert.deepEqual(standby.journal.list({ limit: 10 }).map((x) => x.id), [kept.id])
  assert.equal(standby.journal.position(), p + 10)
})

test('retention on the leader is a prune entry: a member applying it removes the same rows; a member not leading prunes none', async (t) => {
  const clock = new ManualClock()
  const leader = (await startStore(t, tempDataDir(t), {}, clock)).store
  const standby = (await startStore(t, tempDataDir(t), {}, clock)).store
  leader.journal.setLeaderCheck(() => true)
  standby.journal.setLeaderCheck(() => false)
  for (let i = 0; i < 5; i++) {
    const r = leader.journal.begin(transfer(1))
    if (i < 3) leader.journal.complete(r.id, { bytes: 1, sha256: SHA })
  }
  standby.journal.applyRun({ after: 0, epoch: 1, entries: leader.journal.changesSince(0, 100) })
  clock.advance(31 * DAY)
  assert.equal((await standby.retention.runOnce()).transfers, 0, 'a member that does not lead prunes no rows')
  const shipped = standby.journal.position()
  const r = await leader.retention.runOnce()
  assert.equal(r.transfers, 3)
  const [entry] = leader.journal.changesSince(shipped, 10)
  assert.equal(entry?.kind, 'prune')
  assert.equal(entry.kind === 'prune' && entry.data.ids.length, 3)
  standby.journal.applyRun({ after: shipped, epoch: 1, entries: [entry] })
  assert.deepEqual(standby.journal.list({ limit: 10 }), leader.journal.list({ limit: 10 }))
  assert.equal(standby.journal.list({ limit: 10 }).length, 2)

  // Once the prune entry is itself past the retention, pruning it raises the horizon.
  assert.equal(leader.journal.prunedThrough(), 0)
  clock.advance(31 * DAY)
  await leader.retention.runOnce()
  assert.equal(leader.journal.prunedThrough(), entry.seq)
})
