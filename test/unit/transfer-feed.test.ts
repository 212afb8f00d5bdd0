// The transfer feed of the events stream (daemon/transfer-feed.ts): throttled per transfer, ended rows at once,
// subscribed to its source only while someone listens; live progress between sync points merged into the rows; the
// collector that reduces the sessions' progress reports.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ProgressCollector, TransferFeed } from '../../daemon/transfer-feed.js'
import type { LiveTransferRecord } from '../../daemon/status.js'
import type { ProgressItem } from '../../cluster/progress-relay.js'
import type { TransferRecord } from '../../store/journal-records.js'

const row = (id: string, bytes: number, status: TransferRecord['status'] = 'in-progress'): TransferRecord => ({ id, bytes, status } as unknown as TransferRecord)

void test('at most one in-progress row per transfer per interval (the newest, trailing), an ended one at once', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] })
  let push: ((r: TransferRecord) => void) | undefined
  let subscriptions = 0
  const feed = new TransferFeed({ subscribe: (l) => { push = l; subscriptions++; return () => { push = undefined } }, lookup: () => undefined }, 250)
  const got: Array<[string, number, string]> = []
  const off = feed.subscribe((r) => { got.push([r.id, r.bytes, r.status]) })
  const off2 = feed.subscribe(() => {})
  assert.equal(subscriptions, 1, 'one source subscription for any number of listeners')
  push!(row('a', 1))
  push!(row('a', 2))
  push!(row('b', 10))
  push!(row('a', 3))
  assert.deepEqual(got, [['a', 1, 'in-progress'], ['b', 10, 'in-progress']])
  t.mock.timers.tick(250)
  assert.deepEqual(got.slice(2), [['a', 3, 'in-progress']], 'the newest row, once the interval passed')
  push!(row('a', 4))
  push!(row('a', 5, 'completed'))
  t.mock.timers.tick(1000)
  assert.deepEqual(got.slice(3), [['a', 5, 'completed']], 'the ended row at once; the pending one dropped')
  off()
  assert.ok(push !== undefined)
  off2()
  assert.equal(push, undefined, 'unsubscribed from the source with the last listener')
})

void test('live progress: merged into the row in progress, the larger byte count kept, the size carried; none after the end', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] })
  let push: ((r: TransferRecord) => void) | undefined
  const journal = new Map<string, TransferRecord>([['old', row('old', 100, 'completed')], ['a', row('a', 0)]])
  let lookups = 0
  const feed = new TransferFeed({ subscribe: (l) => { push = l; return () => { push = undefined } }, lookup: (id) => { lookups++; return journal.get(id) } }, 250)
  feed.progress([{ id: 'a', bytes: 10 }])
  assert.equal(lookups, 0, 'nobody listens: nothing looked up')
  const got: LiveTransferRecord[] = []
  const off = feed.subscribe((r) => { got.push(r) })
  const tick = (): void => { t.mock.timers.tick(250) }

  feed.progress([{ id: 'a', bytes: 4096, expectedBytes: 10240 }])
  assert.deepEqual(got.map((r) => [r.id, r.bytes, r.expectedBytes]), [['a', 4096, 10240]], 'a row the feed had not seen, read from the journal')
  tick()
  push!(row('a', 2048)) // a sync point behind the live figure
  assert.deepEqual(got.slice(1).map((r) => [r.bytes, r.expectedBytes]), [[4096, 10240]], 'a sync point behind the live figure keeps it, and the size')
  tick()
  feed.progress([{ id: 'a', bytes: 4096, expectedBytes: 10240 }])
  tick()
  assert.equal(got.length, 2, 'no change, no row')
  feed.progress([{ id: 'a', bytes: 8192, expectedBytes: 10240 }, { id: 'unknown', bytes: 5 }, { id: 'old', bytes: 50 }])
  assert.deepEqual(got.slice(2).map((r) => [r.id, r.bytes]), [['a', 8192]], 'unknown and ended rows take no progress')
  journal.set('a', row('a', 10000, 'completed'))
  push!(row('a', 10000, 'completed'))
  feed.progress([{ id: 'a', bytes: 9000, expectedBytes: 10240 }])
  tick()
  assert.deepEqual(got.slice(3).map((r) => [r.id, r.bytes, r.status, r.expectedBytes]), [['a', 10000, 'completed', undefined]], 'the end as journaled; progress arriving after it ignored')
  off()
})

void test('the collector hands on the latest figure of each transfer at most every interval, and runs no timer while nothing moves', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] })
  const batches: ProgressItem[][] = []
  const c = new ProgressCollector((items) => { batches.push(items) }, 250)
  c.update('a', { bytes: 1 })
  c.update('b', { bytes: 7, expectedBytes: 70 })
  c.update('a', { bytes: 2 })
  c.update('', { bytes: 3 })
  assert.equal(batches.length, 0)
  t.mock.timers.tick(250)
  assert.deepEqual(batches, [[{ id: 'a', bytes: 2 }, { id: 'b', bytes: 7, expectedBytes: 70 }]])
  t.mock.timers.tick(1000)
  assert.equal(batches.length, 1, 'nothing moved: nothing handed on')
  c.update('a', { bytes: 5 })
  c.stop()
  t.mock.timers.tick(1000)
  assert.equal(batches.length, 1, 'stopped: the pending figure dropped')
})
