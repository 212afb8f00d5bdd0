import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nextTransferId } from '../../cli/transfer-ids.js'

test('vectis send ids: a persisted counter, never 0, wrapping at 2^24, unique under concurrent senders', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vectis-ids-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  const first = await nextTransferId(dir)
  assert.ok(first >= 1 && first <= 0xffffff)
  assert.equal(await nextTransferId(dir), first === 0xffffff ? 1 : first + 1)
  writeFileSync(join(dir, 'next-transfer-id.json'), String(0xffffff))
  assert.equal(await nextTransferId(dir), 0xffffff)
  assert.equal(await nextTransferId(dir), 1, 'after the last id comes 1, never 0')
  const ids = await Promise.all(Array.from({ length: 40 }, async () => await nextTransferId(dir)))
  assert.equal(new Set(ids).size, 40, 'concurrent callers never get the same id')
  assert.deepEqual([...ids].sort((a, b) => a - b), Array.from({ length: 40 }, (_, i) => 2 + i))
  // A lock left by a crashed sender is taken over once stale.
  writeFileSync(join(dir, 'next-transfer-id.json.lock'), '')
  utimesSync(join(dir, 'next-transfer-id.json.lock'), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000))
  assert.equal(await nextTransferId(dir), 42)
})
