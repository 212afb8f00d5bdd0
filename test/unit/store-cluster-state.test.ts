import { test } from 'node:test'
import assert from 'node:assert/strict'
import { StoreError } from '../../store/errors.js'
import { startStore, tempDataDir } from '../helpers/store-fixtures.js'

test('a member restarted 5 times raises 5 different, rising epochs', async (t) => {
  const dir = tempDataDir(t)
  const epochs: number[] = []
  for (let i = 0; i < 5; i++) {
    const { store } = await startStore(t, dir)
    const before = store.clusterState.highestEpoch()
    const e = store.clusterState.raiseEpoch('vectis-0')
    assert.equal(e.number, (before?.number ?? 0) + 1)
    assert.deepEqual(store.clusterState.highestEpoch(), e)
    epochs.push(e.number)
    await store.stop()
  }
  assert.deepEqual(epochs, [1, 2, 3, 4, 5])
})

test('raiseEpoch honours the election\'s lower bound, and logs every raise', async (t) => {
  const { store } = await startStore(t, tempDataDir(t))
  const cs = store.clusterState
  assert.equal(cs.highestEpoch(), undefined)
  assert.deepEqual(cs.raiseEpoch('vectis-1', 10), { number: 10, leader: 'vectis-1' })
  assert.deepEqual(cs.raiseEpoch('vectis-2', 3), { number: 11, leader: 'vectis-2' }, 'never below highest seen + 1')
  const events = store.journal.events(10).map((e) => [e.data.type, e.epoch, e.data.leader])
  assert.deepEqual(events, [['epoch:raised', 11, 'vectis-2'], ['epoch:raised', 10, 'vectis-1']])
  assert.throws(() => cs.raiseEpoch('', 0), StoreError)
  assert.throws(() => cs.raiseEpoch('x', -1), StoreError)
  assert.equal(cs.highestEpochNumber(), 11)
})

test('noteEpochSeen only ever raises, and the raise survives a restart', async (t) => {
  const dir = tempDataDir(t)
  {
    const { store } = await startStore(t, dir)
    const cs = store.clusterState
    assert.equal(cs.noteEpochSeen({ number: 4, leader: 'vectis-2' }), true)
    assert.equal(cs.noteEpochSeen({ number: 3, leader: 'vectis-1' }), false)
    assert.equal(cs.noteEpochSeen({ number: 4, leader: 'vectis-1' }), false, 'same number, other leader: kept')
    assert.deepEqual(cs.highestEpoch(), { number: 4, leader: 'vectis-2' })
    await store.stop()
  }
  const { store } = await startStore(t, dir)
  assert.deepEqual(store.clusterState.highestEpoch(), { number: 4, leader: 'vectis-2' })
  assert.equal(store.clusterState.raiseEpoch('vectis-0').number, 5)
})

test('the view counter is never reused, across restarts and with counters seen from others', async (t) => {
  const dir = tempDataDir(t)
  const handed: number[] = []
  for (let i = 0; i < 3; i++) {
    const { store } = await startStore(t, dir)
    const cs = store.clusterState
    handed.push(cs.nextViewCounter())
    handed.push(cs.nextViewCounter())
    if (i === 1) {
      assert.equal(cs.noteViewCounterSeen(40), true)
      assert.equal(cs.noteViewCounterSeen(12), false)
      handed.push(cs.nextViewCounter())
      handed.push(cs.nextViewCounter(100))
    }
    await store.stop()
  }
  assert.deepEqual(handed, [1, 2, 3, 4, 41, 100, 101, 102])
  const { store } = await startStore(t, dir)
  assert.equal(store.clusterState.viewCounter(), 102)
})

test('the membership state round-trips as JSON with its epoch and counter, survives a restart, and can be forgotten', async (t) => {
  const dir = tempDataDir(t)
  const state = { highestEpoch: { number: 3, leader: 'vectis-0' }, maxCounter: 7, members: ['vectis-0', 'vectis-1'] }
  const epoch = { number: 3, leader: 'vectis-0' }
  {
    const { store } = await startStore(t, dir)
    assert.equal(store.clusterState.membershipState(), undefined)
    store.clusterState.saveMembershipState(state, epoch, 7)
    assert.deepEqual(store.clusterState.membershipState(), state)
    await store.stop()
  }
  const { store } = await startStore(t, dir)
  assert.deepEqual(store.clusterState.membershipState(), state)
  assert.equal(store.clusterState.viewCounter(), 7)
  store.clusterState.saveMembershipState(undefined, epoch, 0)
  assert.equal(store.clusterState.membershipState(), undefined)
  assert.throws(() => { store.clusterState.saveMembershipState(() => 1, epoch, 0) }, /JSON/)
})
