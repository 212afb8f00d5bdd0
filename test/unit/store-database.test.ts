import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import DatabaseConstructor from 'better-sqlite3'
import { silentLogger } from '../../common/logger.js'
import { BUSY_TIMEOUT_MS, closeDatabase, DATABASE_FILE_NAME, openDatabase } from '../../store/database.js'
import { DatabaseCorruptError, DatabaseOpenError, DatabaseTooNewError, StoreConfigError, StoreNotStartedError } from '../../store/errors.js'
import { SCHEMA_VERSION } from '../../store/migrations.js'
import { Store } from '../../store/store.js'
import { startStore, tempDataDir, transfer } from '../helpers/store-fixtures.js'

test('a new database is created in WAL mode with synchronous=FULL and a busy timeout', (t) => {
  const dir = join(tempDataDir(t), 'nested', 'data')
  const { db, path, fromVersion, toVersion } = openDatabase(dir, silentLogger())
  try {
    assert.equal(path, join(dir, DATABASE_FILE_NAME))
    assert.equal(fromVersion, 0)
    assert.equal(toVersion, SCHEMA_VERSION)
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal')
    assert.equal(db.pragma('synchronous', { simple: true }), 2) // FULL
    assert.equal(db.pragma('busy_timeout', { simple: true }), BUSY_TIMEOUT_MS)
    assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
  } finally {
    closeDatabase(db, silentLogger())
  }
})

test('a database newer than the code is refused, naming the path and both versions, and left untouched', async (t) => {
  const dir = tempDataDir(t)
  const file = join(dir, DATABASE_FILE_NAME)
  {
    const { db } = openDatabase(dir, silentLogger())
    db.pragma(`user_version = ${SCHEMA_VERSION + 3}`)
    closeDatabase(db, silentLogger())
  }
  const before = readFileSync(file)
  const store = new Store({ logger: silentLogger() }, { dataDir: dir })
  await assert.rejects(store.start(), (err: unknown) => {
    assert.ok(err instanceof DatabaseTooNewError)
    assert.equal(err.path, file)
    assert.equal(err.databaseVersion, SCHEMA_VERSION + 3)
    assert.equal(err.codeVersion, SCHEMA_VERSION)
    assert.ok(err.message.includes(file))
    assert.match(err.message, new RegExp(`version ${SCHEMA_VERSION + 3}.*the ${SCHEMA_VERSION} this release`))
    return true
  })
  assert.equal(store.started, false)
  assert.throws(() => store.journal, StoreNotStartedError)
  assert.deepEqual(readFileSync(file), before)
})

test('a file that is not a database is reported with its path and the way out, never recreated', async (t) => {
  const dir = tempDataDir(t)
  const file = join(dir, DATABASE_FILE_NAME)
  const garbage = randomBytes(16384)
  writeFileSync(file, garbage)
  const store = new Store({ logger: silentLogger() }, { dataDir: dir })
  await assert.rejects(store.start(), (err: unknown) => {
    assert.ok(err instanceof DatabaseCorruptError)
    assert.equal(err.path, file)
    assert.ok(err.message.includes(file))
    assert.match(err.message, /backup/)
    assert.match(err.message, /move it away/)
    assert.match(err.message, /not recreated/)
    return true
  })
  assert.deepEqual(readFileSync(file), garbage, 'the damaged file is left as it was')
  // A second attempt says the same: nothing was "repaired" behind the operator's back.
  await assert.rejects(new Store({ logger: silentLogger() }, { dataDir: dir }).start(), DatabaseCorruptError)
})

test('a database with a damaged page fails the integrity check at open', async (t) => {
  const dir = tempDataDir(t)
  const file = join(dir, DATABASE_FILE_NAME)
  {
    const { store } = await startStore(t, dir)
    for (let i = 0; i < 300; i++) {
      const r = store.journal.begin(transfer(1, { filePath: `/shared/inbox/file-${i}-${'x'.repeat(100)}` }))
      store.journal.recordSyncPoint(r.id, { syncPoint: 1, offset: 4096 })
    }
    await store.stop() // checkpoints the WAL into the main file
  }
  const pageSize = (() => {
    const db = new DatabaseConstructor(file, { readonly: true })
    try { return db.pragma('page_size', { simple: true }) as number } finally { db.close() }
  })()
  // Overwrite the b-tree pages after the schema page with noise, leaving the header valid.
  const fd = openSync(file, 'r+')
  try {
    writeSync(fd, Buffer.alloc(pageSize * 4, 0xA5), 0, pageSize * 4, pageSize * 2)
  } finally {
    closeSync(fd)
  }
  await assert.rejects(new Store({ logger: silentLogger() }, { dataDir: dir }).start(), (err: unknown) => {
    assert.ok(err instanceof DatabaseCorruptError, `got ${String(err)}`)
    assert.ok(err.message.includes(file))
    return true
  })
})

test('a data directory that is a file is refused with the path', async (t) => {
  const dir = tempDataDir(t)
  const notDir = join(dir, 'plain-file')
  writeFileSync(notDir, 'x')
  await assert.rejects(new Store({ logger: silentLogger() }, { dataDir: notDir }).start(), (err: unknown) => {
    assert.ok(err instanceof DatabaseOpenError)
    assert.ok(err.message.includes(join(notDir, DATABASE_FILE_NAME)))
    return true
  })
})

test('bad store options are refused at construction', () => {
  assert.throws(() => new Store({ logger: silentLogger() }, { dataDir: '' }), StoreConfigError)
  for (const days of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => new Store({ logger: silentLogger() }, { dataDir: '/tmp/x', retentionDays: days }),
      /VECTIS_JOURNAL_RETENTION_DAYS/)
  }
})

test('start and stop are idempotent and a stopped store can start again', async (t) => {
  const dir = tempDataDir(t)
  const store = new Store({ logger: silentLogger() }, { dataDir: dir })
  t.after(async () => { await store.stop() })
  await store.start()
  await store.start()
  const r = store.journal.begin(transfer(1))
  await store.stop()
  await store.stop()
  assert.throws(() => store.journal, StoreNotStartedError)
  await store.start()
  assert.equal(store.journal.get(r.id)?.id, r.id)
})

test('an online backup is a complete database that a store opens with the same contents', async (t) => {
  const dir = tempDataDir(t)
  const { store } = await startStore(t, dir)
  const e = store.clusterState.raiseEpoch('vectis-0')
  const r = store.journal.begin(transfer(e.number))
  store.journal.recordSyncPoint(r.id, { syncPoint: 1, offset: 100 })
  const restoredDir = join(tempDataDir(t), 'restored')
  mkdirSync(restoredDir)
  await store.backup(join(restoredDir, DATABASE_FILE_NAME))
  store.journal.recordSyncPoint(r.id, { syncPoint: 2, offset: 200 }) // after the backup: not in it

  const restored = (await startStore(t, restoredDir)).store
  assert.deepEqual(restored.clusterState.highestEpoch(), e)
  assert.equal(restored.journal.get(r.id)?.syncPoint, 1)
  assert.deepEqual(restored.journal.changesSince(0, 100), store.journal.changesSince(0, 100).slice(0, -1))
})
