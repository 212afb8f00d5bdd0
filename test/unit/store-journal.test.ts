import { test } from 'node:test'
import assert from 'node:assert/strict'
import { InvalidTransferError, NotLeaderError, TransferNotFoundError } from '../../store/errors.js'
import type { LogEntry } from '../../store/journal.js'
import { transferIdFor } from '../../store/transfer-id.js'
import { startStore, tempDataDir, transfer } from '../helpers/store-fixtures.js'

const SHA = 'ab'.repeat(32)

test('a transfer goes through begin, sync points and completion, each change a logged snapshot', async (t) => {
  const { store, clock } = await startStore(t, tempDataDir(t))
  const j = store.journal
  const epoch = store.clusterState.raiseEpoch('vectis-0').number
  const r = j.begin(transfer(epoch, { filePath: '/shared/inbox/tmp-1' }))
  assert.equal(r.id, `${epoch}-0`)
  assert.equal(r.transferId, transferIdFor(epoch, 0))
  assert.equal(r.status, 'in-progress')
  assert.equal(r.epoch, epoch)
  assert.equal(r.member, 'vectis-0')
  assert.equal(r.createdAt, new Date(clock.wallNow()).toISOString())
  assert.equal(r.finishedAt, null)

  clock.advance(1000)
  const s1 = j.recordSyncPoint(r.id, { syncPoint: 1, offset: 1_048_576 })
  assert.equal(s1.syncPoint, 1)
  assert.equal(s1.syncOffset, 1_048_576)
  assert.equal(s1.bytes, 1_048_576)
  assert.ok(s1.seq > r.seq)
  assert.equal(s1.updatedAt, new Date(clock.wallNow()).toISOString())
  assert.deepEqual(j.get(r.id), s1)

  const s2 = j.recordSyncPoint(r.id, { syncPoint: 2, offset: 2_097_152, bytes: 2_100_000 })
  assert.equal(s2.bytes, 2_100_000)
  clock.advance(500)
  const done = j.complete(r.id, { bytes: 2_500_000, sha256: SHA, filePath: '/shared/inbox/final' })
  assert.equal(done.status, 'completed')
  assert.equal(done.sha256, SHA)
  assert.equal(done.filePath, '/shared/inbox/final')
  assert.equal(done.finishedAt, new Date(clock.wallNow()).toISOString())

  // A completed transfer is final: no restart, no more sync points.
  assert.throws(() => j.recordSyncPoint(r.id, { syncPoint: 3, offset: 3 }), InvalidTransferError)
  assert.throws(() => j.resume(r.id, { member: 'vectis-1', epoch, syncPoint: 0, offset: 0 }), InvalidTransferError)
  assert.deepEqual(j.get(r.id), done)

  const entries = j.changesSince(0, 100).filter((e) => e.kind === 'transfer')
  assert.deepEqual(entries.map((e) => e.data), [r, s1, s2, done])
})

test('bad values are refused with a clear error and change nothing', async (t) => {
  const { store } = await startStore(t, tempDataDir(t))
  const j = store.journal
  assert.throws(() => j.begin(transfer(1, { partner: '' })), /partner must be a non-empty string/)
  assert.throws(() => j.begin(transfer(1, { direction: 'sideways' as 'send' })), /direction must be receive or send/)
  assert.throws(() => j.begin(transfer(1, { transferId: 0 })), /transferId must be 1\.\.16777215/)
  assert.throws(() => j.begin(transfer(1, { transferId: 0x1000000 })), InvalidTransferError)
  assert.throws(() => j.begin(transfer(-1)), /epoch must be a non-negative integer/)
  const r = j.begin(transfer(1))
  assert.throws(() => j.recordSyncPoint(r.id, { syncPoint: -1, offset: 0 }), InvalidTransferError)
  assert.throws(() => j.recordSyncPoint(r.id, { syncPoint: 1, offset: 1.5 }), InvalidTransferError)
  assert.throws(() => j.complete(r.id, { bytes: 1, sha256: 'XYZ' }), /sha256/)
  assert.throws(() => j.recordSyncPoint('9-9', { syncPoint: 1, offset: 1 }), TransferNotFoundError)
  assert.deepEqual(j.get(r.id), r)
  assert.equal(j.lastSeq(), r.seq)
})

test('requester-chosen ids, interruption, restart lookup and resume on another member', async (t) => {
  const { store } = await startStore(t, tempDataDir(t))
  const j = store.journal
  const push = j.begin(transfer(3, { transferId: 0x0024C9 }))
  assert.equal(push.transferId, 9417)
  j.recordSyncPoint(push.id, { syncPoint: 4, offset: 4096 })
  const cut = j.interrupt(push.id, 'connection lost')
  assert.equal(cut.status, 'interrupted')
  assert.equal(cut.diagnostic, 'connection lost')

  const key = { server: 'PESITSRV', partner: 'CXCLIENT', virtualFile: 'PAYMENTS', direction: 'receive' as const, transferId: 9417 }
  assert.deepEqual(j.findRestartable(key), cut)
  assert.equal(j.findRestartable({ ...key, direction: 'send' }), undefined)
  assert.equal(j.findRestartable({ ...key, partner: 'OTHER' }), undefined)

  store.clusterState.noteEpochSeen({ number: 4, leader: 'vectis-1' })
  const resumed = j.resume(push.id, { member: 'vectis-1', epoch: 4, syncPoint: 3, offset: 3072 })
  assert.equal(resumed.status, 'in-progress')
  assert.equal(resumed.member, 'vectis-1')
  assert.equal(resumed.epoch, 4)
  assert.equal(resumed.syncPoint, 3)
  assert.equal(resumed.diagnostic, null)
  const failed = j.fail(push.id, 'D2-229 file modified')
  assert.equal(failed.status, 'failed')
  assert.ok(failed.finishedAt)
  assert.equal(j.findRestartable(key), undefined, 'a failed transfer is not restartable')
})

test('changes are stamped with at least the highest epoch seen', async (t) => {
  const { store } = await startStore(t, tempDataDir(t))
  const r = store.journal.begin(transfer(2))
  store.clusterState.noteEpochSeen({ number: 7, leader: 'vectis-2' })
  const u = store.journal.update(r.id, { diagnostic: 'slow partner' })
  assert.equal(u.epoch, 7)
  const last = store.journal.changesSince(u.seq - 1, 1)[0]
  assert.equal(last?.epoch, 7)
})

test('list: newest first, filtered by status and partner, limited', async (t) => {
  const { store, clock } = await startStore(t, tempDataDir(t))
  const j = store.journal
  const made = []
  for (let i = 0; i < 12; i++) {
    clock.advance(10)
    const r = j.begin(transfer(1, { partner: i % 3 === 0 ? 'ALPHA' : 'BETA', direction: i % 2 === 0 ? 'receive' : 'send' }))
    made.push(i % 4 === 0 ? j.complete(r.id, { bytes: i, sha256: SHA }) : r)
  }
  const all = j.list({ limit: 100 })
  assert.deepEqual(all.map((r) => r.id), made.map((r) => r.id).reverse())
  assert.deepEqual(j.list({ limit: 3 }).map((r) => r.id), made.slice(-3).map((r) => r.id).reverse())
  assert.deepEqual(j.list({ limit: 100, status: 'completed' }).map((r) => r.id),
    made.filter((_, i) => i % 4 === 0).map((r) => r.id).reverse())
  assert.deepEqual(j.list({ limit: 100, partner: 'ALPHA' }).map((r) => r.id),
    made.filter((_, i) => i % 3 === 0).map((r) => r.id).reverse())
  assert.deepEqual(j.list({ limit: 100, partner: 'ALPHA', status: 'in-progress' }).map((r) => r.id),
    made.filter((_, i) => i % 3 === 0 && i % 4 !== 0).map((r) => r.id).reverse())
  // Same creation time: the later insert is newer.
  const a = j.begin(transfer(1))
  const b = j.begin(transfer(1))
  assert.deepEqual(j.list({ limit: 2 }).map((r) => r.id), [b.id, a.id])
  assert.equal(JSON.stringify(JSON.parse(JSON.stringify(all))), JSON.stringify(all), 'rows are plain JSON')
})

test('sequence numbers rise strictly across transfers and restarts; cluster events stay out of the log; changesSince pages through all', async (t) => {
  const dir = tempDataDir(t)
  const seqs: number[] = []
  for (let round = 0; round < 3; round++) {
    const { store } = await startStore(t, dir)
    const e = store.clusterState.raiseEpoch('vectis-0') // logs epoch:raised, as an event
    const before = store.journal.lastSeq()
    store.journal.appendEvent({ type: 'leader:elected', epoch: e.number, leader: 'vectis-0' })
    assert.equal(store.journal.lastSeq(), before, 'a cluster event takes no sequence number of the replicated log')
    for (let i = 0; i < 5; i++) {
      const r = store.journal.begin(transfer(e.number))
      seqs.push(r.seq)
      seqs.push(store.journal.recordSyncPoint(r.id, { syncPoint: 1, offset: 10 }).seq)
    }
    await store.stop()
  }
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i]! > seqs[i - 1]!, `seq ${seqs[i]} after ${seqs[i - 1]}`)

  const { store } = await startStore(t, dir)
  const paged: LogEntry[] = []
  for (let from = 0, guard = 0; guard < 100; guard++) {
    const page = store.journal.changesSince(from, 4)
    if (page.length === 0) break
    paged.push(...page)
    from = page[page.length - 1]!.seq
  }
  assert.deepEqual(paged.map((e) => e.seq), seqs)
  assert.deepEqual(store.journal.changesSince(0, 1000), paged)
  assert.deepEqual(store.journal.events(2).map((e) => e.data.type), ['leader:elected', 'epoch:raised'])
  assert.equal(store.journal.events(100).length, 6, 'two events per round, kept across restarts')
  assert.throws(() => store.journal.changesSince(-1, 10), RangeError)
  assert.throws(() => store.journal.changesSince(0, 0), RangeError)
})

test('sync points and completion need an in-progress transfer: an interrupted one is resumed first', async (t) => {
  const { store } = await startStore(t, tempDataDir(t))
  const j = store.journal
  const r = j.begin(transfer(1))
  j.interrupt(r.id, 'IDT')
  assert.throws(() => j.recordSyncPoint(r.id, { syncPoint: 1, offset: 1 }), /is interrupted: resume it first/)
  assert.throws(() => j.complete(r.id, { bytes: 1, sha256: SHA }), /resume it first/)
  j.resume(r.id, { member: 'vectis-0', epoch: 1, syncPoint: 0, offset: 0 })
  assert.equal(j.recordSyncPoint(r.id, { syncPoint: 1, offset: 1 }).syncPoint, 1)
  assert.equal(j.interrupt(j.interrupt(r.id, 'IDT').id, 'again').diagnostic, 'again')
  assert.equal(j.fail(r.id, 'given up').status, 'failed')
})

test('with a lease check installed, transfer changes are refused once the lease is gone; events and replication are not', async (t) => {
  const { store } = await startStore(t, tempDataDir(t))
  const standby = (await startStore(t, tempDataDir(t))).store
  const j = store.journal
  let leader = true
  j.setLeaderCheck(() => leader)
  const r = j.begin(transfer(1))
  j.recordSyncPoint(r.id, { syncPoint: 1, offset: 1 })
  leader = false
  const seq = j.lastSeq()
  assert.throws(() => j.recordSyncPoint(r.id, { syncPoint: 2, offset: 2 }), NotLeaderError)
  assert.throws(() => j.begin(transfer(1)), NotLeaderError)
  assert.throws(() => j.interrupt(r.id, 'x'), NotLeaderError)
  assert.equal(j.lastSeq(), seq, 'nothing written')
  assert.equal(j.get(r.id)?.syncPoint, 1)
  j.appendEvent({ type: 'leader:demoted', epoch: 1, leader: 'vectis-0', reason: 'lease-expired' })
  assert.equal(j.events(1)[0]?.data.type, 'leader:demoted')
  standby.journal.setLeaderCheck(() => false)
  assert.equal(standby.journal.applyRun({ after: 0, epoch: 1, entries: j.changesSince(0, 100) }).applied, 2)
  j.setLeaderCheck(undefined)
  assert.equal(j.recordSyncPoint(r.id, { syncPoint: 2, offset: 2 }).syncPoint, 2)
})
