// The leader's live transfer progress over the cluster (cluster/progress-relay.ts): published only by the leader,
// under its epoch; a deposed leader's batch, another cluster's and malformed items are dropped.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PROGRESS_TOPIC, ProgressRelay, type ProgressItem } from '../../cluster/progress-relay.js'
import type { TopicHandler } from '../../cluster/transport-types.js'
import { silentLogger } from '../../common/logger.js'

function relay (state: { leader: boolean, epoch: number | undefined }, cluster = 'c1'): { relay: ProgressRelay, sent: Array<{ id: string, payload: unknown }>, deliver: (p: unknown) => void } {
  const sent: Array<{ id: string, payload: unknown }> = []
  let handler: TopicHandler | undefined
  const r = new ProgressRelay({
    logger: silentLogger(),
    transport: {
      publish: async (topic, id, payload) => { assert.equal(topic, PROGRESS_TOPIC); sent.push({ id, payload }) },
      subscribe: (topic, h) => { assert.equal(topic, PROGRESS_TOPIC); handler = h }
    },
    leadership: { isLeader: () => state.leader, currentEpoch: () => state.epoch === undefined ? undefined : { number: state.epoch, leader: 'vectis-0' } }
  }, { clusterName: cluster, nodeName: 'vectis-0' })
  r.start()
  return { relay: r, sent, deliver: (p) => { handler!(p, 'peer') } }
}

void test('the leader publishes its batches under its epoch, each with an id of its own; a standby publishes nothing', () => {
  const state = { leader: true, epoch: 7 as number | undefined }
  const { relay: r, sent } = relay(state)
  r.publish([{ id: 't1', bytes: 10, expectedBytes: 100 }])
  r.publish([{ id: 't1', bytes: 20, expectedBytes: 100 }])
  r.publish([])
  assert.deepEqual(sent.map((s) => s.payload), [
    { kind: 'progress', cluster: 'c1', leader: 'vectis-0', epoch: 7, items: [{ id: 't1', bytes: 10, expectedBytes: 100 }] },
    { kind: 'progress', cluster: 'c1', leader: 'vectis-0', epoch: 7, items: [{ id: 't1', bytes: 20, expectedBytes: 100 }] }
  ])
  assert.notEqual(sent[0]?.id, sent[1]?.id, 'two batches are two messages, not one deduplicated')
  state.leader = false
  r.publish([{ id: 't1', bytes: 30 }])
  assert.equal(sent.length, 2)
})

void test('a large batch is split into messages below the frame limit', () => {
  const { relay: r, sent } = relay({ leader: true, epoch: 1 })
  r.publish(Array.from({ length: 1200 }, (_, i) => ({ id: `t${i}`, bytes: i })))
  assert.deepEqual(sent.map((s) => (s.payload as { items: unknown[] }).items.length), [500, 500, 200])
})

void test('a member hands on what the leader of its epoch or a later one sent, and drops the rest', () => {
  const { relay: r, deliver } = relay({ leader: false, epoch: 5 })
  const got: ProgressItem[][] = []
  const off = r.onProgress((items) => { got.push(items) })
  const msg = (over: Record<string, unknown>): unknown => ({ kind: 'progress', cluster: 'c1', leader: 'vectis-1', epoch: 5, items: [{ id: 't', bytes: 1 }], ...over })
  deliver(msg({}))
  deliver(msg({ epoch: 6 }))
  deliver(msg({ epoch: 4 }))
  deliver(msg({ cluster: 'other' }))
  deliver(msg({ items: 'nope' }))
  deliver(msg({ items: [{ id: 't', bytes: -1 }, { id: 3, bytes: 1 }, { id: 't', bytes: 1.5 }, { id: 't', bytes: 2, expectedBytes: 'x' }, { id: 'ok', bytes: 2, expectedBytes: 9 }] }))
  deliver(null)
  deliver({ kind: 'head' })
  assert.deepEqual(got, [[{ id: 't', bytes: 1 }], [{ id: 't', bytes: 1 }], [{ id: 'ok', bytes: 2, expectedBytes: 9 }]])
  off()
  deliver(msg({}))
  assert.equal(got.length, 3, 'unsubscribed')
})
