import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FrameDecoder, commonVersion, decodeEnvelope, encodeFrame } from '../../cluster/envelope.js'
import { TransportError } from '../../cluster/errors.js'
import { addressToMultiaddr } from '../../cluster/transport.js'
import { pskFromSecret } from '../../cluster/private-network.js'

function code (fn: () => unknown): string | undefined {
  try { fn() } catch (err) { return err instanceof TransportError ? err.code : 'other' }
  return undefined
}

void test('frames round-trip through the decoder, in any chunking, several per chunk', () => {
  const f1 = encodeFrame({ v: 1, c: 'blue', k: 'req', i: 1, f: '10.0.0.1:7800', p: { a: [1, 'é'] } })
  const f2 = encodeFrame({ v: 1, c: 'blue', k: 'rep', i: 1, p: null })
  const both = Buffer.concat([f1, f2])
  for (const size of [1, 3, 4, 5, f1.byteLength, both.byteLength]) {
    const r = new FrameDecoder()
    const bodies: Buffer[] = []
    for (let i = 0; i < both.byteLength; i += size) bodies.push(...r.push(both.subarray(i, i + size)))
    assert.equal(r.buffered, 0)
    assert.deepEqual(bodies.map(decodeEnvelope), [
      { v: 1, c: 'blue', k: 'req', i: 1, f: '10.0.0.1:7800', p: { a: [1, 'é'] } },
      { v: 1, c: 'blue', k: 'rep', i: 1, p: null }
    ])
  }
})

void test('oversized, trailing and malformed frames are invalid', () => {
  assert.equal(code(() => encodeFrame({ v: 1, c: 'x', k: 'req', p: 'y'.repeat(100) }, 50)), 'invalid')
  const header = Buffer.alloc(4); header.writeUInt32BE(1_000_000)
  assert.equal(code(() => new FrameDecoder(1000).push(header)), 'invalid', 'refused from the header alone')
  const cyclic: Record<string, unknown> = {}; cyclic.self = cyclic
  assert.equal(code(() => encodeFrame({ v: 1, c: 'x', k: 'req', p: cyclic })), 'invalid')
  for (const bad of ['not json', '[]', '{"c":"x","k":"req"}', '{"v":0,"c":"x","k":"req"}', '{"v":1,"k":"req"}',
    '{"v":1,"c":"x","k":"what"}', '{"v":1,"c":"x","k":"req","f":5}', '{"v":1,"c":"x","k":"req","i":-1}', '{"v":1,"c":"x","k":"req","i":"1"}']) {
    assert.equal(code(() => decodeEnvelope(Buffer.from(bad))), 'invalid', bad)
  }
})

void test('error frames keep their code and the version range; unknown fields of newer versions are ignored', () => {
  const env = decodeEnvelope(Buffer.from(JSON.stringify({ v: 7, c: 'x', k: 'err', e: { code: 'denied', message: 'no', versions: [5, 7] }, extra: 1 })))
  assert.deepEqual(env, { v: 7, c: 'x', k: 'err', e: { code: 'denied', message: 'no', versions: [5, 7] } })
  assert.deepEqual(decodeEnvelope(Buffer.from('{"v":1,"c":"x","k":"err"}')).e, { code: 'invalid', message: 'malformed error frame' })
})

void test('commonVersion picks the highest shared version', () => {
  const table: Array<[[number, number], [number, number], number | undefined]> = [
    [[1, 1], [1, 1], 1], [[1, 2], [1, 1], 1], [[1, 1], [1, 2], 1], [[2, 3], [1, 2], 2], [[3, 3], [1, 1], undefined], [[1, 1], [2, 2], undefined]
  ]
  for (const [a, b, want] of table) assert.equal(commonVersion({ min: a[0], max: a[1] }, { min: b[0], max: b[1] }), want, JSON.stringify([a, b]))
})

void test('addresses: ip:port and [ipv6]:port only', () => {
  assert.equal(addressToMultiaddr('10.1.2.3:7800').toString(), '/ip4/10.1.2.3/tcp/7800')
  assert.equal(addressToMultiaddr('[::1]:7800').toString(), '/ip6/::1/tcp/7800')
  for (const bad of ['10.1.2.3', '10.1.2.3:0', '10.1.2.3:70000', 'host:7800', ':7800', '']) {
    assert.equal(code(() => addressToMultiaddr(bad)), 'invalid', bad)
  }
})

void test('the pnet key is derived deterministically, in the pnet file format, different per secret', () => {
  const a = Buffer.from(pskFromSecret('s1')).toString()
  assert.match(a, /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/)
  assert.equal(a, Buffer.from(pskFromSecret('s1')).toString())
  assert.notEqual(a, Buffer.from(pskFromSecret('s2')).toString())
  assert.throws(() => pskFromSecret(''), /empty/)
})
