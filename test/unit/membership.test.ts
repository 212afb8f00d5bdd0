// Unit tests of the membership/leadership state machine with a manual clock: table-driven rules, and small
// scenarios over an instant in-memory network (the seeded fault simulation is in simulation.test.ts).
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { MembershipMachine } from '../../cluster/membership/machine.js'
import type { MembershipOutput } from '../../cluster/membership/types.js'
import { resolveMembershipConfig, type MembershipInit } from '../../cluster/membership/config.js'
import { ClusterConfigError } from '../../cluster/errors.js'
import {
  PROTOCOL_VERSION, decodeMessage, memberKey, InvalidMessageError, UnsupportedVersionError,
  type ClusterRequest, type InstallMessage, type MemberInfo, type ReplyMessage, type ViewData
} from '../../cluster/messages.js'
import { Net } from '../helpers/membership-net.js'
import { Prng } from '../helpers/sim/prng.js'

const member = (i: number, inc = 'a'): MemberInfo => ({ name: `n${i}`, peerId: `p${i}`, incarnation: inc, address: `10.1.0.${i}:7800` })

/** The envelope of a request from `from` in the unit cluster, at epoch `epoch`. */
const env = (from: MemberInfo, epoch = { number: 0, leader: '' }): { v: number, cluster: string, from: MemberInfo, epoch: { number: number, leader: string } } =>
  ({ v: PROTOCOL_VERSION, cluster: 'unit', from, epoch })

/** `name/generation` of each member of a view (the machine chooses incarnations `<generation>-<random>`). */
const gens = (v: ViewData | undefined): string[] => (v?.members ?? []).map(m => `${m.name}/${m.incarnation.split('-')[0]!}`)

function threeUp (): { net: Net, ms: MembershipMachine[] } {
  const net = new Net()
  const ms = [0, 1, 2].map(i => net.add(member(i)))
  net.discoverAll()
  net.advance(3000)
  return { net, ms }
}

function reply (out: MembershipOutput[]): ReplyMessage {
  const r = out.find(o => o.type === 'reply')
  assert.ok(r !== undefined && r.type === 'reply', 'a reply')
  return r.msg
}

void describe('configuration: defaults, derived timings and errors naming the fields', () => {
  const cases: Array<{ name: string, init: MembershipInit, error?: RegExp, lease?: number, promise?: number }> = [
    { name: 'defaults', init: { clusterSize: 3 }, lease: 1440, promise: 3500 },
    { name: 'FT must exceed 2 × HB', init: { clusterSize: 3, heartbeatMs: 500, failureTimeoutMs: 1000 }, error: /VECTIS_FAILURE_TIMEOUT_MS \(1000\) must exceed twice VECTIS_HEARTBEAT_MS \(500 ms\)/ },
    { name: 'majority needs the cluster size', init: {}, error: /VECTIS_CLUSTER_SIZE must be a positive integer/ },
    { name: 'quorum none needs no size', init: { quorum: 'none' }, lease: 1440 },
    { name: 'margin at least 2 × HB', init: { clusterSize: 3, marginMs: 600 }, error: /marginMs \(600\) must be at least 2 × heartbeatMs/ },
    { name: 'unknown quorum mode', init: { clusterSize: 3, quorum: 'most' as 'none' }, error: /quorum must be "majority" or "none"/ },
    { name: 'lease bounded by FT', init: { clusterSize: 3, heartbeatMs: 100, failureTimeoutMs: 300, marginMs: 1000 }, lease: 299, promise: 1300 }
  ]
  for (const c of cases) {
    void test(c.name, () => {
      if (c.error !== undefined) {
        assert.throws(() => resolveMembershipConfig(c.init), (e: unknown) => e instanceof ClusterConfigError && c.error!.test(e.message))
        return
      }
      const cfg = resolveMembershipConfig(c.init)
      if (c.lease !== undefined) assert.equal(cfg.leaseMs, c.lease)
      if (c.promise !== undefined) assert.equal(cfg.promiseMs, c.promise)
      // The lease is shorter than what a voter waits, with the clock drift allowed for.
      assert.ok(cfg.leaseMs / (1 - cfg.maxClockDrift) <= cfg.refusedDeathMs / (1 + cfg.maxClockDrift))
    })
  }
})

void describe('wire messages: versions and validation', () => {
  const base = { cluster: 'c', from: member(1), epoch: { number: 0, leader: '' } }
  const summary = { committedCounter: 0, leading: false, maxCounter: 0 }
  const cases: Array<{ name: string, msg: unknown, error?: new (...a: never[]) => Error, match?: RegExp }> = [
    { name: 'current version', msg: { v: PROTOCOL_VERSION, type: 'hello', ...base, summary } },
    { name: 'previous version is understood', msg: { v: PROTOCOL_VERSION - 1, type: 'hello', ...base, summary } },
    { name: 'a newer version is refused', msg: { v: PROTOCOL_VERSION + 1, type: 'hello', ...base, summary }, error: UnsupportedVersionError, match: /not understood/ },
    { name: 'an older version is refused', msg: { v: PROTOCOL_VERSION - 2, type: 'hello', ...base, summary }, error: UnsupportedVersionError },
    { name: 'unknown type', msg: { v: PROTOCOL_VERSION, type: 'gossip', ...base }, error: InvalidMessageError, match: /unknown message type/ },
    { name: 'sender without incarnation', msg: { v: PROTOCOL_VERSION, type: 'leave', ...base, from: { name: 'x', peerId: 'y', address: 'z' } }, error: InvalidMessageError, match: /^from:/ },
    { name: 'install with an empty view', msg: { v: PROTOCOL_VERSION, type: 'install', ...base, claim: true, configCounter: 0, view: { id: { coordinator: 'a', counter: 1 }, members: [], epoch: { number: 1, leader: 'a' } } }, error: InvalidMessageError, match: /view.members/ },
    { name: 'not an object', msg: 'hello', error: InvalidMessageError }
  ]
  for (const c of cases) {
    void test(c.name, () => {
      const round = JSON.parse(JSON.stringify(c.msg)) as unknown
      if (c.error === undefined) { assert.equal(decodeMessage(round).type, (c.msg as { type: string }).type); return }
      assert.throws(() => decodeMessage(round), (e: unknown) => e instanceof c.error! && (c.match === undefined || c.match.test((e).message)))
    })
  }
})

void test('cold start: the lowest name founds one view of all; it alone leads, with a lease', () => {
  const { net, ms } = threeUp()
  for (const m of ms) {
    const v = m.currentView()
    assert.ok(v !== undefined)
    assert.deepEqual(v.members.map(x => x.name), ['n0', 'n1', 'n2'])
  }
  assert.deepEqual(net.leaders(), ['n0'])
  // Only the founder installed a view: every view:installed names n0 as coordinator.
  assert.ok(net.events.filter(e => e.type === 'view:installed').every(e => (e.payload as { view: { id: { coordinator: string } } }).view.id.coordinator === 'n0'))
  assert.equal(ms[0]!.status(net.now).quorum.ok, true)
})

void test('a leader woken from a pause is not leader before any tick (the lease is checked against now)', () => {
  const { net, ms } = threeUp()
  const leader = ms[0]!
  assert.equal(leader.isLeader(net.now), true)
  const left = leader.leaseRemaining(net.now)
  assert.ok(left > 0 && left <= leader.cfg.leaseMs)
  assert.equal(leader.isLeader(net.now + left), false, 'no tick ran, yet the expired lease is not honoured')
  assert.equal(leader.leaseRemaining(net.now + left + 1), 0)
})

void test('the driver persists before acting: persist is the first output of a step that changed the state', () => {
  const net = new Net()
  const m = net.add(member(0), { clusterSize: 1 })
  const out = m.handle({ type: 'tick' }, 2000) // founds its own view (alone: a cluster of one), which raises the counter
  assert.equal(out[0]?.type, 'persist')
  const state = (out[0]).state
  assert.equal(state.maxApplied, 1)
  assert.deepEqual(state.member, m.me)
})

void describe('promises, epochs and views: how a member promised to a leader answers', () => {
  // n1 is the would-be usurper (a member of the view), n2 the voter.
  type Case = { name: string, build: (ctx: { leaderEpoch: { number: number, leader: string }, view: InstallMessage['view'], n0: MemberInfo, n1: MemberInfo, n2: MemberInfo }) => ClusterRequest, advance?: number, ok: boolean, reason?: string }
  const claim = (ctx: Parameters<Case['build']>[0], extra: Partial<InstallMessage> = {}, counterBump = 10, epochNumber = ctx.leaderEpoch.number + 1): InstallMessage => ({
    ...env(ctx.n1, { number: epochNumber, leader: ctx.n1.name }),
    type: 'install',
    view: { id: { coordinator: ctx.n1.name, counter: ctx.view.id.counter + counterBump }, members: [ctx.n1, ctx.n2], epoch: { number: epochNumber, leader: ctx.n1.name } },
    claim: true,
    configCounter: ctx.view.id.counter + 5,
    ...extra
  })
  const cases: Case[] = [
    { name: 'a claim from another member while promised: refused', build: (c) => claim(c), ok: false, reason: 'promised' },
    { name: 'the same claim after the promise ran out (FT + margin): granted', build: (c) => claim(c), advance: 3600, ok: true },
    { name: 'a claim the leader handed over to: granted at once', build: (c) => claim(c, { handoverFrom: c.leaderEpoch }), ok: true },
    { name: 'a claim at a lower epoch (after the promise ran out): refused', build: (c) => claim(c, {}, 10, c.leaderEpoch.number - 1), advance: 3600, ok: false, reason: 'stale-epoch' },
    { name: 'a claim from an installer that knows an older configuration: refused', build: (c) => claim(c, { configCounter: 0 }), advance: 3600, ok: false, reason: 'older-config' },
    { name: 'an install numbered below the current view: refused', build: (c) => claim(c, { handoverFrom: c.leaderEpoch }, -1), ok: false, reason: 'stale-view' },
    {
      name: 'an install that does not hold me: refused',
      build: (c) => { const m = claim(c, { handoverFrom: c.leaderEpoch }); m.view.members = [c.n1]; return m },
      ok: false,
      reason: 'not-member'
    },
    {
      name: 'a heartbeat of a lower epoch: refused',
      build: (c) => ({ ...env(c.n0, { number: 0, leader: 'n0' }), type: 'heartbeat', viewId: c.view.id, round: 99, claim: true }),
      ok: false,
      reason: 'stale-epoch'
    },
    {
      name: 'a message of another cluster: refused',
      build: (c) => ({ ...env(c.n1, c.leaderEpoch), cluster: 'other', type: 'hello', summary: { committedCounter: 0, leading: false, maxCounter: 0 } }),
      ok: false,
      reason: 'wrong-cluster'
    }
  ]
  for (const c of cases) {
    void test(c.name, () => {
      const { net, ms } = threeUp()
      const voter = ms[2]!
      const view = voter.currentView()!
      const leaderEpoch = ms[0]!.currentEpoch()!
      const msg = c.build({ leaderEpoch, view, n0: ms[0]!.me, n1: ms[1]!.me, n2: voter.me })
      const at = net.now + (c.advance ?? 0)
      const r = reply(voter.handle({ type: 'message', msg }, at))
      assert.equal(r.ok, c.ok, `reply ${JSON.stringify({ ok: r.ok, reason: r.reason })}`)
      if (c.reason !== undefined) assert.equal(r.reason, c.reason)
      if (c.ok && msg.type === 'install') {
        assert.equal(r.promise, true)
        assert.equal(voter.currentView()!.id.counter, msg.view.id.counter)
      }
    })
  }
})

void test('a restarted member joins as the youngest; the coordinator and the leader do not change', () => {
  const { net, ms } = threeUp()
  const epoch = ms[0]!.currentEpoch()
  // n1 restarts: same name and peer id, new incarnation, same address; its persisted state is kept.
  net.down.add(member(1).address)
  const n1b = net.add(member(1))
  net.feed(n1b, { type: 'discovered', addresses: [...net.machines.keys()] })
  net.advance(4000)
  const v = ms[0]!.currentView()!
  assert.deepEqual(gens(v), ['n0/1', 'n2/1', 'n1/2'])
  assert.deepEqual(n1b.currentView()!.id, v.id)
  assert.deepEqual(net.leaders(), ['n0'])
  assert.deepEqual(ms[0]!.currentEpoch(), epoch, 'no election happened')
  assert.ok(net.events.some(e => e.who === 'n0' && e.type === 'member:left' && memberKey((e.payload as { member: MemberInfo }).member) === memberKey(ms[1]!.me)))
})

void test('hand-over: the old leader is demoted first, the successor leads after one round trip', () => {
  const { net, ms } = threeUp()
  const before = net.events.length
  net.feed(ms[0]!, { type: 'transfer' })
  assert.deepEqual(net.leaders(), [], 'between demotion and the successor taking over, nobody leads')
  net.run() // one round trip on the instant network, no time passes
  assert.deepEqual(net.leaders(), ['n1'])
  const order = net.events.slice(before).filter(e => e.type.startsWith('leader:') || e.type.startsWith('handover:')).map(e => `${e.who} ${e.type}`)
  assert.deepEqual(order, ['n0 leader:demoted', 'n1 leader:elected', 'n0 handover:completed'], 'done only once the successor leads')
  assert.deepEqual(ms[1]!.currentView()!.members.map(m => m.name), ['n1', 'n2', 'n0'])
  const e0 = (net.events.find(e => e.who === 'n0' && e.type === 'leader:elected')!.payload as { epoch: { number: number } }).epoch.number
  assert.ok(ms[1]!.currentEpoch()!.number > e0, 'the successor has a higher epoch')
})

void test('graceful leave of the leader: hand-over to the next oldest, then the leaver reports itself done', () => {
  const { net, ms } = threeUp()
  net.feed(ms[0]!, { type: 'leave' })
  net.run()
  assert.ok(net.events.some(e => e.who === 'n0' && e.type === 'self:left'))
  net.down.add(member(0).address)
  assert.deepEqual(net.leaders(), ['n1'])
  net.advance(1000)
  assert.deepEqual(ms[2]!.currentView()!.members.map(m => m.name), ['n1', 'n2'])
  assert.equal(ms[1]!.status(net.now).quorum.ok, true)
})

void test('crash of the leader verified by Kubernetes: the next oldest leads without waiting FT + margin', () => {
  const { net, ms } = threeUp()
  net.down.add(member(0).address)
  const crashAt = net.now
  for (const m of [ms[1]!, ms[2]!]) {
    net.feed(m, { type: 'disconnected', peerId: 'p0' })
    net.feed(m, { type: 'verified-dead', name: 'n0', incarnation: ms[0]!.me.incarnation })
  }
  net.run()
  net.advance(1000)
  assert.deepEqual(net.leaders(), ['n1'])
  const elected = net.events.find(e => e.who === 'n1' && e.type === 'leader:elected')!
  assert.ok(elected.at - crashAt < ms[1]!.cfg.promiseMs, `elected ${elected.at - crashAt} ms after the crash`)
})

void test('a leader whose connections are refused is replaced only after its lease ended', () => {
  const { net, ms } = threeUp()
  // n0 vanishes from the network: every request to it is refused (a killed process or a rejecting firewall). It
  // keeps its state, as a frozen process would, and we ask it whether it leads at each instant.
  const cut = ms[0]!
  const lastLeaseEnd = net.now + cut.leaseRemaining(net.now)
  net.machines.delete(member(0).address)
  let firstOther: number | undefined
  for (let t = 0; t < 8000 && firstOther === undefined; t += 100) {
    net.advance(100)
    if (net.leaders().length > 0) firstOther = net.now
  }
  assert.ok(firstOther !== undefined, 'someone else leads')
  assert.ok(firstOther > lastLeaseEnd, 'after the cut-off leader\'s lease ended')
  assert.equal(cut.isLeader(firstOther), false)
})

void test('majority lost for good: no leader; a forced new cluster leads alone and the others join it', () => {
  const { net, ms } = threeUp()
  // n0 and n1 are gone (their addresses refuse); n2 cannot prove they are dead and has no majority.
  net.down.add(member(0).address)
  net.down.add(member(1).address)
  net.advance(8000)
  assert.deepEqual(net.leaders(), [])
  assert.equal(ms[2]!.status(net.now).quorum.ok, false)
  // The operator restarts n2 with VECTIS_FORCE_NEW_CLUSTER.
  net.down.add(member(2).address)
  const forced = net.add(member(2), { forceNewCluster: true })
  net.feed(forced, { type: 'discovered', addresses: [...net.machines.keys()] })
  net.advance(2000)
  assert.deepEqual(net.leaders(), ['n2'])
  // n0 comes back (new incarnation, its old persisted state): it joins the forced cluster, whose leader stays.
  const n0b = net.add(member(0))
  net.feed(n0b, { type: 'discovered', addresses: [...net.machines.keys()] })
  net.advance(4000)
  assert.deepEqual(gens(forced.currentView()), ['n2/2', 'n0/2'])
  assert.deepEqual(net.leaders(), ['n2'])
  assert.equal(forced.status(net.now).quorum.ok, true)
})

void test('a member cut off from the primary view does not lead alone when the others die: they may have moved on without it', () => {
  const { net, ms } = threeUp()
  assert.deepEqual(net.leaders(), ['n0'])
  // n2 is cut off (frozen and unreachable); n0 and n1 commit a view without it.
  net.down.add(member(2).address)
  net.advance(8000)
  assert.deepEqual(ms[0]!.currentView()!.members.map(m => m.name), ['n0', 'n1'])
  assert.equal(ms[0]!.status(net.now).primary, true)
  // n0 and n1 die (Kubernetes says so); n2 comes back, still holding the configuration of three it last knew.
  net.down.add(member(0).address)
  net.down.add(member(1).address)
  net.down.delete(member(2).address)
  for (const i of [0, 1]) net.feed(ms[2]!, { type: 'verified-dead', name: `n${i}`, incarnation: ms[i]!.me.incarnation })
  net.advance(10_000, 50)
  // Both deaths are long verified, but the dead knew a newer configuration: n2 alone is no quorum, whatever it knows.
  assert.deepEqual(net.leaders(), [], 'the survivor of the stale configuration does not lead alone')
  // Their restarted processes carry that configuration on (persisted): one of them leads, and n2 joins.
  const restarted = [net.add(member(0)), net.add(member(1))]
  for (const m of [...restarted, ms[2]!]) net.feed(m, { type: 'discovered', addresses: [member(0).address, member(1).address, member(2).address] })
  for (let t = 0; t < 15_000 && !(net.leaders().length === 1 && ms[2]!.currentView()?.members.length === 3); t += 500) {
    net.advance(500, 50)
    assert.ok(net.leaders().length <= 1, `one leader at most: ${net.leaders().join(', ')}`)
  }
  assert.equal(net.leaders().length, 1)
  assert.deepEqual(new Set(gens(ms[2]!.currentView())), new Set(['n0/2', 'n1/2', 'n2/1']))
})

void describe('cold start: the first view', () => {
  const proposal = (from: MemberInfo, to: MemberInfo[]): InstallMessage => ({
    ...env(from),
    type: 'install',
    view: { id: { coordinator: from.name, counter: 1 }, members: [from, ...to], epoch: { number: 0, leader: '' } },
    claim: false,
    configCounter: 0,
    propose: true
  })

  void test('a lone member of a 3-member cluster founds no view; with a cluster size of 1 it does', () => {
    const net = new Net()
    const lone = net.add(member(0))
    net.discoverAll()
    net.advance(10_000)
    assert.equal(lone.currentView(), undefined)
    assert.ok(net.events.every(e => e.type !== 'view:installed'))
    const single = new Net({ clusterName: 'unit', clusterSize: 1 })
    const m = single.add(member(0))
    single.discoverAll()
    single.advance(2000)
    assert.deepEqual(m.currentView()?.members.map(x => x.name), ['n0'])
  })

  void test('a member that accepted one founder\'s proposal refuses another\'s and names the first', () => {
    const net = new Net()
    const m = net.add(member(5))
    const first = reply(m.handle({ type: 'message', msg: proposal(member(3), [m.me]) }, 0))
    assert.equal(first.ok, true)
    const second = reply(m.handle({ type: 'message', msg: proposal(member(1), [m.me]) }, 10))
    assert.equal(second.ok, false)
    assert.equal(second.reason, 'promised')
    assert.equal(second.redirect?.name, 'n3')
    // The first founder drops its proposal: the member is free again and accepts the other one.
    m.handle({ type: 'message', msg: { ...env(member(3)), type: 'release', released: { number: 0, leader: '' }, founding: true } }, 20)
    assert.equal(reply(m.handle({ type: 'message', msg: proposal(member(1), [m.me]) }, 30)).ok, true)
  })

  void test('a member in a view refuses a proposal, and its reply carries its view', () => {
    const { net, ms } = threeUp()
    const r = reply(ms[2]!.handle({ type: 'message', msg: proposal(member(9), [ms[2]!.me]) }, net.now))
    assert.equal(r.ok, false)
    assert.equal(r.summary.view?.members[0]?.name, 'n0')
  })

  void test('a founder that cannot gather a founding quorum installs nothing', () => {
    // Five expected members, three up: n0 proposes to n1 and n2, who are bound to another founder (n7).
    const net = new Net({ clusterName: 'unit', clusterSize: 5 })
    const ms = [0, 1, 2].map(i => net.add(member(i)))
    for (const i of [1, 2]) assert.equal(reply(ms[i]!.handle({ type: 'message', msg: proposal(member(7), [ms[i]!.me]) }, 0)).ok, true)
    net.discoverAll()
    net.advance(1500)
    assert.ok(ms.every(m => m.currentView() === undefined), 'no view while the candidates are bound elsewhere')
    assert.ok(net.events.every(e => e.type !== 'view:installed'))
  })
})

void test('indirect probes: a helper that heard from the suspect only before the suspicion began does not vouch for it', () => {
  const { net, ms } = threeUp()
  const helper = ms[1]!
  // n1 heard from n2 at net.now (n2's hello); n0 began to suspect n2 300 ms later.
  helper.handle({ type: 'message', msg: { ...env(ms[2]!.me), type: 'hello', summary: { committedCounter: 0, leading: false, maxCounter: 0 } } }, net.now)
  const ask = (withinMs: number | undefined, at: number): ReplyMessage => reply(helper.handle({
    type: 'message',
    msg: { ...env(ms[0]!.me), type: 'ping-req', target: member(2).address, ...(withinMs !== undefined ? { withinMs } : {}) }
  }, at))
  assert.equal(ask(200, net.now + 300).reason, 'unreachable', 'heard 300 ms ago, asked about the last 200 ms')
  assert.equal(ask(500, net.now + 300).found?.name, 'n2', 'heard 300 ms ago, asked about the last 500 ms')
  assert.equal(ask(undefined, net.now + 300).found?.name, 'n2', 'an older member asks about the last 2 × HB')
})

void test('a claimed view promised for survives a restart of the voter (persisted pending configuration)', () => {
  const { net, ms } = threeUp()
  const voter = ms[2]!
  const before = voter.persistedState()
  // The leader claims a new view (a joiner n3); the voter promises for it; no commit follows (the leader dies).
  const view = { id: { coordinator: 'n0', counter: before.maxCounter + 1 }, members: [ms[0]!.me, ms[1]!.me, voter.me, member(3)], epoch: before.highestEpoch }
  const out = voter.handle({ type: 'message', msg: { ...env(ms[0]!.me, before.highestEpoch), type: 'install', view, claim: true, configCounter: before.committed?.id.counter ?? 0 } }, net.now + 10)
  assert.equal(reply(out).promise, true)
  assert.equal(out[0]?.type, 'persist', 'persisted before the promise is sent')
  const saved = voter.persistedState()
  assert.equal(saved.pending?.id.counter, view.id.counter)
  const restarted = new MembershipMachine({ me: member(2), persisted: saved, random: new Prng(7).fn() }, { clusterName: 'unit', clusterSize: 3 }, net.now + 20)
  assert.deepEqual(restarted.persistedState().pending?.members.map(m => m.name), ['n0', 'n1', 'n2', 'n3'])
})

void test('the machine chooses its incarnation: the persisted one\'s generation plus one, and random bits', () => {
  const fresh = new MembershipMachine({ me: member(0), random: () => 0.5 }, { clusterName: 'unit', clusterSize: 1 })
  assert.equal(fresh.me.incarnation, '1-80000000')
  const persisted = { ...fresh.persistedState(), member: fresh.me }
  const next = new MembershipMachine({ me: member(0), persisted, random: () => 0.25 }, { clusterName: 'unit', clusterSize: 1 })
  assert.equal(next.me.incarnation, '2-40000000')
  // State from a version that chose incarnations otherwise (or a lost volume: no state): generation 1 again, and
  // only the random bits tell it from an earlier one.
  const foreign = new MembershipMachine({ me: member(0), persisted: { ...persisted, member: { ...fresh.me, incarnation: 'mxcvu9be-6819bd8d' } }, random: () => 0 }, { clusterName: 'unit', clusterSize: 1 })
  assert.equal(foreign.me.incarnation, '1-00000000')
})

void describe('hand-over outcomes', () => {
  void test('the successor is the oldest member that is not suspected; a named suspected one is refused', () => {
    const { net, ms } = threeUp()
    net.feed(ms[0]!, { type: 'disconnected', peerId: 'p1' }) // n1 suspected until a probe answers
    assert.equal((ms[0]!.handoverTarget() as MemberInfo).name, 'n2')
    assert.match(ms[0]!.handoverTarget('n1') as string, /n1 is suspected/)
    assert.match(ms[0]!.handoverTarget('n9') as string, /no member named n9/)
    assert.match(ms[1]!.handoverTarget() as string, /not the coordinator/)
  })

  void test('a successor that refuses: the hand-over fails at once and the old coordinator leads again', () => {
    const { net, ms } = threeUp()
    const n1 = ms[1]!
    const handle = n1.handle.bind(n1)
    n1.handle = (input, now) => input.type === 'message' && input.msg.type === 'handover'
      ? [{ type: 'reply', msg: { ...env(n1.me), type: 'reply', ok: false, reason: 'not-member', summary: { committedCounter: 0, leading: false, maxCounter: 0 } } }]
      : handle(input, now)
    const before = net.events.length
    net.feed(ms[0]!, { type: 'transfer', to: 'n1' })
    net.run()
    const failed = net.events.slice(before).find(e => e.type === 'handover:failed')
    assert.ok(failed !== undefined && failed.who === 'n0', 'the old leader reports the failure')
    assert.match((failed.payload as { reason: string }).reason, /n1 refused: not-member/)
    net.advance(3000)
    assert.deepEqual(net.leaders(), ['n0'])
  })

  void test('with quorum none, a hand-over completes once the successor coordinates (it leads without a claim)', () => {
    const net = new Net({ clusterName: 'unit', quorum: 'none' })
    const ms = [0, 1, 2].map(i => net.add(member(i)))
    net.discoverAll()
    net.advance(3000)
    assert.deepEqual(net.leaders(), ['n0'])
    const before = net.events.length
    net.feed(ms[0]!, { type: 'transfer', to: 'n1' })
    net.run()
    assert.deepEqual(net.leaders(), ['n1'])
    net.advance(ms[0]!.cfg.promiseMs + 200)
    const outcomes = net.events.slice(before).filter(e => e.type.startsWith('handover:')).map(e => `${e.who} ${e.type}`)
    assert.deepEqual(outcomes, ['n0 handover:completed'])
  })

  void test('a successor that never answers: the hand-over fails once FT + margin ran out', () => {
    const { net, ms } = threeUp()
    net.silent.add(ms[1]!.me.address) // its requests time out: it may or may not have them
    const before = net.events.length
    const at = net.now
    net.feed(ms[0]!, { type: 'transfer', to: 'n1' })
    net.run()
    assert.ok(!net.events.slice(before).some(e => e.type.startsWith('handover:')), 'no outcome while it may still take over')
    net.advance(ms[0]!.cfg.promiseMs + 200)
    const failed = net.events.slice(before).find(e => e.type === 'handover:failed')
    assert.ok(failed !== undefined && failed.at - at >= ms[0]!.cfg.promiseMs, `failed after ${String(failed?.at)} - ${at}`)
  })
})

void test('heartbeat ages: the coordinator measures every other member, a member only its coordinator; a silent member ages', () => {
  const { net, ms } = threeUp()
  const hb = resolveMembershipConfig(net.init).heartbeatMs
  const names = (m: MembershipMachine): string[] => [...m.heartbeatAges(net.now).keys()].sort()
  assert.deepEqual(names(ms[0]!), ['n1', 'n2'])
  assert.deepEqual(names(ms[1]!), ['n0'])
  assert.deepEqual(names(ms[2]!), ['n0'])
  for (const m of ms) {
    for (const [name, age] of m.heartbeatAges(net.now)) assert.ok(age >= 0 && age <= 1.2 * hb, `${m.me.name} heard ${name} ${age} ms ago`)
  }
  net.down.add(member(2).address)
  net.advance(2 * hb)
  const ages = ms[0]!.heartbeatAges(net.now)
  assert.ok(ages.get('n2')! >= 2 * hb, `n2 silent for ${ages.get('n2')} ms`)
  assert.ok(ages.get('n1')! <= 1.2 * hb, `n1 heard ${ages.get('n1')} ms ago`)
  // The same measure as the status's maximum (vectis_cluster_heartbeat_age_max_seconds).
  assert.equal(Math.max(...ages.values()), ms[0]!.status(net.now).heartbeatAgeMaxMs)
})
