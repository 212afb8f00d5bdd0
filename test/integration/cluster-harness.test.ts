// The multi-process harness itself, driven with the stand-in daemon on 127.0.41.x.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ClusterHarness, STAND_IN_COMMAND } from '../helpers/cluster-harness.js'

const SUBNET = 41

void test('start, status, kill -9, pause/resume, SIGTERM and restart of members', async (t) => {
  const h = await ClusterHarness.create(t, { nodes: 3, subnet: SUBNET, command: STAND_IN_COMMAND, logLevel: 'info' })
  await h.startAll()
  const started = await Promise.all([0, 1, 2].map(async (i) => await h.waitForLog(i, (l) => l.msg === 'stand-in started', { what: 'start' })))
  assert.deepEqual(started.map((l) => l.address), [h.address(0), h.address(1), h.address(2)])
  // Discovery through the harness's DNS server, then the transport between the processes.
  for (const i of [0, 1, 2]) {
    await h.waitFor(async () => (await h.status(i)).memberCount === 3, { what: `member ${i} sees 3` })
  }
  assert.deepEqual(((await h.status(0)).members as Array<{ name: string }>).map((m) => m.name), ['vectis-0', 'vectis-1', 'vectis-2'])
  const all = await h.statusAll()
  assert.deepEqual([...all.keys()], [0, 1, 2])
  assert.ok(h.lastStartNs !== undefined && h.timeline.every((e) => e.atNs >= h.member(e.member).startedAtNs!))
  const unauth = await fetch(h.httpUrl(0, '/api/cluster/status'))
  assert.equal(unauth.status, 401)

  const killed = await h.kill(1)
  assert.equal(killed.signal, 'SIGKILL')
  await h.waitForLog(0, (l) => l.msg === 'peer lost' && l.peer === 'vectis-1', { what: 'vectis-1 lost' })

  h.pause(2)
  await assert.rejects(h.status(2, 300), 'a paused member does not answer')
  h.resume(2)
  await h.waitFor(async () => (await h.status(2)).nodeName === 'vectis-2', { what: 'vectis-2 answering after SIGCONT' })

  const firstId = started[1]!.peerId
  await h.restart(1)
  await h.waitFor(() => h.logs(1).filter((l) => l.msg === 'stand-in started').length === 2, { what: 'second start' })
  assert.equal(h.logs(1).filter((l) => l.msg === 'stand-in started')[1]!.peerId, firstId, 'identity kept in the data directory')
  assert.equal(h.member(1).starts, 2)

  const stopped = await h.stop(0)
  assert.deepEqual(stopped, { code: 0, signal: null })
  assert.ok(h.logs(0).some((l) => l.msg === 'stopped'))
  assert.ok(h.timeline.length >= h.logs(0).length + h.logs(1).length)
})

void test('cleanup kills every member, even paused ones', async () => {
  const h = await ClusterHarness.create(undefined, { nodes: 2, subnet: SUBNET + 1, command: STAND_IN_COMMAND })
  try {
    await h.startAll()
    await h.waitForLog(0, (l) => l.msg === 'stand-in started')
    h.pause(1)
  } finally {
    await h.cleanup()
  }
  for (const m of h.members) {
    assert.ok(m.exit !== undefined, `${m.name} exited`)
    assert.throws(() => process.kill(m.pid!, 0), 'no such process')
  }
})

void test('the built daemon runs under the harness: own address, own name, status with basic auth, SIGTERM exits 0', async (t) => {
  const h = await ClusterHarness.create(t, { nodes: 2, subnet: SUBNET + 2 })
  await h.startAll()
  for (const i of [0, 1]) await h.waitForLog(i, (l) => l.msg === 'vectisd started', { what: 'started' })
  for (const i of [0, 1]) {
    assert.equal((await h.status(i)).nodeName, `vectis-${i}`)
    // Once in a view, each lists itself at its own address (POD_IP and VECTIS_BIND_HOST from the harness).
    await h.waitFor(async () => ((await h.status(i)).members as Array<{ name: string, address: string }>)
      .some((m) => m.name === `vectis-${i}` && m.address === h.member(i).ip), { what: `vectis-${i} in a view` })
  }
  // Each measures the heartbeats of the other (of two, one is the coordinator): a recent age; none of itself.
  for (const i of [0, 1]) {
    const ages = await h.waitFor(async () => {
      const members = (await h.status(i)).members as Array<{ name: string, heartbeatAgeMs: number | null }>
      return members.length === 2 ? new Map(members.map((m) => [m.name, m.heartbeatAgeMs])) : undefined
    }, { what: `vectis-${i} sees both` })
    assert.equal(ages.get(`vectis-${i}`), null)
    const other = ages.get(`vectis-${1 - i}`)
    assert.ok(typeof other === 'number' && other >= 0 && other < 2500, `vectis-${i} heard vectis-${1 - i} ${String(other)} ms ago`)
  }
  assert.deepEqual(await h.stop(1), { code: 0, signal: null })
  assert.equal((await h.kill(0)).signal, 'SIGKILL')
})
