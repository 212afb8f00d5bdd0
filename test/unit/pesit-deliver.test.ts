import { test } from 'node:test'
import { randomBytes } from 'node:crypto'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NodeDurableFs } from '../../store/durable-fs.js'
import { checkpointNameFor, deliver, IncomingFile, latestCheckpoint, partialNameFor, readCheckpoint, type IncomingKey } from '../../transfer/receive-store.js'
import { TransferStorageError } from '../../transfer/errors.js'

test('a delivery never replaces a file delivered meanwhile (a paused old leader resuming past its lease check)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vectis-deliver-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  const fs = new NodeDurableFs()
  writeFileSync(join(dir, '.a.part'), 'from the new leader')
  await deliver(fs, join(dir, '.a.part'), join(dir, 'A'), dir)
  assert.equal(readFileSync(join(dir, 'A'), 'utf8'), 'from the new leader')
  assert.ok(!existsSync(join(dir, '.a.part')))
  // The old leader's copy arrives late under the same final name.
  writeFileSync(join(dir, '.a.old.part'), 'stale')
  await assert.rejects(deliver(fs, join(dir, '.a.old.part'), join(dir, 'A'), dir),
    (e: unknown) => e instanceof TransferStorageError && e.diagnostic.reason === 204)
  assert.equal(readFileSync(join(dir, 'A'), 'utf8'), 'from the new leader', 'not replaced')
  assert.ok(existsSync(join(dir, '.a.old.part')), 'the late copy stays where it was')
})

test('a restart taken over by a new leader continues in a partial file of its own: the old leader\'s late writes land in an orphan', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vectis-fence-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  const fs = new NodeDurableFs()
  const key = (epoch: number): IncomingKey => ({ directory: dir, stem: '.vectis-P-F-7', partner: 'P', server: 'S', file: 'F', transferId: 7, articleFormat: 0x80, articleLength: 4096, epoch })
  const data = randomBytes(300_000)
  // The old leader (epoch 1) acknowledges sync point 1 at 100,000 bytes, then receives 50,000 more.
  const a = await IncomingFile.open(fs, key(1), false)
  await a.append(data.subarray(0, 100_000))
  const at = await a.handOff()
  await a.checkpointAt(1, at.offset, at.articles)
  await a.append(data.subarray(100_000, 150_000))
  // It is paused past its lease check; the partner restarts on the new leader (epoch 2).
  const b = await IncomingFile.open(fs, key(2), true)
  assert.equal(b.bytes, 100_000)
  assert.equal((await readCheckpoint(fs, join(dir, checkpointNameFor(key(2).stem, 2))))?.partial, partialNameFor(key(2).stem, 2))
  assert.ok(!existsSync(join(dir, checkpointNameFor(key(1).stem, 1))), 'the checkpoint taken over is this leadership\'s now')
  // The old leader wakes up and writes what it had, and its checkpoint: into its own files.
  const late = Buffer.alloc(50_000, 0xee)
  await a.append(late)
  const lateAt = await a.handOff()
  await a.checkpointAt(2, lateAt.offset, lateAt.articles)
  const orphan = readFileSync(join(dir, partialNameFor(key(1).stem, 1)))
  assert.ok(orphan.subarray(150_000, 200_000).equals(late), 'the late write happened, in the orphan')
  assert.equal((await readCheckpoint(fs, join(dir, checkpointNameFor(key(1).stem, 1))))?.offset, 200_000, 'the late checkpoint happened, in its own file')
  assert.equal(readFileSync(join(dir, partialNameFor(key(2).stem, 2))).length, 100_000, 'the new leader\'s file is untouched')
  const latest = await latestCheckpoint(fs, key(2))
  assert.deepEqual([latest?.checkpoint.offset, latest?.checkpoint.partial], [100_000, partialNameFor(key(2).stem, 2)], 'a restart still reads the new leader\'s checkpoint')
  // The new leader receives the rest and delivers: the right file; the orphan goes.
  await b.append(data.subarray(100_000))
  const path = await b.commit('FINAL', () => {})
  assert.ok(readFileSync(path).equals(data))
  assert.ok(!existsSync(join(dir, partialNameFor(key(1).stem, 1))))
  assert.ok(!existsSync(join(dir, checkpointNameFor(key(1).stem, 1))))
  // The old leader's own delivery, later still, changes nothing.
  await assert.rejects(a.commit('FINAL', () => {}), TransferStorageError)
  assert.ok(readFileSync(path).equals(data))
})

test('a checkpoint is not written once the lease check before it fails (a member that lost its lease during the fsync)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vectis-fence-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  const fs = new NodeDurableFs()
  const key: IncomingKey = { directory: dir, stem: '.vectis-P-F-8', partner: 'P', server: 'S', file: 'F', transferId: 8, articleFormat: 0x80, articleLength: 4096, epoch: 1 }
  const f = await IncomingFile.open(fs, key, false)
  await f.append(randomBytes(10_000))
  let at = await f.handOff()
  await f.checkpointAt(1, at.offset, at.articles, () => {})
  await f.append(randomBytes(10_000))
  at = await f.handOff()
  await assert.rejects(f.checkpointAt(2, at.offset, at.articles, () => { throw new Error('not leader') }), /not leader/)
  assert.equal((await latestCheckpoint(fs, key))?.checkpoint.syncPoint, 1, 'the checkpoint of sync point 1 stays')
  await f.closeHandle()
})

test('a takeover makes its own checkpoint the newest, also over a higher epoch left by a cluster whose shared directory this one inherited', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vectis-fence-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  const fs = new NodeDurableFs()
  const key = (epoch: number): IncomingKey => ({ directory: dir, stem: '.vectis-P-F-9', partner: 'P', server: 'S', file: 'F', transferId: 9, articleFormat: 0x80, articleLength: 4096, epoch })
  const data = randomBytes(200_000)
  // The old cluster (epoch 47) acknowledged 50,000 bytes, then every member was lost; the new one starts at epoch 2.
  const old = await IncomingFile.open(fs, key(47), false)
  await old.append(data.subarray(0, 50_000))
  const at = await old.handOff()
  await old.checkpointAt(1, at.offset, at.articles)
  await old.closeHandle()
  const a = await IncomingFile.open(fs, key(2), true)
  assert.equal(a.bytes, 50_000)
  await a.append(data.subarray(50_000, 120_000))
  const at2 = await a.handOff()
  await a.checkpointAt(2, at2.offset, at2.articles)
  await a.closeHandle()
  assert.equal((await latestCheckpoint(fs, key(3)))?.checkpoint.offset, 120_000, 'epoch 2\'s checkpoint, not the old cluster\'s')
  // The next leadership resumes from it and delivers.
  const b = await IncomingFile.open(fs, key(3), true)
  assert.equal(b.bytes, 120_000)
  await b.append(data.subarray(120_000))
  assert.ok(readFileSync(await b.commit('FINAL9', () => {})).equals(data))
})
