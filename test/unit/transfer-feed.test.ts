// The transfer feed of the events stream (daemon/transfer-feed.ts): throttled per transfer, ended rows at once,
// subscribed to its source only while someone listens.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TransferFeed } from '../../daemon/transfer-feed.js'
import type { TransferRecord } from '../../store/journal-records.js'

const row = (id: string, bytes: number, status: TransferRecord['status'] = 'in-progress'): TransferRecord => ({ id, bytes, status } as unknown as TransferRecord)

void test('at most one in-progress row per transfer per interval (the newest, trailing), an ended one at once', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] })
  let push: ((r: TransferRecord) => void) | undefined
  let subscriptions = 0
  const feed = new TransferFeed({ subscribe: (l) => { push = l; subscriptions++; return () => { push = undefined } } }, 250)
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
