// Journal backups and their restore (store/backups.ts, Journal.restoreBatch): a verified copy with its manifest,
// the newest `keep` kept, a restore that merges and never deletes, and bad backups refused before any write.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync, readdirSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { silentLogger } from '../../common/logger.js'
import { Backups, RESTORE_BATCH } from '../../store/backups.js'
import { BackupBusyError, BackupError, BackupNotFoundError, NotLeaderError } from '../../store/errors.js'
import type { Store } from '../../store/store.js'
import { ManualClock } from '../helpers/manual-clock.js'
import { startStore, tempDataDir, transfer } from '../helpers/store-fixtures.js'

const SHA = 'cd'.repeat(32)

function backupsFor (t: TestContext, store: Store, clock: ManualClock, member = 'vectis-0', keep = 3): Backups {
  return new Backups({ logger: silentLogger(), clock }, { dir: join(tempDataDir(t, 'vectis-shared-'), 'backups'), member, keep, scratchDir: tempDataDir(t) })
}

function source (store: Store): Parameters<Backups['create']>[0] {
  return { copyTo: async (d) => { await store.backup(d) }, epoch: store.clusterState.highestEpochNumber() }
}

/** A journal with completed, failed, in-progress and interrupted rows, receive and send. */
function fill (store: Store, epoch: number, n: number): void {
  for (let i = 0; i < n; i++) {
    const r = store.journal.begin(transfer(epoch, { partner: `P${i % 7}`, direction: i % 3 === 0 ? 'send' : 'receive', ...(i % 3 === 0 ? { filePath: `/out/f${i}`, source: `10:${i}:1` } : {}) }))
    store.journal.recordSyncPoint(r.id, { syncPoint: 1, offset: 100 })
    if (i % 4 === 0) store.journal.complete(r.id, { bytes: 100, sha256: SHA })
    else if (i % 4 === 1) store.journal.fail(r.id, 'D3-301 test')
    else if (i % 4 === 2) store.journal.interrupt(r.id, 'D2-211 test')
  }
}

/**
 * Rows as a restore must keep them: all but the epoch and seq (the restoring leadership's); a row in progress comes
 * back interrupted, with the restore named as the reason.
 */
function history (store: Store): unknown[] {
  return store.journal.list({ limit: 1000 }).map(({ epoch: _e, seq: _s, status, diagnostic, ...r }) => ({
    ...r,
    status: status === 'in-progress' ? 'interrupted' : status,
    diagnostic: status === 'in-progress' || diagnostic?.startsWith('restored from backup') === true ? 'restored' : diagnostic
  })).sort((a, b) => a.id.localeCompare(b.id))
}

test('a backup is a verified, self-contained copy with a manifest; the newest `keep` stay', async (t) => {
  const { store, clock } = await startStore(t, tempDataDir(t))
  const e = store.clusterState.raiseEpoch('vectis-0').number
  fill(store, e, 10)
  const backups = backupsFor(t, store, clock)
  const m = await backups.create(source(store))
  assert.match(m.id, /^\d{8}T\d{9}Z-vectis-0$/)
  assert.equal(m.transfers, 10)
  assert.equal(m.journalSeq, store.journal.position())
  assert.equal(m.epoch, e)
  const bytes = readFileSync(backups.fileOf(m.id))
  assert.equal(m.bytes, bytes.length)
  assert.equal(m.sha256, createHash('sha256').update(bytes).digest('hex'))
  // One file is the whole copy: no WAL beside it, no temporary left.
  assert.deepEqual(readdirSync(backups.dir).sort(), [`${m.id}.db`, `${m.id}.json`])
  assert.deepEqual(await backups.list(), [m])
  assert.deepEqual(await backups.get(m.id), m)
  assert.equal(await backups.get('../../etc/passwd'), undefined)

  const ids = [m.id]
  for (let i = 0; i < 4; i++) {
    clock.advance(1000)
    ids.push((await backups.create(source(store))).id)
  }
  assert.deepEqual((await backups.list()).map((b) => b.id), ids.slice(-3).reverse())
  assert.equal(readdirSync(backups.dir).length, 6)
})

test('restore onto an empty journal brings back every row; in-progress ones come back interrupted', async (t) => {
  const { store: old, clock } = await startStore(t, tempDataDir(t))
  const e = old.clusterState.raiseEpoch('vectis-0').number
  fill(old, e, RESTORE_BATCH + 37) // more than one batch
  const backups = backupsFor(t, old, clock)
  const m = await backups.create(source(old))

  const fresh = (await startStore(t, tempDataDir(t))).store
  const e2 = fresh.clusterState.raiseEpoch('vectis-1').number
  const appended: number[] = []
  fresh.journal.onAppended((x) => { appended.push(x.seq) })
  const r = await backups.restore(m.id, fresh.journal)
  assert.deepEqual(r, { backup: m.id, rows: RESTORE_BATCH + 37, added: RESTORE_BATCH + 37, kept: 0, rekeyed: 0 })
  assert.deepEqual(history(fresh), history(old))
  // Every restored row is an entry of the restoring leadership, announced for replication.
  assert.equal(appended.length, RESTORE_BATCH + 37)
  assert.ok(fresh.journal.list({ limit: 1000 }).every((x) => x.epoch === e2))
  const wasRunning = old.journal.list({ limit: 1000, status: 'in-progress' })
  assert.ok(wasRunning.length > 0)
  for (const w of wasRunning) {
    const now = fresh.journal.get(w.id)!
    assert.equal(now.status, 'interrupted')
    assert.match(now.diagnostic!, new RegExp(`restored from backup ${m.id}`))
  }
  // A completed send still counts as sent: the restore offers no delivered file again.
  const sent = old.journal.list({ limit: 1000, status: 'completed' }).find((x) => x.direction === 'send')!
  assert.ok(fresh.journal.wasSent({ partner: sent.partner, virtualFile: sent.virtualFile, filePath: sent.filePath!, source: sent.source! }))

  // Idempotent: again, nothing changes.
  const seq = fresh.journal.lastSeq()
  assert.deepEqual(await backups.restore(m.id, fresh.journal), { backup: m.id, rows: RESTORE_BATCH + 37, added: 0, kept: RESTORE_BATCH + 37, rekeyed: 0 })
  assert.equal(fresh.journal.lastSeq(), seq)
})

test('restore merges: rows present stay as they are, a key taken by another transfer is restored beside it', async (t) => {
  const { store: old, clock } = await startStore(t, tempDataDir(t))
  const e = old.clusterState.raiseEpoch('vectis-0').number
  const a = old.journal.begin(transfer(e, { partner: 'A' }))
  const b = old.journal.begin(transfer(e, { partner: 'B' }))
  const backups = backupsFor(t, old, clock)
  const m = await backups.create(source(old))
  // Later history on the same journal: A completes after the backup.
  old.journal.complete(a.id, { bytes: 5, sha256: SHA })
  const r = await backups.restore(m.id, old.journal)
  assert.deepEqual(r, { backup: m.id, rows: 2, added: 0, kept: 2, rekeyed: 0 })
  assert.equal(old.journal.get(a.id)!.status, 'completed')
  assert.equal(old.journal.get(b.id)!.status, 'in-progress')

  // A new cluster whose first leadership has the same epoch number: its own transfer holds key `1-0`.
  clock.advance(5000)
  const fresh = (await startStore(t, tempDataDir(t), {}, clock)).store
  const e2 = fresh.clusterState.raiseEpoch('vectis-0').number
  assert.equal(e2, e)
  const mine = fresh.journal.begin(transfer(e2, { partner: 'NEW' }))
  assert.equal(mine.id, a.id)
  const r2 = await backups.restore(m.id, fresh.journal)
  assert.deepEqual(r2, { backup: m.id, rows: 2, added: 1, kept: 0, rekeyed: 1 })
  assert.equal(fresh.journal.get(mine.id)!.partner, 'NEW')
  assert.equal(fresh.journal.get(`${a.id}@${m.id}`)!.partner, 'A')
  assert.equal(fresh.journal.get(b.id)!.partner, 'B')
  // The allocator skips keys the restore brought in.
  const next = fresh.journal.begin(transfer(e2, { partner: 'NEXT' }))
  assert.notEqual(next.id, b.id)
  assert.equal(fresh.journal.get(b.id)!.partner, 'B')
  assert.deepEqual((await backups.restore(m.id, fresh.journal)).kept, 2)
  // The new cluster's own row of that key goes (pruned, say): running the restore again still adds nothing.
  fresh.journal.setLeaderCheck(() => true)
  fresh.journal.complete(mine.id, { bytes: 1, sha256: SHA })
  clock.advance(31 * 24 * 3600 * 1000)
  await fresh.retention.runOnce()
  assert.equal(fresh.journal.get(mine.id), undefined)
  assert.deepEqual(await backups.restore(m.id, fresh.journal), { backup: m.id, rows: 2, added: 0, kept: 2, rekeyed: 0 })
  assert.equal(fresh.journal.get(mine.id), undefined)
})

test('a damaged or unknown backup is refused before anything is written', async (t) => {
  const { store: old, clock } = await startStore(t, tempDataDir(t))
  fill(old, old.clusterState.raiseEpoch('vectis-0').number, 20)
  const backups = backupsFor(t, old, clock)
  const m = await backups.create(source(old))
  const fresh = (await startStore(t, tempDataDir(t))).store
  fresh.clusterState.raiseEpoch('vectis-1')

  await assert.rejects(backups.restore('20990101T000000000Z-nobody', fresh.journal), BackupNotFoundError)
  const file = backups.fileOf(m.id)
  const good = readFileSync(file)
  const bad = Buffer.from(good)
  bad.writeUInt8(bad.readUInt8(bad.length - 100) ^ 0xff, bad.length - 100)
  writeFileSync(file, bad)
  await assert.rejects(backups.restore(m.id, fresh.journal), (err: Error) => err instanceof BackupError && /failed verification/.test(err.message))
  // A manifest that matches a file that is not a database.
  writeFileSync(file, Buffer.alloc(good.length, 7))
  const manifest = JSON.parse(readFileSync(join(backups.dir, `${m.id}.json`), 'utf8')) as { sha256: string }
  manifest.sha256 = createHash('sha256').update(Buffer.alloc(good.length, 7)).digest('hex')
  writeFileSync(join(backups.dir, `${m.id}.json`), JSON.stringify(manifest))
  await assert.rejects(backups.restore(m.id, fresh.journal), (err: Error) => err instanceof BackupError && /cannot be read/.test(err.message))
  assert.equal(fresh.journal.lastSeq(), 0)
  assert.equal(fresh.journal.list({ limit: 10 }).length, 0)

  // Only a leader restores; one operation at a time.
  writeFileSync(file, good)
  manifest.sha256 = m.sha256
  writeFileSync(join(backups.dir, `${m.id}.json`), JSON.stringify(manifest))
  fresh.journal.setLeaderCheck(() => false)
  await assert.rejects(backups.restore(m.id, fresh.journal), NotLeaderError)
  fresh.journal.setLeaderCheck(undefined)
  const first = backups.restore(m.id, fresh.journal)
  await assert.rejects(backups.create(source(old)), BackupBusyError)
  assert.equal((await first).added, 20)
})
