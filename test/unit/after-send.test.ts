// The after-send action (transfer/send-source.ts applyAfterSend): a move never replaces a file already in the move
// directory, even when done late several times (PI 13 then unknown: 0).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NodeDurableFs } from '../../store/durable-fs.js'
import { applyAfterSend } from '../../transfer/send-source.js'

void test('moving files of one name into the same directory keeps every one of them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vectis-after-send-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  const out = join(dir, 'out')
  mkdirSync(out)
  const after = { action: 'move' as const, directory: join(dir, 'sent', '${partner}') }
  const moved: Array<string | undefined> = []
  for (const [i, pi13] of [7, 0, 0, 0].entries()) {
    writeFileSync(join(out, 'report.csv'), `day ${i}`)
    moved.push(await applyAfterSend(new NodeDurableFs(), after, out, 'report.csv', 'BANK', pi13))
  }
  const sent = join(dir, 'sent', 'BANK')
  assert.deepEqual(moved, ['report.csv', 'report.csv.0', 'report.csv.0.1', 'report.csv.0.2'].map((n) => join(sent, n)))
  assert.deepEqual(readdirSync(out), [])
  assert.deepEqual(moved.map((p) => readFileSync(p ?? '', 'utf8')), ['day 0', 'day 1', 'day 2', 'day 3'], 'none replaced')
  writeFileSync(join(out, 'gone.csv'), 'x')
  assert.equal(await applyAfterSend(new NodeDurableFs(), { action: 'delete' }, out, 'gone.csv', 'BANK', 1), undefined)
  assert.deepEqual(readdirSync(out), [])
})
