/**
 * Durability of each commit, observed at the system-call level: under strace, every operation the PeSIT server
 * or the election waits on (a sync point, an epoch raise, a view counter, a transfer's start and end) has an
 * fsync or fdatasync of the WAL between its start and its return. kill -9 tests cannot show this (the page cache
 * survives them); SQLite does its own I/O, so the file-layer double does not apply to it; this does.
 * Skipped where strace is missing or ptrace is not allowed.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { tempDataDir } from '../helpers/store-fixtures.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const PROBE = join(ROOT, 'test/helpers/store-fsync-probe.ts')

function straceWorks (): boolean {
  const r = spawnSync('strace', ['-o', '/dev/null', 'true'], { stdio: 'ignore', timeout: 10_000 })
  return r.status === 0
}

test('each durable store operation fsyncs the WAL before it returns', { skip: !straceWorks() && 'strace is not installed or cannot trace here (Debian package strace; .ci/run installs it)' }, (t) => {
  const dir = tempDataDir(t, 'vectis-fsync-')
  const trace = join(dir, 'trace.txt')
  const r = spawnSync('strace', ['-f', '-y', '-e', 'trace=fsync,fdatasync,write', '-o', trace,
    process.execPath, '--import', 'tsx', PROBE, join(dir, 'data')], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
  assert.equal(r.status, 0, r.stderr)

  // Keep the marker writes to stdout and the syncs, in order.
  const events: string[] = []
  for (const line of readFileSync(trace, 'utf8').split('\n')) {
    const marker = /write\(1[^,]*, "((?:before|after) [\w-]+)\\n"/.exec(line)
    if (marker !== null) events.push(marker[1]!)
    else if (/(fsync|fdatasync)\(\d+<[^>]*vectis\.db-wal>\) = 0/.test(line)) events.push('wal-sync')
  }
  const labels = ['raiseEpoch', 'nextViewCounter', 'begin', 'syncPoint-1', 'syncPoint-2', 'syncPoint-3', 'syncPoint-4',
    'syncPoint-5', 'complete']
  for (const label of labels) {
    const from = events.indexOf(`before ${label}`)
    const to = events.indexOf(`after ${label}`)
    assert.ok(from >= 0 && to > from, `markers of ${label} not found in the trace`)
    assert.ok(events.slice(from + 1, to).includes('wal-sync'), `${label} returned without syncing the WAL`)
  }
})
