import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, stat, writeFile, chmod, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IDENTITY_KEY_FILE, loadOrCreateIdentityKey } from '../../cluster/identity-key.js'
import { IdentityKeyError } from '../../cluster/errors.js'
import { LogSink } from '../helpers/log-sink.js'

void test('created once (0600, no temporary file left), then reused', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vectis-id-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const data = join(dir, 'nested', 'data')
  const k1 = await loadOrCreateIdentityKey(data)
  const k2 = await loadOrCreateIdentityKey(data)
  assert.equal(k1.type, 'Ed25519')
  assert.ok(k1.equals(k2))
  assert.equal((await stat(join(data, IDENTITY_KEY_FILE))).mode & 0o777, 0o600)
  assert.deepEqual(await readdir(data), [IDENTITY_KEY_FILE])
})

void test('a corrupt key is an error naming the file, never silently replaced; a loose mode is tightened', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vectis-id-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, IDENTITY_KEY_FILE)
  await writeFile(file, 'garbage')
  await assert.rejects(loadOrCreateIdentityKey(dir), (err: unknown) => err instanceof IdentityKeyError && err.message.includes(file))
  await rm(file)
  await loadOrCreateIdentityKey(dir)
  await chmod(file, 0o644)
  const sink = new LogSink('info')
  await loadOrCreateIdentityKey(dir, sink.logger)
  assert.equal((await stat(file)).mode & 0o777, 0o600)
  assert.ok(sink.find((l) => /readable by others/.test(l.msg ?? '')))
})
