// Cluster transports in three network namespaces (10.231.0.0/24): real interfaces, a partition that silently
// drops packets, and its heal. Skipped, saying why, where namespaces cannot be created.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { once } from 'node:events'
import { NetnsLab } from '../../dev-cluster/netns.js'
import { Libp2pTransport } from '../../cluster/transport.js'
import { silentLogger } from '../../common/logger.js'
import { waitFor } from '../helpers/wait-for.js'
import { ClusterHarness, ROOT_DIR, STAND_IN_COMMAND } from '../helpers/cluster-harness.js'

const SUBNET = 231
const PORT = 7800

void test('members in namespaces talk over veth; a partition drops traffic both ways; heal restores it', async (t) => {
  const reason = NetnsLab.unavailable()
  if (reason !== undefined) { t.skip(reason); return }
  const lab = await NetnsLab.create(t, { subnet: SUBNET, hosts: 3 })
  const dirs = await mkdtemp(join(tmpdir(), 'vectis-netns-'))
  t.after(() => rm(dirs, { recursive: true, force: true }))

  const children = lab.hosts.map((h) => {
    const init = { dataDir: join(dirs, h.ns), advertiseHost: h.ip, bindHost: h.ip, port: PORT, dialTimeoutMs: 500 }
    const c = lab.spawn(h.index, process.execPath, ['--import', 'tsx', 'test/helpers/transport-child.ts', JSON.stringify(init)], { cwd: ROOT_DIR, stdio: ['ignore', 'pipe', 'inherit'] })
    t.after(() => { c.kill('SIGKILL') })
    return c
  })
  for (const c of children) {
    const lines = createInterface({ input: c.stdout! })
    await once(lines, 'line')
  }
  // The test process reaches every member from the bridge address.
  const probe = new Libp2pTransport({ logger: silentLogger() }, { dataDir: join(dirs, 'probe'), advertiseHost: lab.gateway, bindHost: lab.gateway, port: 0 })
  t.after(() => probe.stop())
  await probe.start()
  const addr = (i: number): string => `${lab.host(i).ip}:${PORT}`
  const via = async (from: number, to: number, timeoutMs = 700): Promise<unknown> =>
    (await probe.request(addr(from), { forward: addr(to), timeoutMs }, { timeoutMs: timeoutMs + 1500 })).reply

  for (const [a, b] of [[0, 1], [1, 2], [2, 0]] as const) {
    assert.deepEqual(((await via(a, b)) as { reply: unknown }).reply, { echo: 'forwarded', pid: ((await probe.request(addr(b), 'x')).reply as { pid: number }).pid })
  }
  await lab.partition([[0], [1, 2]])
  assert.deepEqual(lab.blockedPairs, ['0>1', '0>2', '1>0', '2>0'])
  assert.deepEqual(await via(1, 0), { error: 'timeout' }, 'silently dropped, not refused')
  assert.deepEqual(await via(0, 2), { error: 'timeout' })
  assert.ok('reply' in (await via(1, 2) as object), 'the majority side still talks')
  await lab.heal()
  // Connections that timed out during the partition are recycled by the transport rather than left to TCP's
  // retransmission backoff, so traffic resumes within a couple of request timeouts.
  await waitFor(async () => 'reply' in (await via(1, 0) as object), { timeoutMs: 5000, what: 'traffic 1→0 after the heal' })
  await waitFor(async () => 'reply' in (await via(0, 2) as object), { timeoutMs: 5000, what: 'traffic 0→2 after the heal' })
  // One-way: 2 cannot send to 1, so a request either way gets no answer.
  await lab.block(2, 1)
  assert.deepEqual(await via(2, 1), { error: 'timeout' })
  await lab.unblock(2, 1)
  await waitFor(async () => 'reply' in (await via(2, 1) as object), { timeoutMs: 5000, what: 'traffic after unblock' })
})

void test('the harness runs members inside namespaces: DNS on the bridge, status from the test process', async (t) => {
  const reason = NetnsLab.unavailable()
  if (reason !== undefined) { t.skip(reason); return }
  const lab = await NetnsLab.create(t, { subnet: SUBNET + 1, hosts: 3 })
  const h = await ClusterHarness.create(t, { nodes: 3, netns: lab, command: STAND_IN_COMMAND })
  assert.equal(h.dns.host, lab.gateway)
  assert.equal(h.address(2), `${lab.host(2).ip}:7800`)
  await h.startAll()
  for (const i of [0, 1, 2]) await h.waitFor(async () => (await h.status(i)).memberCount === 3, { what: `member ${i} sees 3` })
  // A member inside a namespace is still a direct child: signals reach it.
  h.pause(1)
  await assert.rejects(h.status(1, 300))
  h.resume(1)
  await h.waitFor(async () => (await h.status(1)).nodeName === 'vectis-1', { what: 'vectis-1 answering after SIGCONT' })
  await h.kill(1)
  await h.waitForLog(0, (l) => l.msg === 'peer lost' && l.peer === 'vectis-1', { what: 'vectis-1 lost' })
})
