import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { ManualClock } from '../helpers/manual-clock.js'
import { silentLogger } from '../../common/logger.js'
import { closeDatabase, openDatabase } from '../../store/database.js'
import { TransferIdsExhaustedError } from '../../store/errors.js'
import { Journal } from '../../store/journal.js'
import { COUNTER_BITS, EPOCH_BITS, epochSlotOf, MAX_TRANSFER_ID, transferIdFor, TransferIds } from '../../store/transfer-id.js'
import { startStore, tempDataDir, transfer } from '../helpers/store-fixtures.js'

function openParts (t: TestContext): { db: ReturnType<typeof openDatabase>['db'], ids: TransferIds, journal: Journal } {
  const { db } = openDatabase(tempDataDir(t), silentLogger())
  t.after(() => { closeDatabase(db, silentLogger()) })
  const ids = new TransferIds(db)
  const journal = new Journal({ db, clock: new ManualClock(), transferIds: ids, currentEpoch: () => 0 })
  return { db, ids, journal }
}

test('the scheme: 8 bits of epoch above a 16-bit counter, within PI 13\'s 3 bytes', () => {
  assert.equal(EPOCH_BITS + COUNTER_BITS, 24)
  assert.equal(MAX_TRANSFER_ID, 16_777_215)
  assert.equal(transferIdFor(1, 0), 0x010000)
  assert.equal(transferIdFor(1, 5), 0x010005)
  assert.equal(transferIdFor(255, 65535), 0xFFFFFF)
  assert.equal(transferIdFor(256, 7), 7, 'epoch 256 reuses the range of epoch 0')
  assert.equal(transferIdFor(3, 65536 + 9), transferIdFor(3, 9), 'the counter wraps within the range')
  assert.equal(epochSlotOf(transferIdFor(300, 123)), 300 % 256)
  assert.throws(() => transferIdFor(-1, 0), RangeError)
  assert.throws(() => transferIdFor(1, 0.5), RangeError)
})

test('leaders of the last 256 epochs never share an id, even without each other\'s journal', async (t) => {
  // Two members with separate databases: the leader of epoch 41, then (after a failover it learned nothing
  // from) the leader of epoch 42. Their allocations are disjoint.
  const a = (await startStore(t, tempDataDir(t))).store
  const b = (await startStore(t, tempDataDir(t))).store
  const seen = new Set<number>()
  for (let i = 0; i < 200; i++) {
    const x = a.transferIds.allocate(41).transferId
    assert.ok(!seen.has(x))
    seen.add(x)
  }
  for (let i = 0; i < 200; i++) {
    const y = b.transferIds.allocate(42).transferId
    assert.ok(!seen.has(y), `id ${y} reused across epochs`)
    seen.add(y)
  }
  for (const id of seen) assert.ok(id >= 1 && id <= MAX_TRANSFER_ID)
})

test('the per-epoch counter is persisted: a restart continues where it stopped', async (t) => {
  const dir = tempDataDir(t)
  const first = await startStore(t, dir)
  const a = first.store.transferIds.allocate(9)
  const b = first.store.transferIds.allocate(9)
  await first.store.stop()
  const second = await startStore(t, dir)
  const c = second.store.transferIds.allocate(9)
  assert.deepEqual([a.serial, b.serial, c.serial], [0, 1, 2])
  assert.deepEqual([a.key, c.key], ['9-0', '9-2'])
  assert.equal(c.transferId, transferIdFor(9, 2))
  assert.equal(second.store.transferIds.nextSerial(9), 3)
  // A new epoch starts its own counter and forgets the older ones.
  assert.equal(second.store.transferIds.allocate(10).serial, 0)
  assert.equal(second.store.transferIds.nextSerial(9), 0)
})

test('wrap-around: the counter continues at the bottom of the range, skipping 0', (t) => {
  const { db, ids } = openParts(t)
  db.prepare('INSERT INTO transfer_id_counters (epoch, next_serial) VALUES (?, ?)').run(5, 65535)
  assert.equal(ids.allocate(5).transferId, 0x05FFFF)
  const wrapped = ids.allocate(5)
  assert.equal(wrapped.serial, 65536)
  assert.equal(wrapped.transferId, 0x050000, 'epoch 5\'s range includes its low end')
  assert.equal(wrapped.key, '5-65536', 'journal keys never wrap')

  // Epoch 512's range is epoch 0's: its id 0 is never handed out (PI 13 = 0 means a new transfer).
  assert.equal(ids.allocate(512).transferId, 1)
  db.prepare('UPDATE transfer_id_counters SET next_serial = ? WHERE epoch = 512').run(65535)
  assert.equal(ids.allocate(512).transferId, 0xFFFF)
  const z = ids.allocate(512)
  assert.equal(z.transferId, 1)
  assert.equal(z.serial, 65537)
})

test('wrap-around skips ids held by restartable transfers, not by finished ones', (t) => {
  const { db, ids, journal } = openParts(t)
  const interrupted = journal.begin(transfer(6)) // serial 0
  journal.interrupt(interrupted.id, 'connection lost')
  const running = journal.begin(transfer(6)) // serial 1: in progress
  const done = journal.begin(transfer(6)) // serial 2
  journal.complete(done.id, { bytes: 1, sha256: 'cd'.repeat(32) })
  db.prepare('UPDATE transfer_id_counters SET next_serial = ? WHERE epoch = 6').run(65536)
  const next = ids.allocate(6)
  assert.notEqual(next.transferId, interrupted.transferId)
  assert.notEqual(next.transferId, running.transferId)
  assert.equal(next.transferId, done.transferId, 'a completed transfer\'s id may come back after a full wrap')
  assert.equal(next.serial, 65538)
})

test('a range entirely held by restartable transfers is reported, not looped over', (t) => {
  const { db, ids } = openParts(t)
  const insert = db.prepare(`INSERT INTO transfers (id, transfer_id, server, partner, virtual_file, direction, status,
    member, epoch, created_at, updated_at, seq) VALUES (?, ?, 'S', 'P', 'F', 'receive', 'interrupted', 'm', 7, 0, 0, 0)`)
  db.transaction(() => {
    for (let low = 0; low < 65536; low++) insert.run(`7-${low}`, transferIdFor(7, low))
  })()
  // Epoch 263 has the PI 13 range of epoch 7 (263 mod 256 = 7), 256 elections later.
  assert.throws(() => ids.allocate(263), (err: unknown) => {
    assert.ok(err instanceof TransferIdsExhaustedError)
    assert.equal(err.epoch, 263)
    return true
  })
  // Nothing was consumed: once one is finished, its id is the one handed out.
  db.prepare("UPDATE transfers SET status = 'completed', finished_at = 1 WHERE id = '7-1234'").run()
  assert.equal(ids.allocate(263).transferId, transferIdFor(7, 1234))
})

test('a key already in the journal (a restored backup of a cluster whose epochs started over) is skipped', (t) => {
  const { db, ids } = openParts(t)
  db.prepare(`INSERT INTO transfers (id, transfer_id, server, partner, virtual_file, direction, status, member, epoch,
    created_at, updated_at, finished_at, seq) VALUES ('2-0', 77, 'S', 'P', 'F', 'receive', 'completed', 'm', 2, 0, 0, 0, 0)`).run()
  const a = ids.allocate(2)
  assert.equal(a.key, '2-1')
  assert.equal(a.transferId, transferIdFor(2, 1))
  assert.equal(ids.allocate(2).key, '2-2')
})
