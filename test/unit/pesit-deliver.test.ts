import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NodeDurableFs } from '../../store/durable-fs.js'
import { deliver } from '../../transfer/receive-store.js'
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
