// The membership machine's behaviour, pinned seed by seed: every twelfth run of the committed digest schedule must
// give its committed trace digest. A deliberate change of behaviour regenerates the file
// (`npm run bench:sim -- --digests --write`) and says in its commit which seeds changed and why; a refactoring
// changes none (`npm run bench:sim -- --digests --check` runs all of them).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { DIGESTS_FILE, digestSchedule, runDigest } from '../helpers/sim/digest-schedule.js'

void test('simulation trace digests match the committed baseline (a sample of the schedule)', () => {
  const want = JSON.parse(readFileSync(DIGESTS_FILE, 'utf8')) as Record<string, string>
  const schedule = digestSchedule(1200)
  assert.equal(Object.keys(want).length, schedule.length, 'the committed file covers the whole schedule')
  const changed: string[] = []
  schedule.forEach((e, i) => {
    if (i % 12 !== 0) return
    const got = runDigest(e)
    if (got !== want[e.key]) changed.push(`${e.key}: want ${want[e.key] ?? '-'}, got ${got}`)
  })
  assert.deepEqual(changed, [], `the machine behaves differently on these runs:\n${changed.join('\n')}`)
})
