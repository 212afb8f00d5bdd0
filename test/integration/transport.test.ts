// Cluster transport over real sockets on 127.0.3.x (this file's own loopback range).
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { Libp2pTransport, type Libp2pTransportInit } from '../../cluster/transport.js'
import { TransportError } from '../../cluster/errors.js'
import { IDENTITY_KEY_FILE } from '../../cluster/identity-key.js'
import { silentLogger } from '../../common/logger.js'
import { LogSink } from '../helpers/log-sink.js'
import { waitFor } from '../helpers/wait-for.js'

const NET = '127.0.3'

async function tempDir (t: TestContext): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'vectis-transport-'))
  t.after(() => rm(d, { recursive: true, force: true }))
  return d
}

async function startTransport (t: TestContext, host: number, init: Partial<Libp2pTransportInit> = {}, sink?: LogSink): Promise<Libp2pTransport> {
  const tr = new Libp2pTransport({ logger: sink?.logger ?? silentLogger() }, {
    dataDir: init.dataDir ?? await tempDir(t),
    advertiseHost: `${NET}.${host}`,
    bindHost: `${NET}.${host}`,
    port: 0,
    // Generous deadlines: the machine may be loaded; tests of timeouts pass their own short ones.
    dialTimeoutMs: 5000,
    requestTimeoutMs: 10_000,
    ...init
  })
  t.after(() => tr.stop())
  await tr.start()
  return tr
}

async function rejectsWith (p: Promise<unknown>, code: string | undefined): Promise<TransportError> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof TransportError, `expected a TransportError, got ${String(err)}`)
    if (code !== undefined) assert.equal(err.code, code, `expected code ${code}, got ${err.code}: ${err.message}`)
    return err
  }
  assert.fail(`expected a rejection with ${code ?? 'a TransportError'}`)
}

/** A TCP relay that records every byte in both directions. */
async function recordingProxy (t: TestContext, host: string, target: string): Promise<{ address: string, bytes: () => Buffer }> {
  const chunks: Buffer[] = []
  const sockets = new Set<Socket>()
  const [thost, tport] = target.split(':') as [string, string]
  const server: Server = createServer((client) => {
    const upstream = connect(Number(tport), thost)
    sockets.add(client); sockets.add(upstream)
    client.on('data', (d: Buffer) => { chunks.push(d); upstream.write(d) })
    upstream.on('data', (d: Buffer) => { chunks.push(d); client.write(d) })
    const end = (): void => { client.destroy(); upstream.destroy() }
    client.on('close', end); upstream.on('close', end)
    client.on('error', end); upstream.on('error', end)
  })
  server.listen(0, host)
  await once(server, 'listening')
  t.after(() => { for (const s of sockets) s.destroy(); server.close() })
  const addr = server.address()
  assert.ok(addr !== null && typeof addr === 'object')
  return { address: `${host}:${addr.port}`, bytes: () => Buffer.concat(chunks) }
}

void test('request and reply over one reused connection; the handler sees who asked', async (t) => {
  const a = await startTransport(t, 10)
  const b = await startTransport(t, 11)
  const seen: Array<{ from: unknown, payload: unknown }> = []
  b.handle((from, payload) => { seen.push({ from, payload }); return { ack: (payload as { n: number }).n } })
  const r1 = await a.request(b.address, { n: 1 })
  const r2 = await a.request(b.address, { n: 2 })
  assert.deepEqual(r1, { peerId: b.peerId, reply: { ack: 1 } })
  assert.deepEqual(r2.reply, { ack: 2 })
  assert.equal(seen.length, 2)
  const f1 = seen[0]!.from as { peerId: string, remoteAddress: string, socketAddress: string, version: number }
  const f2 = seen[1]!.from as typeof f1
  assert.equal(f1.peerId, a.peerId)
  assert.equal(f1.remoteAddress, a.address, 'the advertised address of the sender, to request it back')
  assert.equal(f1.version, 1)
  assert.equal(f1.socketAddress, f2.socketAddress, 'the second request reused the first connection')
  // The reverse direction reuses the connection a opened (one connection per peer pair).
  a.handle(() => 'pong')
  const back = await b.request(a.address, 'ping')
  assert.deepEqual(back, { peerId: a.peerId, reply: 'pong' })
})

void test('concurrent requests to a peer share one dial', async (t) => {
  const a = await startTransport(t, 12)
  const b = await startTransport(t, 13)
  const sockets = new Set<string>()
  b.handle((from, p) => { sockets.add(from.socketAddress ?? ''); return p })
  const replies = await Promise.all(Array.from({ length: 20 }, async (_, i) => a.request(b.address, i)))
  assert.deepEqual(replies.map((r) => r.reply), Array.from({ length: 20 }, (_, i) => i))
  assert.equal(sockets.size, 1)
})

void test('nothing listening is refused; a bad address is invalid; a stopped transport is closed', async (t) => {
  const a = await startTransport(t, 14)
  await rejectsWith(a.request(`${NET}.99:7999`, 'x'), 'refused')
  await rejectsWith(a.request('not-an-address', 'x'), 'invalid')
  await rejectsWith(a.request('some.host:7800', 'x'), 'invalid')
  await a.stop()
  await rejectsWith(a.request(`${NET}.99:7999`, 'x'), 'closed')
})

void test('a slow handler and a silent listener both time out', async (t) => {
  const a = await startTransport(t, 15)
  const b = await startTransport(t, 16)
  const release = new AbortController()
  t.after(() => { release.abort() })
  b.handle(async () => { await once(release.signal, 'abort'); return 'late' })
  await rejectsWith(a.request(b.address, 'x', { timeoutMs: 200 }), 'timeout')
  // A TCP listener that accepts and never speaks: the dial itself times out.
  const silent = createServer(() => {})
  const held: Socket[] = []
  silent.on('connection', (s) => held.push(s))
  silent.listen(0, `${NET}.17`)
  await once(silent, 'listening')
  t.after(() => { for (const s of held) s.destroy(); silent.close() })
  const port = (silent.address() as { port: number }).port
  await rejectsWith(a.request(`${NET}.17:${port}`, 'x', { timeoutMs: 3000 }), 'timeout')
  // The caller's own signal ends a request too.
  const ac = new AbortController()
  const p = a.request(b.address, 'x', { timeoutMs: 5000, signal: ac.signal })
  ac.abort()
  await rejectsWith(p, 'closed')
})

void test('a handler that throws and an oversized frame are invalid', async (t) => {
  const a = await startTransport(t, 18, { maxFrameBytes: 4096 })
  const b = await startTransport(t, 19, { maxFrameBytes: 4096 })
  b.handle((_f, p) => { if (p === 'boom') throw new Error('no thanks'); return 'x'.repeat(10_000) })
  const err = await rejectsWith(a.request(b.address, 'boom'), 'invalid')
  assert.match(err.message, /no thanks/)
  await rejectsWith(a.request(b.address, 'y'.repeat(10_000)), 'invalid')
  await rejectsWith(a.request(b.address, 'big reply please'), 'invalid')
})

void test('stop() of a peer fires onDisconnect at once', async (t) => {
  const a = await startTransport(t, 20)
  const b = await startTransport(t, 21)
  b.handle(() => 'ok')
  await a.request(b.address, 'hi')
  const gone: string[] = []
  const off = a.onDisconnect((id) => gone.push(id))
  const bId = b.peerId
  await b.stop()
  await waitFor(() => gone.includes(bId), { timeoutMs: 10_000, what: 'disconnect event' })
  off()
})

void test('kill -9 of a peer process fires onDisconnect', async (t) => {
  const a = await startTransport(t, 22)
  const dataDir = await tempDir(t)
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/transport-child.ts',
    JSON.stringify({ dataDir, advertiseHost: `${NET}.23`, bindHost: `${NET}.23`, port: 0 })], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => { child.kill('SIGKILL') })
  const lines = createInterface({ input: child.stdout })
  const [first] = await once(lines, 'line') as [string]
  const info = JSON.parse(first) as { peerId: string, address: string }
  const r = await a.request(info.address, 'hello')
  assert.deepEqual((r.reply as { echo: unknown }).echo, 'hello')
  const gone: string[] = []
  a.onDisconnect((id) => gone.push(id))
  child.kill('SIGKILL')
  await waitFor(() => gone.includes(info.peerId), { timeoutMs: 10_000, what: 'disconnect after kill -9' })
  // Right at the crash a dial may still meet the dying listener ('closed'); then it is refused.
  await waitFor(async () => (await a.request(info.address, 'again').catch((e: unknown) => e) as TransportError).code === 'refused',
    { timeoutMs: 10_000, what: 'refused after the crash' })
})

void test('a wrong secret is refused both ways, logged, and never reaches the handler', async (t) => {
  const sinkA = new LogSink('info')
  const sinkB = new LogSink('info')
  const a = await startTransport(t, 24, { secret: 'right secret' }, sinkA)
  const b = await startTransport(t, 25, { secret: 'wrong secret' }, sinkB)
  let handled = 0
  a.handle(() => { handled++; return 'ok' })
  b.handle(() => { handled++; return 'ok' })
  await rejectsWith(a.request(b.address, 'x', { timeoutMs: 10_000 }), 'denied')
  await rejectsWith(b.request(a.address, 'x', { timeoutMs: 10_000 }), 'denied')
  assert.equal(handled, 0)
  const refused = (l: { msg?: string }): boolean => /without the cluster secret/.test(l.msg ?? '')
  await sinkA.waitFor(refused, 10_000, 'refusal logged by a')
  await sinkB.waitFor(refused, 10_000, 'refusal logged by b')
  // A member without any secret is refused too. Towards it, a member with the secret cannot tell it from a
  // silent peer (it never answers the private-network nonce), so that direction times out; it logs the refusal.
  const sinkC = new LogSink('info')
  const c = await startTransport(t, 26, {}, sinkC)
  c.handle(() => { handled++; return 'ok' })
  // It only sees the connection closing or going silent (the member with the secret knows, and logs it).
  const fromC = await rejectsWith(c.request(a.address, 'x', { timeoutMs: 10_000 }), undefined)
  assert.ok(['closed', 'denied', 'timeout'].includes(fromC.code), fromC.code)
  // Which comes first depends on timers: our dial deadline ('timeout') or the other side giving up ('closed').
  const towardsC = await rejectsWith(a.request(c.address, 'x', { timeoutMs: 3000 }), undefined)
  assert.ok(['timeout', 'denied', 'closed'].includes(towardsC.code), towardsC.code)
  await sinkC.waitFor((l) => /failed the cluster handshake/.test(l.msg ?? ''), 10_000, 'refusal logged by the member without a secret')
  assert.equal(handled, 0)
  // The same secret works.
  const d = await startTransport(t, 27, { secret: 'right secret' })
  assert.deepEqual((await d.request(a.address, 'x')).reply, 'ok')
})

void test('a connection that closes without sending anything is no refusal: nothing is logged above debug', async (t) => {
  const sink = new LogSink('debug')
  const a = await startTransport(t, 28, { secret: 'right secret' }, sink)
  const [host, port] = a.address.split(':') as [string, string]
  // What a member woken from a pause finds in its backlog: connections its peers gave up on.
  const s = connect(Number(port), host)
  await new Promise((resolve, reject) => { s.once('connect', resolve).once('error', reject) })
  s.end()
  await sink.waitFor((l) => l.msg === 'an inbound connection closed before sending anything', 10_000, 'the silent connection seen')
  assert.ok(!sink.lines.some((l) => /failed the cluster handshake/.test(String(l.msg))), 'no refusal logged')
})

void test('with a secret nothing of the protocol is visible on the wire; without one the negotiation is', async (t) => {
  const marker = 'MARKER-7d1c0a55-cleartext'
  for (const secret of [undefined, 'the secret']) {
    const a = await startTransport(t, 28, secret !== undefined ? { secret } : {})
    const b = await startTransport(t, 29, secret !== undefined ? { secret } : {})
    b.handle((_f, p) => p)
    const proxy = await recordingProxy(t, `${NET}.30`, b.address)
    const r = await a.request(proxy.address, marker)
    assert.equal(r.reply, marker)
    const wire = proxy.bytes().toString('latin1')
    assert.ok(wire.length > 0)
    assert.ok(!wire.includes(marker), 'payload never in clear (noise)')
    if (secret === undefined) {
      assert.ok(wire.includes('/multistream/1.0.0'), 'control: the recording sees the clear-text negotiation')
    } else {
      assert.ok(!wire.includes('/multistream/1.0.0') && !wire.includes('/noise'), 'the private network hides even the negotiation')
    }
    await a.stop()
    await b.stop()
  }
})

void test('the identity key persists across restarts with mode 0600', async (t) => {
  const dataDir = await tempDir(t)
  const a1 = await startTransport(t, 31, { dataDir })
  const id = a1.peerId
  await a1.stop()
  const st = await stat(join(dataDir, IDENTITY_KEY_FILE))
  assert.equal(st.mode & 0o777, 0o600)
  const a2 = await startTransport(t, 31, { dataDir })
  assert.equal(a2.peerId, id)
  const other = await startTransport(t, 32)
  assert.notEqual(other.peerId, id)
})

void test('another cluster name is denied; the previous protocol version is understood', async (t) => {
  const a = await startTransport(t, 33, { clusterName: 'blue' })
  const b = await startTransport(t, 34, { clusterName: 'green' })
  b.handle(() => 'ok')
  const err = await rejectsWith(a.request(b.address, 'x'), 'denied')
  assert.match(err.message, /green/)

  // v1 member (this build) and a v2 member that still speaks v1.
  const old = await startTransport(t, 35, { version: 1, minVersion: 1 })
  const next = await startTransport(t, 36, { version: 2, minVersion: 1 })
  const versions: number[] = []
  old.handle((from) => { versions.push(from.version ?? 0); return 'old' })
  next.handle((from) => { versions.push(from.version ?? 0); return 'next' })
  assert.equal((await next.request(old.address, 'x')).reply, 'old')
  assert.equal((await next.request(old.address, 'x')).reply, 'old')
  assert.equal((await old.request(next.address, 'x')).reply, 'next')
  assert.deepEqual(versions, [1, 1, 1], 'the newer member talks v1 to the older one')
  // Two versions apart: no common version.
  const future = await startTransport(t, 37, { version: 3, minVersion: 3 })
  future.handle(() => 'future')
  await rejectsWith(future.request(old.address, 'x'), 'invalid')
  await rejectsWith(old.request(future.address, 'x'), 'invalid')
})

void test('a request to this member itself is invalid', async (t) => {
  const a = await startTransport(t, 38)
  await rejectsWith(a.request(a.address, 'x'), 'invalid')
})

void test('requests on one connection do not wait for each other; a late reply is dropped; a peer going away fails pending requests at once', async (t) => {
  const a = await startTransport(t, 39)
  const b = await startTransport(t, 40)
  const gates = new Map<string, () => void>()
  b.handle(async (_f, p) => {
    if (typeof p === 'string' && p.startsWith('slow')) await new Promise<void>((resolve) => gates.set(p, resolve))
    return p
  })
  const slow = a.request(b.address, 'slow-1', { timeoutMs: 30_000 })
  await waitFor(() => gates.has('slow-1'), { what: 'slow request in the handler' })
  assert.equal((await a.request(b.address, 'fast')).reply, 'fast', 'not behind the slow one')
  gates.get('slow-1')!()
  assert.equal((await slow).reply, 'slow-1')
  // Times out on our side, answered later: the late reply is ignored and the stream stays usable.
  const late = a.request(b.address, 'slow-2', { timeoutMs: 300 })
  await rejectsWith(late, 'timeout')
  await waitFor(() => gates.has('slow-2'))
  gates.get('slow-2')!()
  assert.equal((await a.request(b.address, 'after')).reply, 'after')
  // Pending when the peer stops: 'closed' long before the deadline.
  const pending = rejectsWith(a.request(b.address, 'slow-3', { timeoutMs: 60_000 }), 'closed')
  await waitFor(() => gates.has('slow-3'))
  await b.stop()
  await pending
})

void test('a connection whose requests keep timing out is recycled, silently, and the next request redials', async (t) => {
  const a = await startTransport(t, 41, { recycleAfterTimeouts: 2 })
  const b = await startTransport(t, 42)
  b.handle((_f, p) => p)
  // A relay that can black-hole traffic, like a cut network that drops packets.
  let frozen = false
  let accepted = 0
  const sockets = new Set<Socket>()
  const [bh, bp] = b.address.split(':') as [string, string]
  const relay = createServer((client) => {
    accepted++
    const upstream = connect(Number(bp), bh)
    sockets.add(client); sockets.add(upstream)
    client.on('data', (d: Buffer) => { if (!frozen) upstream.write(d) })
    upstream.on('data', (d: Buffer) => { if (!frozen) client.write(d) })
    const end = (): void => { client.destroy(); upstream.destroy() }
    client.on('close', end); upstream.on('close', end)
    client.on('error', end); upstream.on('error', end)
  })
  relay.listen(0, `${NET}.43`)
  await once(relay, 'listening')
  t.after(() => { for (const s of sockets) s.destroy(); relay.close() })
  const via = `${NET}.43:${(relay.address() as { port: number }).port}`
  assert.equal((await a.request(via, 'one')).reply, 'one')
  const disconnects: string[] = []
  a.onDisconnect((id) => disconnects.push(id))
  frozen = true
  await rejectsWith(a.request(via, 'lost-1', { timeoutMs: 300 }), 'timeout')
  await rejectsWith(a.request(via, 'lost-2', { timeoutMs: 300 }), 'timeout')
  frozen = false
  assert.equal((await a.request(via, 'two')).reply, 'two')
  assert.equal(accepted, 2, 'a new connection was dialled')
  assert.deepEqual(disconnects, [], 'our own close is not reported as the peer failing')
})

void test('a message published on a topic reaches every subscribed member once, relayed where needed', async (t) => {
  const members = [await startTransport(t, 50), await startTransport(t, 51), await startTransport(t, 52), await startTransport(t, 53)]
  const got = members.map(() => [] as unknown[])
  members.forEach((m, i) => { m.subscribe('test/topic', (payload) => { got[i]!.push(payload) }) })
  // Connections come from requests, as the membership layer makes them: a chain 0-1-2-3, so 3 hears 0 only
  // through the others.
  for (const m of members) m.handle(() => 'ok')
  for (let i = 0; i + 1 < members.length; i++) await members[i]!.request(members[i + 1]!.address, 'hello')
  let n = 0
  await waitFor(async () => {
    // Until the subscriptions are known along the chain (identify, then gossipsub's own exchange), a message may
    // reach nobody: publish a fresh one each round until the last member has one.
    await members[0]!.publish('test/topic', `probe-${n}`, { probe: n++ })
    return got[3]!.length > 0
  }, { timeoutMs: 15_000, what: 'a published message relayed to the far end of the chain' })
  await members[0]!.publish('test/topic', 'e1:5-9', { entries: [5, 9] })
  await members[0]!.publish('test/topic', 'e1:5-9', { entries: [5, 9] }) // the same id again: dropped
  await members[2]!.publish('test/topic', 'e1:10-10', { entries: [10] })
  // Probes still in flight may arrive too: only the entries count.
  const entries = (i: number): unknown[] => got[i]!.filter((p) => (p as { probe?: number }).probe === undefined)
  const sorted = (i: number): string[] => entries(i).map((p) => JSON.stringify(p)).sort()
  await waitFor(() => entries(1).length === 2 && entries(3).length === 2 && entries(0).length === 1 && entries(2).length === 1,
    { timeoutMs: 10_000, what: 'every member has every message of the others' })
  assert.deepEqual(sorted(3), ['{"entries":[10]}', '{"entries":[5,9]}'])
  assert.deepEqual(sorted(1), ['{"entries":[10]}', '{"entries":[5,9]}'])
  assert.deepEqual(entries(0), [{ entries: [10] }], 'a member does not receive its own messages')
  assert.deepEqual(entries(2), [{ entries: [5, 9] }])
  // Nothing more comes (the duplicate id above was dropped everywhere).
  await members[1]!.publish('test/topic', 'end', { end: true })
  await waitFor(() => got[3]!.some((p) => (p as { end?: boolean }).end === true), { timeoutMs: 10_000, what: 'the last message' })
  assert.equal(entries(3).filter((p) => (p as { entries?: number[] }).entries?.[0] === 5).length, 1)
})
