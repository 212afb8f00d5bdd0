/**
 * Journal replication lag under load, in one process: three real stores and libp2p transports (gossipsub) on
 * loopback, the replicator of each, and a load generator on the leader appending transfers at a fixed rate (a
 * begin, three sync points and a completion each: what the PeSIT server writes). For every entry, the time from its
 * commit on the leader to its commit on each member (one clock: the same process); in `sync` mode also the time
 * until the leader knows a majority holds it (what ACK(SYN) waits for). Part of `npm run bench:store`.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { silentLogger } from '../common/logger.js'
import { TypedEmitter } from '../common/typed-events.js'
import type { ServiceHandler } from '../cluster/cluster-api.js'
import type { Epoch, Leadership, LeadershipEvents } from '../cluster/leadership-api.js'
import { JournalReplicator } from '../cluster/journal-replication.js'
import { Libp2pTransport } from '../cluster/transport.js'
import { Store } from '../store/store.js'

export interface LagResult {
  mode: 'async' | 'sync'
  transfersPerSecond: number
  seconds: number
  entries: number
  /** commit on the leader → commit on a member, both members pooled */
  lagMs: { p50: number, p99: number, max: number }
  /** `sync`: commit on the leader → a majority known to hold it */
  majorityMs?: { p50: number, p99: number, max: number }
  /** entries a member never got within the run */
  missing: number
}

class FakeLeadership implements Leadership {
  readonly events = new TypedEmitter<LeadershipEvents>()
  leading = false
  epoch: Epoch | undefined
  isLeader (): boolean { return this.leading }
  currentEpoch (): Epoch | undefined { return this.epoch }
  leaseRemainingMs (): number { return this.leading ? 1000 : 0 }
}

export async function measureReplicationLag (o: { dir: string, mode: 'async' | 'sync', transfersPerSecond: number, seconds: number }): Promise<LagResult> {
  const base = mkdtempSync(join(o.dir, 'bench-replication-'))
  const members: Array<{ name: string, store: Store, transport: Libp2pTransport, leadership: FakeLeadership, replicator?: JournalReplicator, services: Map<string, ServiceHandler> }> = []
  const applied = new Map<number, number[]>()
  const appended = new Map<number, number>()
  const majority: number[] = []
  try {
    for (let i = 0; i < 3; i++) {
      const store = new Store({ logger: silentLogger() }, { dataDir: join(base, `m${i}`) })
      await store.start()
      const transport = new Libp2pTransport({ logger: silentLogger() }, { dataDir: join(base, `m${i}`), advertiseHost: '127.0.9.1', bindHost: '127.0.9.1', port: 0 })
      await transport.start()
      const services = new Map<string, ServiceHandler>()
      transport.handle((from, payload) => {
        const p = payload as Record<string, unknown>
        return typeof p.service === 'string' ? services.get(p.service)?.(from.peerId, p) : 'hello'
      })
      members.push({ name: `m${i}`, store, transport, leadership: new FakeLeadership(), services })
    }
    // Connections as the membership makes them, then until a published probe reaches both members.
    for (const a of members) for (const b of members) if (a !== b) await a.transport.request(b.transport.address, 'hello')
    const seen = new Set<string>()
    for (const m of members.slice(1)) m.transport.subscribe('bench/probe', () => { seen.add(m.name) })
    for (let i = 0; i < 200 && seen.size < 2; i++) {
      await members[0]!.transport.publish('bench/probe', `p${i}`, {})
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const [leader] = members
    for (const m of members) {
      if (m !== leader) {
        // Each member's commits of runs, timed.
        const journal = m.store.journal
        const applyRun = journal.applyRun.bind(journal)
        journal.applyRun = (run) => {
          const r = applyRun(run)
          const now = performance.now()
          for (const e of run.entries) {
            const xs = applied.get(e.seq) ?? []
            xs.push(now)
            applied.set(e.seq, xs)
          }
          return r
        }
      }
      m.replicator = new JournalReplicator({
        logger: silentLogger(), journal: m.store.journal, transport: m.transport, leadership: m.leadership,
        cluster: {
          leaderAddress: () => leader!.transport.address,
          peers: () => members.filter((x) => x !== m).map((x) => ({ name: x.name, address: x.transport.address })),
          majority: () => 2,
          serve: (name, h) => { m.services.set(name, h) }
        }
      }, { clusterName: 'bench', nodeName: m.name, mode: o.mode })
      m.replicator.start()
    }
    const epoch = { number: 1, leader: leader!.name }
    leader!.store.clusterState.raiseEpoch(leader!.name, 1)
    for (const m of members) m.leadership.epoch = epoch
    leader!.leadership.leading = true
    leader!.leadership.events.emit('leader:elected', { epoch, signal: new AbortController().signal })
    await leader!.replicator!.leaderReady()
    const j = leader!.store.journal
    j.onAppended((e) => { appended.set(e.seq, performance.now()) })
    const waits: Array<Promise<void>> = []
    const note = (seq: number): void => {
      if (o.mode !== 'sync') return
      const t0 = performance.now()
      waits.push(leader!.replicator!.awaitReplicated(seq).then(() => { majority.push(performance.now() - t0) }, () => {}))
    }
    // The load: transfers started at a fixed rate, each a begin, three sync points and a completion.
    const total = Math.round(o.transfersPerSecond * o.seconds)
    const t0 = performance.now()
    for (let k = 0; k < total; k++) {
      const due = t0 + (k * 1000) / o.transfersPerSecond
      const wait = due - performance.now()
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      const r = j.begin({ epoch: 1, member: leader!.name, server: 'PESITSRV', partner: 'CXCLIENT', virtualFile: 'PAYMENTS', direction: 'receive' })
      for (let s = 1; s <= 3; s++) note(j.recordSyncPoint(r.id, { syncPoint: s, offset: s * 65536 }).seq)
      note(j.complete(r.id, { bytes: 3 * 65536, sha256: 'ab'.repeat(32) }).seq)
    }
    await Promise.all(waits)
    // Until every entry reached both members, or 5 s.
    const deadline = performance.now() + 5000
    while (performance.now() < deadline && [...appended.keys()].some((s) => (applied.get(s)?.length ?? 0) < 2)) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    const lags: number[] = []
    let missing = 0
    for (const [seq, at] of appended) {
      const xs = applied.get(seq) ?? []
      missing += 2 - Math.min(2, xs.length)
      for (const x of xs) lags.push(x - at)
    }
    return {
      mode: o.mode, transfersPerSecond: o.transfersPerSecond, seconds: o.seconds, entries: appended.size,
      lagMs: stats(lags), ...(o.mode === 'sync' ? { majorityMs: stats(majority) } : {}), missing
    }
  } finally {
    for (const m of members) {
      m.replicator?.stop()
      await m.transport.stop().catch(() => {})
      await m.store.stop().catch(() => {})
    }
    rmSync(base, { recursive: true, force: true })
  }
}

function stats (xs: number[]): { p50: number, p99: number, max: number } {
  const s = [...xs].sort((a, b) => a - b)
  const at = (p: number): number => s.length === 0 ? Number.NaN : Math.round(s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]! * 100) / 100
  return { p50: at(0.5), p99: at(0.99), max: s.length === 0 ? Number.NaN : Math.round(s.at(-1)! * 100) / 100 }
}

