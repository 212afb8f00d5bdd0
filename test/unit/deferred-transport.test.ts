import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DeferredTransport } from '../../cluster/deferred-transport.js'
import { TransportError } from '../../cluster/errors.js'
import { MemoryNetwork, MemoryTransport } from '../helpers/memory-transport.js'

void test('before start: no peer id, requests fail as closed; the handler and listeners given early reach the real transport', async () => {
  const net = new MemoryNetwork()
  const other = new MemoryTransport(net, '10.0.0.2:7800', 'peer-b')
  await other.start()
  other.handle((_from, payload) => ({ echo: payload }))
  let opened = 0
  const t = new DeferredTransport(async () => { opened++; return new MemoryTransport(net, '10.0.0.1:7800', 'peer-a') })
  assert.throws(() => t.peerId, (e: unknown) => e instanceof TransportError && e.code === 'closed')
  await assert.rejects(t.request('10.0.0.2:7800', 1), (e: unknown) => e instanceof TransportError && e.code === 'closed')
  const seen: string[] = []
  t.handle((from, payload) => { seen.push(`${from.peerId}:${String(payload)}`); return 'ok' })
  const gone: string[] = []
  const off = t.onDisconnect((peerId) => { gone.push(peerId) })
  assert.equal(opened, 0, 'nothing is loaded before start')

  await Promise.all([t.start(), t.start()])
  assert.equal(opened, 1, 'concurrent starts load once')
  assert.equal(t.peerId, 'peer-a')
  assert.deepEqual(await t.request('10.0.0.2:7800', 'x'), { peerId: 'peer-b', reply: { echo: 'x' } })
  assert.deepEqual((await other.request('10.0.0.1:7800', 'hi')).reply, 'ok')
  assert.deepEqual(seen, ['peer-b:hi'])

  await other.stop() // its connections close: our listener hears it
  await new Promise((resolve) => setImmediate(resolve))
  assert.deepEqual(gone, ['peer-b'])
  off()
  await t.stop()
  await assert.rejects(t.request('10.0.0.2:7800', 1), (e: unknown) => e instanceof Error && /closed/.test(e.message))
})

void test('a failed load fails start; the next start loads again', async () => {
  const net = new MemoryNetwork()
  let attempts = 0
  const t = new DeferredTransport(async () => {
    attempts++
    if (attempts === 1) throw new Error('cannot load libp2p')
    return new MemoryTransport(net, '10.0.0.1:7800', 'peer-a')
  })
  await assert.rejects(t.start(), /cannot load libp2p/)
  await t.stop() // nothing to stop, and no hang
  await t.start()
  assert.equal(t.peerId, 'peer-a')
  assert.equal(attempts, 2)
  await t.stop()
})
