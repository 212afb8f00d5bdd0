// The membership driver over an in-memory transport with real (short) timers: election, failover on a stopped
// leader, hand-over, graceful leave, persistence and the leadership abort signal.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ClusterNode, type ClusterStatePort } from '../../cluster/cluster-node.js'
import type { PersistedClusterState } from '../../cluster/membership.js'
import { MemoryNetwork, MemoryTransport } from '../helpers/memory-transport.js'

const TIMINGS = { heartbeatMs: 100, failureTimeoutMs: 300, clusterSize: 3, clusterName: 'unit' }

class MemoryState implements ClusterStatePort {
  state: PersistedClusterState | undefined
  saves = 0
  load (): PersistedClusterState | undefined { return this.state === undefined ? undefined : structuredClone(this.state) }
  save (s: PersistedClusterState): void { this.state = structuredClone(s); this.saves++ }
}

async function waitFor (what: string, cond: () => boolean, deadlineMs = 10_000): Promise<void> {
  const end = Date.now() + deadlineMs
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

interface Member { node: ClusterNode, transport: MemoryTransport, state: MemoryState }

async function cluster (n: number): Promise<{ net: MemoryNetwork, members: Member[], stopAll: () => Promise<void> }> {
  const net = new MemoryNetwork()
  const members: Member[] = []
  for (let i = 0; i < n; i++) {
    const transport = new MemoryTransport(net, `127.0.0.${10 + i}:7800`, `peer-${i}`)
    const state = new MemoryState()
    await transport.start()
    const node = new ClusterNode({ transport, state }, { ...TIMINGS, name: `vectis-${i}`, address: transport.address })
    members.push({ node, transport, state })
  }
  for (const m of members) await m.node.start()
  for (const m of members) m.node.discovered(members.map(x => x.transport.address))
  const stopAll = async (): Promise<void> => {
    for (const m of members) { await m.node.stop(); await m.transport.stop() }
  }
  return { net, members, stopAll }
}

const leaders = (ms: Member[]): string[] => ms.filter(m => m.node.isLeader()).map(m => m.node.me!.name)

void test('three members elect one leader, all in one view; stopping the leader aborts its signal and fails over', async (t) => {
  const { members, stopAll } = await cluster(3)
  t.after(stopAll)
  let signal: AbortSignal | undefined
  members[0]!.node.events.on('leader:elected', (e) => { signal = e.signal })
  await waitFor('one leader and one view of three', () => {
    const views = new Set(members.map(m => JSON.stringify(m.node.status()?.view?.id)))
    return leaders(members).length === 1 && views.size === 1 && members[0]!.node.status()?.view?.members.length === 3
  })
  assert.deepEqual(leaders(members), ['vectis-0'])
  assert.ok(signal !== undefined && !signal.aborted)
  assert.ok(members[0]!.state.saves > 0 && members[0]!.state.state!.highestEpoch.number >= 1, 'the epoch was persisted')

  await members[0]!.node.stop()
  await members[0]!.transport.stop()
  assert.equal(signal.aborted, true, 'the leadership signal fires when leadership ends')
  const rest = members.slice(1)
  await waitFor('a new leader among the others', () => leaders(rest).length === 1 && rest.every(m => m.node.status()?.view?.members.length === 2))
  assert.deepEqual(leaders(rest), ['vectis-1'])
  assert.ok(members[1]!.node.currentEpoch()!.number > members[0]!.node.lastLeadershipEpoch()!.number)
})

void test('leadership transfer: the old leader is demoted (handover) and the named member leads', async (t) => {
  const { members, stopAll } = await cluster(3)
  t.after(stopAll)
  await waitFor('a leader', () => leaders(members).length === 1)
  const reasons: string[] = []
  members[0]!.node.events.on('leader:demoted', (e) => { reasons.push(e.reason) })
  members[0]!.node.transferLeadership('vectis-2')
  await waitFor('vectis-2 leads', () => leaders(members).join() === 'vectis-2')
  assert.deepEqual(reasons, ['handover'])
  assert.deepEqual(members[2]!.node.status()!.view!.members.map(m => m.name), ['vectis-2', 'vectis-1', 'vectis-0'])
})

void test('graceful leave of the leader: the successor leads and the leaver is out of the view', async (t) => {
  const { members, stopAll } = await cluster(3)
  t.after(stopAll)
  await waitFor('a leader', () => leaders(members).length === 1)
  let left = false
  members[0]!.node.events.on('cluster:left', () => { left = true })
  await members[0]!.node.leave()
  assert.equal(left, true)
  await members[0]!.node.stop()
  await members[0]!.transport.stop()
  const rest = members.slice(1)
  await waitFor('the successor leads a view of two', () => leaders(rest).join() === 'vectis-1' && rest.every(m => m.node.status()?.view?.members.length === 2))
})

void test('a restarted member (same data, new incarnation) rejoins as the youngest without moving the leader', async (t) => {
  const { net, members, stopAll } = await cluster(3)
  t.after(stopAll)
  await waitFor('a leader and a full view', () => leaders(members).length === 1 && members.every(m => m.node.status()?.view?.members.length === 3))
  const old = members[1]!
  await old.node.stop()
  await old.transport.stop()
  const transport = new MemoryTransport(net, old.transport.address, old.transport.peerId)
  await transport.start()
  const node = new ClusterNode({ transport, state: old.state }, { ...TIMINGS, name: 'vectis-1', address: transport.address })
  members[1] = { node, transport, state: old.state }
  await node.start()
  node.discovered(members.map(x => x.transport.address))
  await waitFor('the new incarnation is last in the view', () => {
    const v = members[0]!.node.status()?.view
    return v !== undefined && v.members.length === 3 && v.members[2]!.incarnation === node.incarnation
  })
  assert.deepEqual(leaders(members), ['vectis-0'])
})

void test('leadership intervals are logged with machine-wide monotonic timestamps', async (t) => {
  const { Writable } = await import('node:stream')
  const { createLogger } = await import('../../daemon/logger.js')
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>); cb() } })
  const net = new MemoryNetwork()
  const transport = new MemoryTransport(net, '127.0.0.30:7800', 'peer-solo')
  await transport.start()
  const node = new ClusterNode({ transport, state: new MemoryState(), logger: createLogger({ level: 'info', destination: sink }) },
    { ...TIMINGS, clusterSize: 1, name: 'solo', address: transport.address })
  t.after(async () => { await node.stop(); await transport.stop() })
  await node.start()
  await waitFor('it leads alone', () => node.isLeader())
  node.transferLeadership() // nobody to hand over to: it stays leader
  await node.stop()
  const start = lines.find(l => l.msg === 'leader elected')
  const end = lines.find(l => l.msg === 'leader demoted')
  assert.ok(start !== undefined && end !== undefined, 'both edges logged')
  assert.equal(start.component, 'cluster:membership')
  assert.ok(BigInt(end.leadershipEndNs as string) >= BigInt(start.leadershipStartNs as string))
  assert.equal(end.reason, 'shutdown')
})

void test('a failed persist drops the outputs that follow it: nothing acts on unsaved state', async (t) => {
  const net = new MemoryNetwork()
  const transport = new MemoryTransport(net, '127.0.0.31:7800', 'peer-nodisk')
  await transport.start()
  const failing: ClusterStatePort = { load: () => undefined, save: () => { throw new Error('disk full') } }
  const node = new ClusterNode({ transport, state: failing }, { ...TIMINGS, clusterSize: 1, name: 'nodisk', address: transport.address })
  t.after(async () => { await node.stop(); await transport.stop() })
  let views = 0
  let failed: Error | undefined
  node.events.on('view:installed', () => { views++ })
  node.events.on('cluster:failed', (e) => { failed = e.error })
  await node.start()
  await waitFor('the membership gives up', () => failed !== undefined)
  assert.match(failed!.message, /disk full/)
  assert.equal(views, 0, 'no view announced while its counter cannot be persisted')
  assert.equal(node.isLeader(), false, 'never leader on state that is not durable')
})
