// Membership of real vectisd processes on 127.0.151.x (and 127.0.152.x, .153.x), plus a 3|2 partition inside
// network namespaces (10.151.0.0/24). Run `npm run build` first. Behaviour is asserted, never speed: the deadlines
// are generous because the machine is shared.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { ClusterHarness } from '../helpers/cluster-harness.js'
import { NetnsLab } from '../../dev-cluster/netns.js'
import {
  track, checkNoSplit, coldStartEnd, waitCommittedView, viewsOf, viewsByIncarnation, ageOrderViolation, leadershipIntervals, overlaps, waitOneView, viewNames, waitOneLeader, leadersAmong
} from '../helpers/cluster-checks.js'

const SUBNET = 151
const SECRET = 'membership-test-secret-0123456789'

async function assertSafe (t: TestContext, h: ClusterHarness, coldStartEnd = 0): Promise<void> {
  checkNoSplit(h, coldStartEnd)
  for (const m of h.members) {
    for (const views of viewsByIncarnation(h, m.index)) {
      const v = ageOrderViolation(views)
      assert.equal(v, undefined, `${m.name}: ${v}`)
    }
  }
  assert.deepEqual(overlaps(leadershipIntervals(h)), [], 'leadership intervals of different members overlap')
}

void test('3 members: cold start, kill -9, restart, SIGTERM, SIGSTOP beyond the failure timeout then SIGCONT', async (t) => {
  const h = await ClusterHarness.create(t, { nodes: 3, subnet: SUBNET, secret: SECRET })
  track(h)
  await h.startAll()
  const all = ['vectis-0', 'vectis-1', 'vectis-2']
  // Cold start: one view holding all, the same order everywhere, and never two groups at once (checked at the end
  // over the whole timeline too).
  const first = await waitOneView(h, [0, 1, 2], all)
  const coldStart = coldStartEnd(h, all)
  const coordinator = first[0]!
  const leader = await waitOneLeader(h, [0, 1, 2])
  assert.equal(h.member(leader).name, coordinator, 'the leader is the coordinator, the oldest member')

  // kill -9 of a member that is not the coordinator: removed from every view, coordinator unchanged.
  const victim = [0, 1, 2].find((i) => h.member(i).name !== coordinator)!
  const others = [0, 1, 2].filter((i) => i !== victim)
  await h.kill(victim)
  const afterKill = await waitOneView(h, others, all.filter((n) => n !== h.member(victim).name))
  assert.equal(afterKill[0], coordinator)

  // Restart: a new incarnation joins as the youngest; the coordinator does not change.
  await h.start(victim)
  const rejoined = await waitOneView(h, [0, 1, 2], all)
  assert.equal(rejoined[0], coordinator)
  assert.equal(rejoined.at(-1), h.member(victim).name, 'the restarted member is the youngest')

  // SIGTERM of a member (not the coordinator): a graceful leave, logged as such, then gone from every view.
  const leaver = [0, 1, 2].find((i) => h.member(i).name !== coordinator && i !== victim)!
  const stayers = [0, 1, 2].filter((i) => i !== leaver)
  assert.deepEqual(await h.stop(leaver), { code: 0, signal: null })
  assert.ok(h.logs(leaver).some((l) => l.msg === 'left the cluster'), 'the leaver logged its leave')
  await waitOneView(h, stayers, all.filter((n) => n !== h.member(leaver).name))
  const otherSaw = h.logs(stayers.find((i) => i !== leader) ?? stayers[0]!)
  assert.ok(otherSaw.some((l) => l.msg === 'member left' && l.member === h.member(leaver).name), 'a member logged the leave')
  await h.start(leaver)
  const back = await waitOneView(h, [0, 1, 2], all)
  assert.equal(back[0], coordinator)
  assert.equal(back.at(-1), h.member(leaver).name)

  // SIGSTOP beyond the failure timeout: suspected, verified, removed; after SIGCONT it comes back as the youngest.
  const sleeper = victim
  h.pause(sleeper)
  try {
    await waitOneView(h, [0, 1, 2].filter((i) => i !== sleeper), all.filter((n) => n !== h.member(sleeper).name))
  } finally {
    h.resume(sleeper)
  }
  const woke = await waitOneView(h, [0, 1, 2], all)
  assert.equal(woke[0], coordinator)
  assert.equal(woke.at(-1), h.member(sleeper).name)
  assert.deepEqual(await leadersAmong(h, [0, 1, 2]), [leader], 'the coordinator still leads')

  await assertSafe(t, h, coldStart)
})

void test('a peer with a wrong VECTIS_CLUSTER_SECRET never appears in any view', async (t) => {
  const h = await ClusterHarness.create(t, {
    nodes: 4,
    clusterSize: 3,
    subnet: SUBNET + 1,
    secret: SECRET,
    envFor: (i): Record<string, string> => (i === 3 ? { VECTIS_CLUSTER_SECRET: 'a-different-secret-9876543210' } : {})
  })
  track(h)
  await h.startAll()
  const names = ['vectis-0', 'vectis-1', 'vectis-2']
  await waitOneView(h, [0, 1, 2], names)
  const coldStart = coldStartEnd(h, names)
  // The intruder is in DNS and dials everyone: every member refuses it (and logs the refusal). Told by the key check's
  // line, not by address: only a peer with another secret fails that check, and on loopback a connection comes from
  // 127.0.0.1 whoever dials, so only a member that dialled the intruder itself would name its address; a member in a
  // view that is not its coordinator never dials a non-member, and may have had its view before the intruder listened.
  for (const i of [0, 1, 2]) {
    await h.waitForLog(i, (l) => typeof l.msg === 'string' && l.msg.startsWith('refused a peer without the cluster secret'), { what: 'the refusal of the intruder' })
  }
  for (const i of [0, 1, 2]) {
    assert.deepEqual((await viewNames(h, i)).sort(), names)
    for (const v of viewsOf(h, i)) assert.ok(!v.members.includes('vectis-3'), `${h.member(i).name} installed ${JSON.stringify(v)}`)
  }
  for (const v of viewsOf(h, 3)) assert.deepEqual(v.members, ['vectis-3'], 'the intruder only ever sees itself')
  assert.ok(h.member(3).running)
  await assertSafe(t, h, coldStart)
})

void test('5 members: cold start to one view, kill -9 of the coordinator and of a member', async (t) => {
  const h = await ClusterHarness.create(t, { nodes: 5, subnet: SUBNET + 2 })
  track(h)
  await h.startAll()
  const all = h.members.map((m) => m.name)
  const order = await waitOneView(h, [0, 1, 2, 3, 4], all)
  const coldStart = coldStartEnd(h, all)
  await waitCommittedView(h, [0, 1, 2, 3, 4], all)
  const coord = all.indexOf(order[0]!)
  await h.kill(coord)
  const rest = [0, 1, 2, 3, 4].filter((i) => i !== coord)
  const v2 = await waitOneView(h, rest, all.filter((_, i) => i !== coord))
  assert.equal(v2[0], order[1], 'the next oldest becomes coordinator')
  const victim = rest.find((i) => h.member(i).name !== v2[0])!
  await h.kill(victim)
  const left = rest.filter((i) => i !== victim)
  await waitOneView(h, left, all.filter((_, i) => i !== coord && i !== victim))
  assert.equal(h.member(await waitOneLeader(h, left)).name, v2[0])
  await assertSafe(t, h, coldStart)
})

void test('a 3|2 partition in network namespaces: the majority side has a leader, the minority none; heal → one view', async (t) => {
  const reason = NetnsLab.unavailable()
  if (reason !== undefined) { t.skip(reason); return }
  const lab = await NetnsLab.create(t, { subnet: SUBNET, hosts: 5 })
  const h = await ClusterHarness.create(t, { nodes: 5, netns: lab })
  track(h)
  await h.startAll()
  const all = h.members.map((m) => m.name)
  await waitOneView(h, [0, 1, 2, 3, 4], all)
  const leader = await waitOneLeader(h, [0, 1, 2, 3, 4])
  // The leader on the majority side: it keeps leading; the two others lose it and have no leader.
  const minority = [0, 1, 2, 3, 4].filter((i) => i !== leader).slice(0, 2)
  const majority = [0, 1, 2, 3, 4].filter((i) => !minority.includes(i))
  await lab.partition([majority, minority])
  await waitOneView(h, majority, majority.map((i) => all[i]!))
  await h.waitFor(async () => (await leadersAmong(h, minority)).length === 0 && (await Promise.all(minority.map(async (i) => (await h.status(i)).leader === null))).every(Boolean), { what: 'no leader on the minority side' })
  assert.equal(await waitOneLeader(h, majority), leader, 'the majority side keeps its leader')
  await lab.heal()
  const healed = await waitOneView(h, [0, 1, 2, 3, 4], all, 45_000)
  assert.equal(healed[0], all[leader])
  assert.equal(await waitOneLeader(h, [0, 1, 2, 3, 4]), leader)
  for (const m of h.members) for (const views of viewsByIncarnation(h, m.index)) assert.equal(ageOrderViolation(views), undefined)
  assert.deepEqual(overlaps(leadershipIntervals(h)), [])
})
