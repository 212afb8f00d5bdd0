// The journal replicated from the leader to the members (cluster/journal-replication.ts), over the in-memory
// transport with real stores: runs as they are committed, gaps repaired from the leader, a restarted or wiped member
// catching up, a deposed leader refused, a new leader's unconfirmed tail dropped.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { silentLogger } from '../../common/logger.js'
import { TypedEmitter } from '../../common/typed-events.js'
import type { Epoch, Leadership, LeadershipEvents } from '../../cluster/leadership-api.js'
import type { ServiceHandler } from '../../cluster/cluster-api.js'
import { JournalReplicator, JOURNAL_TOPIC } from '../../cluster/journal-replication.js'
import type { Store } from '../../store/store.js'
import { MemoryNetwork, MemoryTransport } from '../helpers/memory-transport.js'
import { ManualClock } from '../helpers/manual-clock.js'
import { startStore, tempDataDir, transfer } from '../helpers/store-fixtures.js'
import { waitFor } from '../helpers/wait-for.js'

const SHA = 'cd'.repeat(32)
const DAY = 24 * 60 * 60 * 1000

/** Who leads, as every member's cluster part would say: set by the test. */
class World {
  readonly net = new MemoryNetwork()
  leader: string | null = null
  epoch = 0
  readonly members: Member[] = []
  elect (m: Member): void {
    this.epoch++
    for (const x of this.members) if (x !== m && x.leading) x.demote()
    this.leader = m.name
    m.store.clusterState.raiseEpoch(m.name, this.epoch)
    m.elect({ number: this.epoch, leader: m.name })
  }
}

class Member implements Leadership {
  readonly events = new TypedEmitter<LeadershipEvents>()
  leading = false
  private epoch: Epoch | undefined
  replicator!: JournalReplicator
  transport!: MemoryTransport
  private services = new Map<string, ServiceHandler>()

  constructor (readonly world: World, readonly name: string, public store: Store, private readonly mode: 'async' | 'sync' = 'async') {}

  start (address: string): void {
    this.transport = new MemoryTransport(this.world.net, address, `peer-${this.name}`)
    this.transport.handle((from, payload) => {
      const p = payload as Record<string, unknown>
      return this.services.get(p.service as string)!(from.peerId, p)
    })
    this.replicator = new JournalReplicator({
      logger: silentLogger(),
      journal: this.store.journal,
      transport: this.transport,
      cluster: {
        leaderAddress: () => this.world.members.find((m) => m.name === this.world.leader)?.transport.address,
        peers: () => this.world.members.filter((m) => m !== this).map((m) => ({ name: m.name, address: m.transport.address })),
        majority: () => Math.floor(this.world.members.length / 2) + 1,
        serve: (n, h) => { this.services.set(n, h) }
      },
      leadership: this
    }, { clusterName: 'test', nodeName: this.name, headIntervalMs: 50, mode: this.mode, replicationTimeoutMs: 500 })
    void this.transport.start()
    this.replicator.start()
  }

  stop (): void {
    this.replicator.stop()
    void this.transport.stop()
  }

  isLeader (): boolean { return this.leading }
  currentEpoch (): Epoch | undefined { return this.epoch }
  leaseRemainingMs (): number { return this.leading ? 1000 : 0 }
  elect (e: Epoch): void {
    this.epoch = e
    this.leading = true
    this.events.emit('leader:elected', { epoch: e, signal: new AbortController().signal })
  }

  demote (): void {
    this.leading = false
    this.events.emit('leader:demoted', { epoch: this.epoch!, reason: 'superseded' })
  }

  /** A member learns of a newer epoch (its vote in an election). */
  learn (e: Epoch): void { this.epoch = e }
}

async function cluster (t: TestContext, n = 3, mode: 'async' | 'sync' = 'async', clock?: ManualClock): Promise<World> {
  const w = new World()
  for (let i = 0; i < n; i++) {
    const m = new Member(w, `vectis-${i}`, (await startStore(t, tempDataDir(t), {}, clock)).store, mode)
    w.members.push(m)
    m.start(`10.0.0.${i}:7946`)
    t.after(() => { m.stop() })
  }
  return w
}

/** Some transfers on the leader, as the PeSIT server writes them. */
function work (leader: Member, n: number, epoch: number): void {
  for (let i = 0; i < n; i++) {
    const r = leader.store.journal.begin(transfer(epoch, { partner: `P${i % 7}` }))
    leader.store.journal.recordSyncPoint(r.id, { syncPoint: 1, offset: 100 })
    if (i % 3 !== 2) leader.store.journal.complete(r.id, { bytes: 100, sha256: SHA })
  }
}

async function converged (w: World, what: string, among = w.members): Promise<void> {
  const leader = w.members.find((m) => m.name === w.leader)!
  await waitFor(() => among.every((m) => m.store.journal.position() === leader.store.journal.position() &&
    JSON.stringify(m.store.journal.list({ limit: 10_000 })) === JSON.stringify(leader.store.journal.list({ limit: 10_000 }))),
  { timeoutMs: 10_000, what })
  for (const m of among) assert.deepEqual(m.store.journal.changesSince(0, 10_000), leader.store.journal.changesSince(0, 10_000), m.name)
}

test('every member holds the leader\'s rows and log, as they are committed', async (t) => {
  const w = await cluster(t)
  const [a] = w.members
  w.elect(a!)
  work(a!, 120, w.epoch)
  await converged(w, 'every member has the 120 transfers')
  assert.equal(w.members[1]!.store.journal.list({ limit: 1000 }).length, 120)
  // The leader knows how far each member is.
  await waitFor(() => {
    const s = a!.replicator.state()
    return w.members.every((m) => s.members[m.name] === a!.store.journal.position())
  }, { what: 'the members\' acknowledgements' })
  assert.equal(w.members[2]!.replicator.state().lagEntries, 0)
})

test('lost messages are repaired from the leader: the head shows the gap, the member asks for what follows', async (t) => {
  const w = await cluster(t)
  const [a, b] = w.members
  w.elect(a!)
  work(a!, 10, w.epoch)
  await converged(w, 'the first ten')
  w.net.dropPublished = true
  work(a!, 30, w.epoch) // every run lost (they are published in the next turn of the event loop)
  await new Promise((resolve) => setImmediate(resolve))
  await new Promise((resolve) => setImmediate(resolve))
  w.net.dropPublished = false
  work(a!, 5, w.epoch) // the next run arrives after a gap
  await converged(w, 'the gap filled')
  assert.equal(b!.store.journal.list({ limit: 1000 }).length, 45)
})

test('a member stopped during the work, and one wiped, catch up when they return', async (t) => {
  const w = await cluster(t)
  const [a, b, c] = w.members
  w.elect(a!)
  work(a!, 20, w.epoch)
  await converged(w, 'before the stop')
  b!.stop()
  c!.stop()
  work(a!, 200, w.epoch)
  // b comes back with its data; c with an empty data directory.
  b!.start('10.0.0.1:7946')
  c!.store = (await startStore(t, tempDataDir(t))).store
  c!.start('10.0.0.2:7946')
  work(a!, 3, w.epoch)
  await converged(w, 'the returning members caught up')
  assert.equal(c!.store.journal.list({ limit: 1000 }).length, 223)
})

test('retention is replicated; a member away longer than the retention compares its whole log and drops what the leader pruned', async (t) => {
  const clock = new ManualClock()
  const w = await cluster(t, 3, 'async', clock)
  const [a, b, c] = w.members
  for (const m of w.members) m.store.journal.setLeaderCheck(() => m.leading)
  w.elect(a!)
  work(a!, 30, w.epoch) // 20 completed, 10 in progress
  await converged(w, 'before c stops')
  c!.stop()
  for (const r of a!.store.journal.inProgress()) a!.store.journal.complete(r.id, { bytes: 100, sha256: SHA })
  clock.advance(31 * DAY)
  assert.equal((await a!.store.retention.runOnce()).transfers, 30)
  await waitFor(() => b!.store.journal.position() === a!.store.journal.position(), { what: 'b applied the prune entry' })
  assert.equal(b!.store.journal.list({ limit: 100 }).length, 0)
  // Its own retention removes no rows (it does not lead), only old log entries, as the leader's did.
  assert.equal((await b!.store.retention.runOnce()).transfers, 0)
  await converged(w, 'a and b the same', [a!, b!])
  work(a!, 4, w.epoch)
  // The prune entry itself passes the retention and goes: c, still away, can no longer receive it.
  clock.advance(31 * DAY)
  await a!.store.retention.runOnce()
  await waitFor(() => b!.store.journal.position() === a!.store.journal.position(), { what: 'b applied the second prune entry' })
  await b!.store.retention.runOnce()
  assert.ok(a!.store.journal.prunedThrough() > c!.store.journal.position())
  // c returns holding 10 rows in progress that the leader completed and pruned meanwhile.
  assert.equal(c!.store.journal.inProgress().length, 10)
  c!.start('10.0.0.2:7946')
  work(a!, 1, w.epoch)
  await converged(w, 'c compared its whole log with the leader\'s')
  assert.equal(c!.store.journal.list({ limit: 100 }).length, a!.store.journal.list({ limit: 100 }).length)
  assert.equal(c!.store.journal.inProgress().length, a!.store.journal.inProgress().length)
})

test('a new leader goes on from its position; the deposed leader\'s unshipped tail and late runs are refused everywhere', async (t) => {
  const w = await cluster(t)
  const [a, b, c] = w.members
  w.elect(a!)
  const first = w.epoch
  work(a!, 10, first)
  await converged(w, 'epoch 1 shipped')
  // a goes on alone (its runs never leave it), then b is elected, c votes for it.
  w.net.dropped.add(`${a!.transport.address}>${b!.transport.address}`)
  w.net.dropped.add(`${a!.transport.address}>${c!.transport.address}`)
  work(a!, 4, first)
  const tail = a!.store.journal.position()
  c!.learn({ number: first + 1, leader: b!.name })
  w.elect(b!) // demotes a
  work(b!, 6, w.epoch)
  w.net.dropped.clear()
  await converged(w, 'a follows b: its unshipped tail is gone')
  assert.ok(a!.store.journal.changesSince(0, 1000).every((e) => e.seq <= tail ? true : e.epoch === w.epoch), 'past the shared point, only epoch 2')
  assert.equal(a!.store.journal.list({ limit: 1000 }).length, 16)

  // A run published late by the deposed leader (epoch 1) is refused by members that know epoch 2.
  const before = c!.store.journal.changesSince(0, 1000)
  const refusedBefore = c!.replicator.state().refused
  const pos = b!.store.journal.position()
  const last = b!.store.journal.changesSince(pos - 1, 1)[0]!
  const entry = { ...last, seq: pos + 1, epoch: first, data: { ...last.data, seq: pos + 1, epoch: first, diagnostic: 'from a deposed leader' } }
  const late = { kind: 'run', cluster: 'test', leader: a!.name, epoch: first, after: pos, entries: [entry] }
  await a!.transport.publish(JOURNAL_TOPIC, 'late', late)
  await waitFor(() => c!.replicator.state().refused > refusedBefore, { what: 'the late run refused' })
  assert.deepEqual(c!.store.journal.changesSince(0, 1000), before)
})

test('sync: a change is reported replicated once a majority holds it, and not while only the leader does', async (t) => {
  const w = await cluster(t, 3, 'sync')
  const [a, b, c] = w.members
  w.elect(a!)
  await a!.replicator.leaderReady()
  const r = a!.store.journal.begin(transfer(w.epoch))
  await a!.replicator.awaitReplicated(r.seq) // b and c acknowledge
  assert.ok(b!.store.journal.position() >= r.seq || c!.store.journal.position() >= r.seq)
  b!.stop()
  const r2 = a!.store.journal.recordSyncPoint(r.id, { syncPoint: 1, offset: 10 })
  await a!.replicator.awaitReplicated(r2.seq) // a and c: still a majority
  c!.stop()
  const r3 = a!.store.journal.recordSyncPoint(r.id, { syncPoint: 2, offset: 20 })
  await assert.rejects(a!.replicator.awaitReplicated(r3.seq), /not on a majority/)
  // A member back: the waiting is over as soon as it acknowledges.
  c!.start('10.0.0.2:7946')
  const r4 = a!.store.journal.recordSyncPoint(r.id, { syncPoint: 3, offset: 30 })
  await a!.replicator.awaitReplicated(r4.seq)
})

test('sync: a new leader first takes from the other members what its predecessor had them acknowledge', async (t) => {
  const w = await cluster(t, 3, 'sync')
  const [a, b, c] = w.members
  w.elect(a!)
  await a!.replicator.leaderReady()
  work(a!, 3, w.epoch)
  await converged(w, 'the first three')
  // c stops hearing a; a and b go on: what a acknowledges is on a and b only.
  w.net.dropped.add(`${a!.transport.address}>${c!.transport.address}`)
  const r = a!.store.journal.begin(transfer(w.epoch, { partner: 'LATE' }))
  await a!.replicator.awaitReplicated(r.seq)
  assert.equal(b!.store.journal.get(r.id)?.partner, 'LATE')
  assert.equal(c!.store.journal.get(r.id), undefined)
  // a dies; c is elected (b voted for it): before it serves, it has the row.
  a!.stop()
  w.members.splice(0, 1)
  w.net.dropped.clear()
  w.elect(c!)
  await c!.replicator.leaderReady()
  assert.equal(c!.store.journal.get(r.id)?.partner, 'LATE')
  await converged(w, 'b and c the same')
})

test('sync: a new leader catching up over several pages publishes nothing members would align to meanwhile', async (t) => {
  const w = await cluster(t, 3, 'sync')
  const [a, b, c] = w.members
  w.elect(a!)
  await a!.replicator.leaderReady()
  // c hears nothing of a from here on; a and b go on with more than a page of entries.
  w.net.dropped.add(`${a!.transport.address}>${c!.transport.address}`)
  work(a!, 200, w.epoch)
  await a!.replicator.awaitReplicated(a!.store.journal.position())
  // a is deposed; c is elected and asks a (no answer: a timeout per round) and b (the entries) for what it lacks.
  w.elect(c!)
  await c!.replicator.leaderReady()
  assert.equal(c!.store.journal.list({ limit: 1000 }).length, 200)
  await waitFor(() => b!.store.journal.position() === c!.store.journal.position(), { timeoutMs: 10_000, what: 'b follows c' })
  assert.equal(b!.store.journal.list({ limit: 1000 }).length, 200, 'b lost nothing while c caught up')
  assert.deepEqual(b!.store.journal.changesSince(0, 10_000), c!.store.journal.changesSince(0, 10_000))
})
