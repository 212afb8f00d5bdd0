// The membership driver (the daemon's cluster member) over an in-memory transport with real, short timers:
// election, failover on a stopped leader, hand-over with its hooks in order, graceful leave, restart as the
// youngest, leadership-interval logs, and what happens when the state cannot be persisted.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { MembershipCluster, type ClusterStatePort, type PeerSource } from '../../cluster/cluster-service.js'
import { MembershipMachine } from '../../cluster/membership/machine.js'
import type { PersistedClusterState } from '../../cluster/membership/types.js'
import { createLogger, silentLogger, type Logger } from '../../common/logger.js'
import { MemoryNetwork, MemoryTransport } from '../helpers/memory-transport.js'
import { PROTOCOL_VERSION } from '../../cluster/messages.js'
import { waitFor } from '../helpers/wait.js'

const TIMINGS = { heartbeatMs: 100, failureTimeoutMs: 300, clusterSize: 3 }

class MemoryState implements ClusterStatePort {
  state: PersistedClusterState | undefined
  saves = 0
  load (): PersistedClusterState | undefined { return this.state === undefined ? undefined : structuredClone(this.state) }
  save (s: PersistedClusterState): void { this.state = structuredClone(s); this.saves++ }
}

/** Discovery stand-in: the test says which addresses exist. */
class StaticPeers implements PeerSource {
  private readonly listeners = new Set<(peers: string[]) => void>()
  joined = false
  constructor (private peers: string[]) {}
  async start (): Promise<void> { for (const l of this.listeners) l(this.peers) }
  async stop (): Promise<void> {}
  onPeers (l: (peers: string[]) => void): () => void { this.listeners.add(l); return () => { this.listeners.delete(l) } }
  setJoined (j: boolean): void { this.joined = j }
}

interface Member { node: MembershipCluster, transport: MemoryTransport, state: MemoryState, name: string }

function member (net: MemoryNetwork, i: number, all: string[], state = new MemoryState(), logger: Logger = silentLogger(), size = TIMINGS.clusterSize): Member {
  const address = `127.0.0.${10 + i}:7800`
  const transport = new MemoryTransport(net, address, `peer-${i}`)
  const name = `vectis-${i}`
  const node = new MembershipCluster({ logger, transport, discovery: new StaticPeers(all), state }, {
    ...TIMINGS, clusterSize: size, clusterName: 'unit', nodeName: name, advertiseHost: `127.0.0.${10 + i}`, clusterPort: 7800, handoverDrainMs: 50, leaveTimeoutMs: 2000
  })
  return { node, transport, state, name }
}

async function cluster (n: number): Promise<{ net: MemoryNetwork, members: Member[], all: string[] }> {
  const net = new MemoryNetwork()
  const all = Array.from({ length: n }, (_, i) => `127.0.0.${10 + i}:7800`)
  const members = all.map((_, i) => member(net, i, all))
  for (const m of members) await m.node.start()
  return { net, members, all }
}

const leaders = (ms: Member[]): string[] => ms.filter((m) => m.node.isLeader()).map((m) => m.name)
const viewOf = (m: Member): string[] => m.node.status().members.map((x) => x.name)

void test('three members elect one leader in one view; stopping the leader aborts its signal and fails over', async (t) => {
  const { members } = await cluster(3)
  t.after(async () => { for (const m of members) await m.node.stop() })
  let signal: AbortSignal | undefined
  for (const m of members) m.node.events.on('leader:elected', (e) => { if (signal === undefined) signal = e.signal })
  await waitFor(() => leaders(members).length === 1 && members.every((m) => viewOf(m).length === 3) &&
    new Set(members.map((m) => JSON.stringify(m.node.status().viewId))).size === 1, { what: 'one leader and one view of three' })
  const first = members.find((m) => m.node.isLeader())!
  assert.ok(signal !== undefined && !signal.aborted)
  assert.ok(first.state.state!.highestEpoch.number >= 1, 'the epoch was persisted')
  assert.equal(first.node.status().members[0]!.name, first.name, 'the leader is the coordinator, first in view order')
  assert.ok(members.every((m) => m.node.readiness().ready))

  await first.node.stop()
  assert.equal(signal.aborted, true, 'the leadership signal fires when leadership ends')
  const rest = members.filter((m) => m !== first)
  await waitFor(() => leaders(rest).length === 1 && rest.every((m) => viewOf(m).length === 2), { what: 'a new leader among the others' })
  const second = rest.find((m) => m.node.isLeader())!
  assert.ok(second.node.currentEpoch()!.number > first.state.state!.highestEpoch.number - 1)
})

void test('a transfer runs the hand-over hooks in order, demotes the old leader (handover) and the named member leads', async (t) => {
  const { members } = await cluster(3)
  t.after(async () => { for (const m of members) await m.node.stop() })
  await waitFor(() => leaders(members).length === 1 && members.every((m) => viewOf(m).length === 3), { what: 'a leader and a full view' })
  const old = members.find((m) => m.node.isLeader())!
  const target = members.find((m) => m !== old)!
  const steps: string[] = []
  const reasons: string[] = []
  old.node.registerHandoverHooks({
    stopAccepting: async () => { steps.push(`stop:${String(old.node.isLeader())}`) },
    interrupt: async () => { steps.push(`interrupt:${String(old.node.isLeader())}`) },
    drain: async (to) => { steps.push(`drain:${to}:${String(old.node.isLeader())}`) }
  })
  old.node.events.on('leader:demoted', (e) => { reasons.push(e.reason) })
  const result = await old.node.transferLeadership(target.name)
  assert.equal(result.to, target.name)
  await waitFor(() => leaders(members).join() === target.name, { what: `${target.name} leads` })
  assert.deepEqual(reasons, ['handover'])
  await waitFor(() => steps.length === 3, { what: 'the drain hook' })
  // Stop accepting and interrupt while still leader; the drain towards the successor's host after the lease passed.
  assert.deepEqual(steps, ['stop:true', 'interrupt:true', `drain:${target.node.status().members.find((x) => x.name === target.name)!.address}:false`])
  await assert.rejects(old.node.transferLeadership(), /not the leader/)
  await assert.rejects(target.node.transferLeadership('nobody'), /no member named nobody/)
})

void test('graceful leave of the leader: the successor leads and the leaver is out of the view', async (t) => {
  const { members } = await cluster(3)
  t.after(async () => { for (const m of members) await m.node.stop() })
  await waitFor(() => leaders(members).length === 1 && members.every((m) => viewOf(m).length === 3), { what: 'a leader and a full view' })
  const old = members.find((m) => m.node.isLeader())!
  await old.node.stop()
  const rest = members.filter((m) => m !== old)
  await waitFor(() => leaders(rest).length === 1 && rest.every((m) => viewOf(m).length === 2 && !viewOf(m).includes(old.name)), { what: 'the successor leads a view of two' })
})

void test('a restarted member (same data, new incarnation) rejoins as the youngest without moving the leader', async (t) => {
  const { net, members, all } = await cluster(3)
  t.after(async () => { for (const m of members) await m.node.stop() })
  await waitFor(() => leaders(members).length === 1 && members.every((m) => viewOf(m).length === 3), { what: 'a leader and a full view' })
  const leader = leaders(members)[0]
  const i = members.findIndex((m) => !m.node.isLeader() && m.node.status().members[0]!.name !== m.name)
  const old = members[i]!
  await old.node.stop()
  members[i] = member(net, i, all, old.state)
  await members[i].node.start()
  await waitFor(() => {
    const v = members.find((m) => m.node.isLeader())?.node.status().members
    return v !== undefined && v.length === 3 && v[2]!.name === old.name
  }, { what: 'the new incarnation is last in the view' })
  assert.deepEqual(leaders(members), [leader])
})

void test('leadership intervals are logged with machine-wide monotonic timestamps', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>); cb() } })
  const net = new MemoryNetwork()
  const solo = member(net, 30, [], new MemoryState(), createLogger({ level: 'info', destination: sink }), 1)
  t.after(async () => { await solo.node.stop() })
  await solo.node.start()
  await waitFor(() => solo.node.isLeader(), { what: 'it leads alone' })
  await assert.rejects(solo.node.transferLeadership(), /no other member/)
  assert.ok(solo.node.isLeader(), 'a refused transfer leaves it leader')
  await solo.node.stop()
  const start = lines.find((l) => l.msg === 'leader elected: this member leads')
  const end = lines.find((l) => l.msg === 'leader demoted: this member no longer leads')
  assert.ok(start !== undefined && end !== undefined, 'both edges logged')
  const interval = end.leadershipInterval as { startNs: string, endNs: string }
  assert.equal(interval.startNs, start.leadershipStartNs)
  assert.ok(BigInt(interval.endNs) >= BigInt(interval.startNs))
  assert.ok(BigInt(interval.endNs) <= process.hrtime.bigint())
})

void test('a failed persist drops the outputs that follow it: nothing acts on unsaved state', async (t) => {
  const net = new MemoryNetwork()
  const failing: ClusterStatePort = { load: () => undefined, save: () => { throw new Error('disk full') } }
  const transport = new MemoryTransport(net, '127.0.0.31:7800', 'peer-nodisk')
  const node = new MembershipCluster({ logger: silentLogger(), transport, discovery: new StaticPeers([]), state: failing }, {
    ...TIMINGS, clusterSize: 1, clusterName: 'unit', nodeName: 'nodisk', advertiseHost: '127.0.0.31', clusterPort: 7800
  })
  t.after(async () => { await node.stop() })
  let views = 0
  node.events.on('view:installed', () => { views++ })
  await node.start()
  await waitFor(() => node.failure() !== undefined, { what: 'the member gives up' })
  assert.match(node.failure()!.message, /disk full/)
  assert.equal(views, 0, 'no view announced while its counter cannot be persisted')
  assert.equal(node.isLeader(), false, 'never leader on state that is not durable')
  const r = node.readiness()
  assert.ok(!r.ready && /persisted/.test(r.reason))
})

// ---- Findings of the architecture review (each failed before its fix)

/** Counts the heartbeats a member receives, to know its coordinator went on including it. */
function countHeartbeats (m: Member): () => number {
  let n = 0
  const original = m.transport.handle.bind(m.transport)
  m.transport.handle = (handler) => {
    original((from, payload) => {
      if ((payload as { type?: string }).type === 'heartbeat') n++
      return handler(from, payload)
    })
  }
  return () => n
}

void test('a late "pod restarted" report without an incarnation does not kill the live incarnation that replaced it', async (t) => {
  const net = new MemoryNetwork()
  const all = Array.from({ length: 3 }, (_, i) => `127.0.0.${10 + i}:7800`)
  const members = all.map((_, i) => member(net, i, all))
  t.after(async () => { for (const m of members) await m.node.stop() })
  for (const m of members) await m.node.start()
  await waitFor(() => leaders(members).length === 1 && members.every((m) => viewOf(m).length === 3), { what: 'a leader and a full view' })
  const i = members.findIndex((m) => !m.node.isLeader())
  const old = members[i]!
  await old.node.stop()
  members[i] = member(net, i, all, old.state)
  const heartbeats = countHeartbeats(members[i])
  await members[i].node.start()
  const restarted = members[i]
  await waitFor(() => members.every((m) => viewOf(m).length === 3 && m.node.status().members.at(-1)!.name === restarted.name), { what: 'the new incarnation in every view' })
  // The pod watch, after a gap, re-lists and reports the container restart now, by pod name only.
  const left: string[] = []
  for (const m of members) m.node.events.on('member:left', (e) => { left.push(`${m.name} saw ${e.name} leave`) })
  for (const m of members) if (m !== restarted) m.node.verifiedDead(restarted.name)
  const seen = heartbeats()
  await waitFor(() => heartbeats() >= seen + 5, { what: 'five more heartbeats of its coordinator to the live incarnation' })
  assert.deepEqual(left, [], 'the live incarnation stayed in the view')
  assert.ok(members.every((m) => viewOf(m).includes(restarted.name)))
})

void test('after an exception inside the machine the member no longer leads, by any measure', async (t) => {
  const net = new MemoryNetwork()
  let explode = false
  const transport = new MemoryTransport(net, '127.0.0.32:7800', 'peer-broken')
  const node = new MembershipCluster({
    logger: silentLogger(),
    transport,
    discovery: new StaticPeers([]),
    state: new MemoryState(),
    createMachine: (c, i, now) => {
      const m = new MembershipMachine(c, i, now)
      const handle = m.handle.bind(m)
      m.handle = (input, at) => {
        if (explode && input.type === 'tick') throw new Error('a bug in the machine')
        return handle(input, at)
      }
      return m
    }
  }, { ...TIMINGS, clusterSize: 1, clusterName: 'unit', nodeName: 'broken', advertiseHost: '127.0.0.32', clusterPort: 7800 })
  t.after(async () => { await node.stop() })
  const demoted: string[] = []
  node.events.on('leader:demoted', (e) => { demoted.push(e.reason) })
  await node.start()
  await waitFor(() => node.isLeader(), { what: 'it leads alone' })
  explode = true
  await waitFor(() => demoted.length > 0, { what: 'the leadership ends' })
  assert.equal(node.isLeader(), false, 'isLeader() agrees with the demotion')
  assert.equal(node.leaseRemainingMs(), 0)
  assert.equal(node.status().isLeader, false)
  assert.match(node.failure()?.message ?? '', /a bug in the machine/, 'the failure is reported (the health check fails, the pod restarts)')
})

void test('a hand-over whose successor never takes over fails, and the old leader does not drain towards it', async (t) => {
  const { net, members } = await cluster(3)
  t.after(async () => { for (const m of members) await m.node.stop() })
  await waitFor(() => leaders(members).length === 1 && members.every((m) => viewOf(m).length === 3), { what: 'a leader and a full view' })
  const old = members.find((m) => m.node.isLeader())!
  const target = members.find((m) => m !== old)!
  const steps: string[] = []
  old.node.registerHandoverHooks({
    stopAccepting: async () => { steps.push('stop') },
    drain: async () => { steps.push('drain') },
    cancel: async () => { steps.push('cancel') }
  })
  // The successor never hears of it: the link drops everything (a cut network, a frozen target).
  net.dropped.add(`${old.transport.address}>${target.transport.address}`)
  await assert.rejects(old.node.transferLeadership(target.name), /did not take over/)
  assert.deepEqual(steps, ['stop', 'cancel'], 'accepting again, nothing drained towards a member that does not lead')
  net.dropped.clear()
  await waitFor(() => leaders(members).length === 1, { what: 'a leader again' })
})

void test('a hand-over picks the oldest standby that is not suspected, as the machine does', async (t) => {
  const { members } = await cluster(3)
  t.after(async () => { for (const m of members) await m.node.stop() })
  await waitFor(() => leaders(members).length === 1 && members.every((m) => viewOf(m).length === 3), { what: 'a leader and a full view' })
  const old = members.find((m) => m.node.isLeader())!
  const [oldest, next] = old.node.status().members.slice(1).map((x) => members.find((m) => m.name === x.name)!)
  const steps: string[] = []
  old.node.registerHandoverHooks({ stopAccepting: async () => { steps.push('stop') } })
  // The oldest standby's connection just closed: the leader suspects it until a probe answers.
  old.transport.fireDisconnect(oldest!.transport.peerId)
  const result = await old.node.transferLeadership()
  assert.equal(result.to, next!.name)
  await waitFor(() => leaders(members).join() === next!.name, { what: `${next!.name} leads` })
})

void test('a peer of a protocol version this member does not understand is refused, said once and reported, never a crash', async (t) => {
  const { net, members } = await cluster(1)
  t.after(async () => { for (const m of members) await m.node.stop() })
  const [a] = members
  const seen: Array<{ peer: string, version: number }> = []
  a!.node.events.on('peer:incompatible', (e) => { seen.push(e) })
  const future = new MemoryTransport(net, '127.0.0.99:7800', 'peer-future')
  await future.start()
  t.after(async () => { await future.stop() })
  const hello = { v: PROTOCOL_VERSION + 1, type: 'hello', cluster: 'unit', from: { name: 'vectis-9', peerId: 'peer-future', incarnation: '1-x', address: '127.0.0.99:7800' }, epoch: { number: 0, leader: '' } }
  // Refused (the transport tells the sender only that its request was invalid), three times, reported once.
  for (let k = 0; k < 3; k++) await assert.rejects(future.request(a!.transport.address, hello), /invalid/)
  assert.deepEqual(seen, [{ peer: 'peer-future', version: PROTOCOL_VERSION + 1 }])
  assert.equal(a!.node.failure(), undefined, 'the member goes on as before')
})
