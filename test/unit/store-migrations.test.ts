import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import DatabaseConstructor, { type Database } from 'better-sqlite3'
import { silentLogger } from '../../common/logger.js'
import { DATABASE_FILE_NAME } from '../../store/database.js'
import { MigrationError } from '../../store/errors.js'
import { applyMigrations, MIGRATIONS, SCHEMA_VERSION, schemaVersion } from '../../store/migrations.js'
import { Store } from '../../store/store.js'
import { startStore, tempDataDir, transfer } from '../helpers/store-fixtures.js'

/**
 * What a database written by each earlier release holds, and what must be true of it after migrating to the
 * current version. Adding a migration without a fixture for the version before it fails the coverage test below.
 */
const fixtures: Record<number, { populate (db: Database): void, verify (store: Store): void }> = {
  0: {
    populate () {},
    verify (store) {
      assert.equal(store.journal.lastSeq(), 0)
      assert.equal(store.clusterState.highestEpoch(), undefined)
      assert.equal(store.clusterState.viewCounter(), 0)
    }
  },
  1: {
    // Version 1: transfers and the log, entries without an epoch column (it lived only in the snapshot).
    populate (db) {
      const snap = {
        id: '3-0', transferId: 3 * 65536, server: 'PESITSRV', partner: 'CXCLIENT', virtualFile: 'PAYMENTS',
        direction: 'receive', status: 'completed', bytes: 2048, syncPoint: 2, syncOffset: 2048,
        sha256: 'a'.repeat(64), filePath: '/shared/in/f', diagnostic: null, member: 'vectis-1', epoch: 3,
        createdAt: '2025-12-31T10:00:00.000Z', updatedAt: '2025-12-31T10:00:05.000Z', finishedAt: '2025-12-31T10:00:05.000Z'
      }
      const log = db.prepare('INSERT INTO journal_log (at, kind, transfer_key, data) VALUES (?, ?, ?, ?)')
      log.run(Date.parse(snap.createdAt), 'transfer', snap.id, JSON.stringify({ ...snap, status: 'in-progress', bytes: 0,
        syncPoint: 0, syncOffset: 0, sha256: null, updatedAt: snap.createdAt, finishedAt: null }))
      log.run(Date.parse(snap.updatedAt), 'transfer', snap.id, JSON.stringify(snap))
      db.prepare(`INSERT INTO transfers (id, transfer_id, server, partner, virtual_file, direction, status, bytes,
        sync_point, sync_offset, sha256, file_path, diagnostic, member, epoch, created_at, updated_at, finished_at, seq)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 2)`).run(snap.id, snap.transferId, snap.server,
        snap.partner, snap.virtualFile, snap.direction, snap.status, snap.bytes, snap.syncPoint, snap.syncOffset,
        snap.sha256, snap.filePath, snap.diagnostic, snap.member, snap.epoch, Date.parse(snap.createdAt),
        Date.parse(snap.updatedAt), Date.parse(snap.finishedAt))
    },
    verify (store) {
      const row = store.journal.get('3-0')
      assert.ok(row)
      assert.equal(row.status, 'completed')
      assert.equal(row.bytes, 2048)
      assert.equal(row.sha256, 'a'.repeat(64))
      assert.equal(row.seq, 2)
      const entries = store.journal.changesSince(0, 10)
      assert.deepEqual(entries.map((e) => [e.seq, e.epoch, e.kind]), [[1, 3, 'transfer'], [2, 3, 'transfer']])
      // The new tables work on the migrated file, and sequence numbers continue after the old ones.
      assert.equal(store.clusterState.raiseEpoch('vectis-1').number, 1)
      const t = store.journal.begin(transfer(4))
      assert.equal(t.id, '4-0')
      assert.ok(t.seq > 2)
    }
  },
  2: {
    // Version 2: a completed send written before sends recorded the identity of their source.
    populate (db) {
      db.prepare(`INSERT INTO transfers (id, transfer_id, server, partner, virtual_file, direction, status, bytes,
        sync_point, sync_offset, sha256, file_path, diagnostic, member, epoch, created_at, updated_at, finished_at, seq)
        VALUES ('5-0', 327680, 'PESITSRV', 'CXCLIENT', 'OUTBOX', 'send', 'completed', 10, 0, 0, ?, '/shared/out/a', NULL,
        'vectis-1', 5, 1000, 2000, 2000, 1)`).run('b'.repeat(64))
    },
    verify (store) {
      assert.equal(store.journal.get('5-0')?.source, null)
      const q = { partner: 'CXCLIENT', virtualFile: 'OUTBOX', filePath: '/shared/out/a', source: '10:1:2' }
      assert.equal(store.journal.wasSent(q), false, 'a send without a recorded source never matches one')
      const t = store.journal.begin(transfer(6, { direction: 'send', virtualFile: 'OUTBOX', filePath: q.filePath, source: q.source }))
      store.journal.complete(t.id, { bytes: 10, sha256: 'c'.repeat(64) })
      assert.equal(store.journal.wasSent(q), true)
      assert.equal(store.journal.wasSent({ ...q, source: '10:1:3' }), false, 'another file under the same name is new')
    }
  },
  3: {
    // Version 3: cluster events in the log between transfer changes.
    populate (db) {
      const log = db.prepare('INSERT INTO journal_log (at, epoch, kind, transfer_key, data) VALUES (?, ?, ?, ?, ?)')
      log.run(1000, 7, 'cluster-event', null, JSON.stringify({ type: 'epoch:raised', epoch: 7, leader: 'vectis-2' }))
      log.run(1001, 7, 'transfer', '7-0', JSON.stringify({
        id: '7-0', transferId: 7 * 65536, server: 'PESITSRV', partner: 'CXCLIENT', virtualFile: 'PAYMENTS',
        direction: 'receive', status: 'in-progress', bytes: 0, syncPoint: 0, syncOffset: 0, sha256: null, filePath: null,
        source: null, diagnostic: null, member: 'vectis-2', epoch: 7, createdAt: '2026-01-01T00:00:01.001Z',
        updatedAt: '2026-01-01T00:00:01.001Z', finishedAt: null
      }))
      log.run(1002, 7, 'cluster-event', null, JSON.stringify({ type: 'member:suspected', epoch: 7, member: 'vectis-0' }))
    },
    verify (store) {
      // The events moved to their own table, in order; the log keeps the transfer change under its number.
      assert.deepEqual(store.journal.events(10).map((e) => [e.data.type, e.epoch, e.at]),
        [['member:suspected', 7, new Date(1002).toISOString()], ['epoch:raised', 7, new Date(1000).toISOString()]])
      assert.deepEqual(store.journal.changesSince(0, 10).map((e) => [e.seq, e.kind === 'transfer' ? e.data.id : e.kind]), [[2, '7-0']])
      assert.equal(store.journal.lastSeq(), 3, 'the numbers the events took are never used again')
      assert.equal(store.journal.position(), 2, 'the log as it is counts as replicated up to its end')
    }
  },
  4: {
    // Version 4: a replica at some position, before retention was replicated.
    populate (db) {
      db.prepare('INSERT INTO journal_log (seq, at, epoch, kind, transfer_key, data) VALUES (40, 1000, 3, \'transfer\', \'3-0\', ?)').run(JSON.stringify({
        id: '3-0', transferId: 3 * 65536, server: 'PESITSRV', partner: 'CXCLIENT', virtualFile: 'PAYMENTS',
        direction: 'receive', status: 'in-progress', bytes: 0, syncPoint: 0, syncOffset: 0, sha256: null, filePath: null,
        source: null, diagnostic: null, member: 'vectis-1', epoch: 3, createdAt: '2026-01-01T00:00:01.000Z',
        updatedAt: '2026-01-01T00:00:01.000Z', finishedAt: null
      }))
      db.prepare('UPDATE replication SET position = 40').run()
    },
    verify (store) {
      assert.equal(store.journal.position(), 40)
      assert.equal(store.journal.prunedThrough(), 0, 'nothing pruned yet: no horizon')
    }
  },
  5: {
    // Version 5: rows of a partner's transfers, two created at the same millisecond (the list orders them by rowid).
    populate (db) {
      const insert = db.prepare(`INSERT INTO transfers (id, transfer_id, server, partner, virtual_file, direction, status, bytes,
        sync_point, sync_offset, sha256, file_path, source, diagnostic, member, epoch, created_at, updated_at, finished_at, seq)
        VALUES (?, ?, 'PESITSRV', 'CXCLIENT', 'PAYMENTS', 'receive', ?, 0, 0, 0, NULL, NULL, NULL, NULL, 'vectis-1', 8, 5000, 5000, NULL, ?)`)
      insert.run('8-1', 8 * 65536 + 1, 'interrupted', 11)
      insert.run('8-0', 8 * 65536, 'in-progress', 10)
    },
    verify (store) {
      const rows = store.journal.list({ limit: 10 })
      assert.deepEqual(rows.map((r) => [r.id, r.status, r.initiator, r.attempts, r.request, r.nextAttemptAt]),
        [['8-0', 'in-progress', 'partner', 0, null, null], ['8-1', 'interrupted', 'partner', 0, null, null]], 'the same rows in the same order, a partner\'s')
      assert.deepEqual(store.journal.inProgress().map((r) => r.id), ['8-0'])
      // The new statuses are accepted: the table was rebuilt with its new constraint.
      const q = store.journal.queue.enqueue({ epoch: 9, member: 'vectis-1', direction: 'send', partner: 'CXCLIENT', serverId: 'CXSRV', remoteFile: 'STMTS', filePath: '/shared/out/a', request: { priority: 1 } })
      assert.equal(q.status, 'queued')
      assert.equal(store.journal.queue.depth(), 1)
    }
  }
}

test('every schema version below the current one has a migration fixture', () => {
  assert.equal(SCHEMA_VERSION, MIGRATIONS.length)
  for (let v = 0; v < SCHEMA_VERSION; v++) assert.ok(fixtures[v], `no fixture for version ${v}`)
})

for (let from = 0; from < SCHEMA_VERSION; from++) {
  test(`a populated database at schema version ${from} migrates to ${SCHEMA_VERSION} and keeps its data`, async (t) => {
    const dir = tempDataDir(t)
    const raw = new DatabaseConstructor(join(dir, DATABASE_FILE_NAME))
    raw.transaction(() => { applyMigrations(raw, from) })()
    assert.equal(schemaVersion(raw), from)
    fixtures[from]!.populate(raw)
    raw.close()

    const { store } = await startStore(t, dir)
    fixtures[from]!.verify(store)
    const lastSeq = store.journal.lastSeq()
    const rows = store.journal.list({ limit: 1000 })
    await store.stop()

    const check = new DatabaseConstructor(join(dir, DATABASE_FILE_NAME), { readonly: true })
    try {
      assert.equal(schemaVersion(check), SCHEMA_VERSION)
    } finally {
      check.close()
    }
    // Reopening the up-to-date database migrates nothing and finds what was written after the migration.
    const again = await startStore(t, dir)
    assert.equal(again.store.journal.lastSeq(), lastSeq)
    assert.deepEqual(again.store.journal.list({ limit: 1000 }), rows)
  })
}

test('a failing migration is rolled back whole: the database stays at its version with its data', async (t) => {
  const dir = tempDataDir(t)
  const raw = new DatabaseConstructor(join(dir, DATABASE_FILE_NAME))
  raw.transaction(() => { applyMigrations(raw, 1) })()
  fixtures[1]!.populate(raw)
  // A table in the way of version 2's CREATE TABLE makes that step fail after part of it ran.
  raw.exec('CREATE TABLE transfer_id_counters (x INTEGER)')
  raw.close()

  const store = new Store({ logger: silentLogger() }, { dataDir: dir })
  await assert.rejects(store.start(), (err: unknown) => {
    assert.ok(err instanceof MigrationError)
    assert.equal(err.fromVersion, 1)
    assert.equal(err.toVersion, SCHEMA_VERSION)
    assert.match(err.message, new RegExp(`${DATABASE_FILE_NAME}.*from schema version 1 to ${SCHEMA_VERSION}`))
    return true
  })
  assert.equal(store.started, false)

  const check = new DatabaseConstructor(join(dir, DATABASE_FILE_NAME), { readonly: true })
  try {
    assert.equal(schemaVersion(check), 1)
    const tables = (check.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>)
      .map((r) => r.name)
    assert.ok(!tables.includes('cluster_state'), 'the part of version 2 that ran was rolled back')
    assert.equal((check.prepare('SELECT count(*) AS n FROM transfers').get() as { n: number }).n, 1)
  } finally {
    check.close()
  }
})
