/**
 * Discrete-event simulation of N members running the shipped `MembershipMachine` over an in-memory network, in
 * true (global) time. Each member has its own monotonic clock (`local = offset + rate × true`, rate within the
 * drift bound), its own seeded jitter, persisted state that survives its restarts, and a driver that ticks every
 * ~HB/5 and executes the machine's outputs.
 *
 * Faults: crashes (the address then refuses connections; a restart is a new incarnation with the persisted state),
 * pauses (the member processes nothing, inputs queue, its clock keeps running: it wakes with time jumped), one-way and
 * two-way dropping partitions, resetting partitions (connections refused/closed both ways), delays and delay spikes
 * (reorders), losses, duplicates, graceful leaves, leadership transfers, and outside "verified dead" facts.
 *
 * Invariants are checked after every event (see `checkInvariants`); a violation throws `SimulationFailure` whose
 * message carries the one-line replay command.
 */
import { MembershipDriver } from '../../../cluster/membership/driver.js'
import { MembershipMachine } from '../../../cluster/membership/machine.js'
import type { MembershipComponents, MembershipInput, MembershipOutput, PersistedClusterState } from '../../../cluster/membership/types.js'
import type { MembershipInit } from '../../../cluster/membership/config.js'
import { compareEpochs } from '../../../common/epoch.js'
import { DEFAULT_HEARTBEAT_MS, DEFAULT_MAX_CLOCK_DRIFT } from '../../../cluster/defaults.js'
import { memberKey, type ClusterRequest, type MemberInfo, type ReplyMessage } from '../../../cluster/messages.js'
import type { Epoch } from '../../../cluster/leadership-api.js'
import { EventQueue } from './event-queue.js'
import { TraceDigest } from './trace-digest.js'
import { Prng } from './prng.js'

export type LinkState = 'ok' | 'drop' | 'reset'

export interface SimOptions {
  seed: number
  nodes: number
  quorum?: 'majority' | 'none'
  /** Overrides of the machine's options (defaults are the shipped defaults). */
  membership?: MembershipInit
  /** Length of the fault phase (true ms). 0: no faults (cold start only). */
  faultMs?: number
  /** Mean time between two faults in the fault phase. */
  faultEveryMs?: number
  /** After the faults stop, one view with every live member and one leader must hold within this bound. */
  settleBoundMs?: number
  /** Largest clock-rate error (each member gets a rate in [1 − d, 1 + d]). */
  drift?: number
  /** Clock rates at the drift bound exactly (1 − d or 1 + d), the worst case of the lease arithmetic. */
  driftAtBound?: boolean
  /** Members start within this spread (cold start). */
  startSpreadMs?: number
  /** Feed "verified dead" facts by pod name to the members some time after a crash (the Kubernetes pod watch). */
  outsideDeathFacts?: boolean
  /** Leave this many members crashed for good at the end of the faults (must stay a minority). */
  permanentlyDead?: number
  /**
   * A slow, lossy network during the cold start (first contacts time out, answers arrive late and out of date, as on
   * a loaded machine): until `untilMs`, each message is lost with `lossProb` or delayed 20–800 ms with `slowProb`.
   */
  coldNetwork?: { untilMs: number, lossProb: number, slowProb: number }
  /** Check that no two multi-member views with different coordinators coexist (meaningful without faults). */
  checkNoSplit?: boolean
  /** With `trace`: also every request and its outcome, heartbeats excepted (`bench/sim.ts --replay --messages`). */
  traceMessages?: boolean
  /** Record a trace of events (for a replay). */
  trace?: (line: string) => void
  /** Faults at fixed times, aimed at the leader of that moment (instead of the random faults of the fault phase). */
  script?: ScriptedFault[]
  /** Builds each member's machine (tests substitute a deliberately broken one to prove the checks can fail). */
  createMachine?: (components: MembershipComponents, init: MembershipInit, now: number) => MembershipMachine
}

export interface ScriptedFault {
  at: number
  action: 'pause-leader' | 'crash-leader' | 'leave-leader' | 'transfer' | 'partition-leader' | 'crash-member'
  /** Pause or partition length. */
  ms?: number
  kind?: 'drop' | 'reset' | 'one-way'
}

export interface SimResult {
  seed: number
  events: number
  /** True ms from the end of the faults to convergence (one view of all live members + one leader). */
  convergeMs: number
  /** True ms from the last start to the first such convergence, in cold-start runs. */
  coldStartMs?: number
  leaderChanges: number
  views: number
  faults: string[]
  /** Every election, in true time (ms). */
  elections: Array<{ at: number, name: string, epoch: number }>
  /** Digest of every machine input and output of the run (`trace-digest.ts`). */
  digest: string
}

export class SimulationFailure extends Error {
  override name = 'SimulationFailure'
}

interface Proc {
  incarnation: number
  member: MemberInfo
  machine: MembershipMachine
  driver: MembershipDriver
  pending: Map<number, { done: boolean }>
  paused: boolean
  inbox: Array<() => void>
}

interface SimNode {
  index: number
  name: string
  address: string
  peerId: string
  rate: number
  offset: number
  rng: Prng
  persisted?: PersistedClusterState
  proc?: Proc
  incarnations: number
  /** The pod's `vectis.io/incarnation` annotation: written by each process shortly after it starts. */
  annotation?: string
  lastViewCounter: number
  lastViewKey: string
  /** The view the current process last reported primary (`view:installed` with primary), if any. */
  reportedPrimary: string | undefined
  highestEpoch: Epoch
}

type Ev =
  | { at: number, seq: number, kind: 'tick', node: number, inc: number }
  | { at: number, seq: number, kind: 'call', fn: () => void }


export function replayCommand (o: SimOptions, profile: string): string {
  return `npx tsx bench/sim.ts --replay --seed ${o.seed} --nodes ${o.nodes} --quorum ${o.quorum ?? 'majority'} --profile ${profile}`
}

export class Simulation {
  readonly o: Required<Omit<SimOptions, 'trace' | 'membership' | 'createMachine' | 'script' | 'coldNetwork' | 'traceMessages'>> & Pick<SimOptions, 'trace' | 'membership' | 'createMachine' | 'script' | 'coldNetwork' | 'traceMessages'>
  private readonly rng: Prng
  private readonly q = new EventQueue<Ev>()
  private readonly nodes: SimNode[] = []
  private readonly links = new Map<string, LinkState>()
  private t = 0
  private events = 0
  private lossProb = 0
  private dupProb = 0
  private slowProb = 0
  private slowMaxMs = 400
  private readonly faults: string[] = []
  private lastLeaderEpoch: Epoch | undefined
  private readonly electedEpochs = new Set<string>()
  private readonly elections: SimResult['elections'] = []
  private readonly leaderEpochs = new Map<string, { epoch: Epoch, inc: number }>()
  private leaderChanges = 0
  private views = 0
  private readonly hb: number
  private profile = 'custom'
  private readonly digest = new TraceDigest()

  constructor (opts: SimOptions) {
    this.o = {
      quorum: 'majority',
      faultMs: 20_000,
      faultEveryMs: 1500,
      settleBoundMs: 20_000,
      drift: DEFAULT_MAX_CLOCK_DRIFT,
      driftAtBound: false,
      startSpreadMs: 300,
      outsideDeathFacts: false,
      permanentlyDead: 0,
      checkNoSplit: false,
      ...opts
    }
    this.rng = new Prng(opts.seed)
    this.hb = opts.membership?.heartbeatMs ?? DEFAULT_HEARTBEAT_MS
    for (let i = 0; i < opts.nodes; i++) {
      this.nodes.push({
        index: i,
        name: `m${i}`,
        address: `10.0.0.${10 + i}:7800`,
        peerId: `peer-${i}`,
        rate: this.o.driftAtBound ? 1 + (this.rng.chance(0.5) ? -this.o.drift : this.o.drift) : 1 + this.rng.range(-this.o.drift, this.o.drift),
        offset: this.rng.range(0, 1e6),
        rng: this.rng.fork(),
        incarnations: 0,
        lastViewCounter: 0,
        lastViewKey: '',
        reportedPrimary: undefined,
        highestEpoch: { number: 0, leader: '' }
      })
    }
  }

  setProfile (p: string): this { this.profile = p; return this }

  private local (n: SimNode): number { return n.offset + n.rate * this.t }
  /** True ms for `ms` of a member's local clock. */
  private trueDur (n: SimNode, ms: number): number { return ms / n.rate }

  private trace (s: string): void { this.o.trace?.(`${this.t.toFixed(1).padStart(9)} ${s}`) }

  private fail (what: string): never {
    throw new SimulationFailure(`seed ${this.o.seed}: invariant violated at t=${this.t.toFixed(1)} ms: ${what}\n` +
      `  faults: ${this.faults.slice(-12).join('; ')}\n  replay: ${replayCommand(this.o, this.profile)}`)
  }

  private at (dt: number, fn: () => void): void { this.q.push({ at: this.t + Math.max(0, dt), kind: 'call', fn }) }

  // ---------------------------------------------------------------------------------------------------------
  // Members

  private start (n: SimNode): void {
    n.incarnations++
    const init: MembershipInit = {
      clusterName: 'sim',
      clusterSize: this.o.nodes,
      quorum: this.o.quorum,
      ...this.o.membership
    }
    const components: MembershipComponents = { me: { name: n.name, peerId: n.peerId, address: n.address }, ...(n.persisted !== undefined ? { persisted: n.persisted } : {}), random: n.rng.fn() }
    const machine = this.o.createMachine !== undefined
      ? this.o.createMachine(components, init, this.local(n))
      : new MembershipMachine(components, init, this.local(n))
    const driver = new MembershipDriver(machine, {
      observe: (input, now, out) => { this.observe(n, proc, input, now, out) },
      persist: (state) => {
        n.highestEpoch = state.highestEpoch
        n.persisted = structuredClone(state)
      },
      send: (o) => { this.send(n, proc, o.id, o.to, o.msg, o.timeoutMs) },
      event: (e) => { this.onEvent(n, e) },
      log: (o) => { this.trace(`${n.name} ${o.msg} ${JSON.stringify(o.fields ?? {})}`) },
      failed: (err, cause) => { this.fail(`${n.name}: the driver failed (${cause}): ${err.stack ?? err.message}`) }
    })
    const member = machine.me // the machine chose the incarnation
    const proc: Proc = { incarnation: n.incarnations, member, machine, driver, pending: new Map(), paused: false, inbox: [] }
    n.proc = proc
    n.reportedPrimary = undefined
    this.trace(`${n.name} start ${member.incarnation}`)
    if (this.o.outsideDeathFacts) this.at(this.rng.range(20, 200), () => { if (n.proc === proc) n.annotation = member.incarnation })
    this.scheduleTick(n, n.rng.range(0, this.hb / 5))
    this.deliverDiscovery(n, true)
  }

  private scheduleTick (n: SimNode, localDelay: number): void {
    const inc = n.proc?.incarnation ?? -1
    this.q.push({ at: this.t + this.trueDur(n, localDelay), kind: 'tick', node: n.index, inc })
  }

  private deliverDiscovery (n: SimNode, first: boolean): void {
    const inc = n.proc?.incarnation
    const all = this.nodes.map(x => x.address)
    // DNS answers are incomplete at first (pods not yet published), complete later.
    const addrs = first ? all.filter(() => this.rng.chance(0.75)) : all
    this.input(n, inc, { type: 'discovered', addresses: addrs })
    this.at(this.trueDur(n, (first ? 300 : 2000) * this.rng.range(0.8, 1.2)), () => {
      if (n.proc?.incarnation === inc) this.deliverDiscovery(n, false)
    })
  }

  /** Every step of a member's machine: recorded in the run's digest, and its persisted epoch checked. */
  private observe (n: SimNode, p: Proc, input: MembershipInput, now: number, out: MembershipOutput[]): void {
    this.digest.step(n.name, p.member.incarnation, now, input, out)
    for (const o of out) {
      if (o.type === 'persist' && compareEpochs(o.state.highestEpoch, n.highestEpoch) < 0) {
        this.fail(`${n.name} persisted epoch ${JSON.stringify(o.state.highestEpoch)} below ${JSON.stringify(n.highestEpoch)}`)
      }
    }
  }

  /** Feeds an input to a member's current process (queued while paused; dropped if that process is gone). */
  private input (n: SimNode, inc: number | undefined, input: MembershipInput): void {
    const p = n.proc
    if (p === undefined || p.incarnation !== inc) return
    const run = (): void => {
      if (n.proc !== p) return
      p.driver.step(input, this.local(n))
    }
    if (p.paused) p.inbox.push(run)
    else run()
  }

  private onEvent (n: SimNode, e: Extract<MembershipOutput, { type: 'event' }>['event']): void {
    switch (e.type) {
      case 'view:installed': {
        const key = `${e.view.id.coordinator}#${e.view.id.counter}`
        if (e.view.id.counter < n.lastViewCounter || (e.view.id.counter === n.lastViewCounter && key !== n.lastViewKey)) {
          this.fail(`${n.name} applied view ${key} after ${n.lastViewKey}`)
        }
        if (key !== n.lastViewKey) this.views++
        n.lastViewCounter = e.view.id.counter
        n.lastViewKey = key
        n.reportedPrimary = e.primary ? key : undefined
        this.trace(`${n.name} view ${key} [${e.view.members.map(m => m.name).join(',')}] primary=${e.primary}`)
        break
      }
      case 'leader:elected':
        this.trace(`${n.name} LEADER epoch ${e.epoch.number} ${JSON.stringify(n.proc?.machine.debugState(this.local(n)))}`)
        if (this.o.quorum === 'majority') {
          const k = `${e.epoch.number}/${e.epoch.leader}`
          if (this.electedEpochs.has(k)) this.fail(`${n.name} elected with epoch ${k} already used`)
          this.electedEpochs.add(k)
          // Epochs rise: above the epoch of every earlier leader that is still running. (When every process that
          // knew an epoch died for good, its number can come again with another leader: see the protocol notes.)
          for (const [other, ep] of this.leaderEpochs) {
            const o = this.nodes.find(x => x.name === other)
            if (o?.proc !== undefined && o.proc.incarnation === ep.inc && compareEpochs(e.epoch, ep.epoch) <= 0) {
              this.fail(`${n.name} elected with epoch ${JSON.stringify(e.epoch)} not above ${other}'s ${JSON.stringify(ep.epoch)} (still running)`)
            }
          }
          this.leaderEpochs.set(n.name, { epoch: e.epoch, inc: n.proc!.incarnation })
        }
        this.lastLeaderEpoch = e.epoch
        this.leaderChanges++
        this.elections.push({ at: this.t, name: n.name, epoch: e.epoch.number })
        break
      case 'leader:demoted': this.trace(`${n.name} demoted ${e.reason}`); break
      case 'member:suspected': this.trace(`${n.name} suspects ${e.member.name}/${e.member.incarnation} (${e.reason})`); break
      case 'member:left': break
      case 'self:left':
        this.trace(`${n.name} left gracefully`)
        this.crash(n, 'left')
        // A leave that completes after the faults ended (it was queued in a paused member) is a rolling restart.
        if (this.t >= this.o.faultMs) this.at(500, () => { if (n.proc === undefined) this.start(n) })
        break
      case 'handover:completed': {
        // Reported only once the successor leads: it was elected under the epoch its claim carried.
        this.trace(`${n.name} handed over to ${e.to.name} (epoch ${e.epoch.number})`)
        if (this.o.quorum === 'majority' && !this.electedEpochs.has(`${e.epoch.number}/${e.epoch.leader}`)) {
          this.fail(`${n.name} reports its hand-over to ${e.to.name} done at epoch ${e.epoch.number}, for which nobody was elected`)
        }
        break
      }
      case 'handover:failed':
        this.trace(`${n.name} hand-over to ${e.to?.name ?? '-'} failed: ${e.reason}`)
        break
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Network

  private link (a: number, b: number): LinkState { return this.links.get(`${a}>${b}`) ?? 'ok' }

  private delay (): number {
    return this.rng.chance(this.slowProb) ? this.rng.range(20, this.slowMaxMs) : this.rng.range(0.2, 3)
  }

  private nodeAt (address: string): SimNode | undefined { return this.nodes.find(x => x.address === address) }

  private send (n: SimNode, p: Proc, id: number, to: string, msg: ClusterRequest, timeoutMs: number): void {
    const entry = { done: false }
    p.pending.set(id, entry)
    const result = (input: MembershipInput): void => {
      if (entry.done) return
      entry.done = true
      p.pending.delete(id)
      if (this.o.traceMessages === true && msg.type !== 'heartbeat') this.trace(`${n.name} <- ${to} ${msg.type} ${input.type === 'send-result' && input.ok ? `ok=${String(input.reply.ok)} ${input.reply.reason ?? ''} view=${input.reply.summary.view?.id.coordinator ?? '-'}` : (input as { error?: string }).error ?? ''}`)
      this.input(n, p.incarnation, { ...input, id } as MembershipInput)
    }
    this.at(this.trueDur(n, timeoutMs), () => { result({ type: 'send-result', id, ok: false, error: 'timeout' }) })
    if (this.o.traceMessages === true && msg.type !== 'heartbeat') this.trace(`${n.name} -> ${to} ${msg.type}${msg.type === 'install' && (msg as { propose?: boolean }).propose === true ? ' (propose)' : ''}`)
    const target = this.nodeAt(to)
    if (target === undefined) { this.at(1, () => { result({ type: 'send-result', id, ok: false, error: 'refused' }) }); return }
    const fwd = this.link(n.index, target.index)
    const back = this.link(target.index, n.index)
    if (fwd === 'reset' || back === 'reset') {
      this.at(this.rng.range(0.2, 2), () => { result({ type: 'send-result', id, ok: false, error: this.rng.chance(0.5) ? 'refused' : 'closed' }) })
      return
    }
    if (target.proc === undefined) { this.at(this.rng.range(0.2, 2), () => { result({ type: 'send-result', id, ok: false, error: 'refused' }) }); return }
    if (fwd === 'drop' || this.rng.chance(this.lossProb)) return // lost: the requester times out
    const copies = this.rng.chance(this.dupProb) ? 2 : 1
    const payload = JSON.parse(JSON.stringify(msg)) as ClusterRequest
    for (let c = 0; c < copies; c++) {
      this.at(this.delay(), () => { this.deliverRequest(n, p, target, payload, result) })
    }
  }

  private deliverRequest (from: SimNode, fromProc: Proc, target: SimNode, msg: ClusterRequest, result: (i: MembershipInput) => void): void {
    const tp = target.proc
    if (tp === undefined) { result({ type: 'send-result', id: -1, ok: false, error: 'closed' }); return }
    const run = (): void => {
      if (target.proc !== tp) return
      const reply = tp.driver.step({ type: 'message', msg }, this.local(target))
      if (reply === undefined) this.fail(`${target.name} produced no reply to ${msg.type}`)
      const back = this.link(target.index, from.index)
      if (back === 'reset') { this.at(this.rng.range(0.2, 2), () => { result({ type: 'send-result', id: -1, ok: false, error: 'closed' }) }); return }
      if (back === 'drop' || this.rng.chance(this.lossProb)) return
      const copy = JSON.parse(JSON.stringify(reply)) as ReplyMessage
      this.at(this.delay(), () => {
        if (from.proc !== fromProc) return
        result({ type: 'send-result', id: -1, ok: true, reply: copy })
      })
    }
    if (tp.paused) tp.inbox.push(run)
    else run()
  }

  // ---------------------------------------------------------------------------------------------------------
  // Faults

  private crash (n: SimNode, why: string, notify = true): void {
    const p = n.proc
    if (p === undefined) return
    n.proc = undefined
    this.trace(`${n.name} ${why} (${p.member.incarnation})`)
    // The kernel closes its sockets: peers with a connection see it close (unless a partition drops everything).
    for (const o of this.nodes) {
      if (o === n || o.proc === undefined) continue
      if (this.link(n.index, o.index) === 'drop' && this.link(o.index, n.index) === 'drop') continue
      const inc = o.proc.incarnation
      this.at(this.rng.range(0.5, 5), () => { this.input(o, inc, { type: 'disconnected', peerId: n.peerId }) })
    }
    if (notify && this.o.outsideDeathFacts) {
      // The pod watch reports a pod by name ("container restarted", "pod deleted"), not an incarnation; 100–800 ms
      // after the crash, or, after a gap in its watch, only at the next re-list, seconds later: by then the restarted
      // process may be back in the view, and the report must not be taken as its death.
      this.reportPodDown(n, this.rng.chance(0.25) ? this.rng.range(2000, 8000) : this.rng.range(100, 800))
    }
  }

  /**
   * In `ms`, every running member's pod watch reports `n`'s pod down, with the incarnation its annotation names now
   * (an earlier, also dead, one if the process died before writing it; by name only if none ever did).
   */
  private reportPodDown (n: SimNode, ms: number): void {
    const incarnation = n.annotation
    this.at(ms, () => {
      const fact: MembershipInput = { type: 'verified-dead', name: n.name, ...(incarnation !== undefined ? { incarnation } : {}) }
      for (const o of this.nodes) if (o.proc !== undefined) this.input(o, o.proc.incarnation, fact)
    })
  }

  private pause (n: SimNode, ms: number): void {
    const p = n.proc
    if (p === undefined || p.paused) return
    p.paused = true
    this.trace(`${n.name} paused for ${ms.toFixed(0)} ms`)
    this.at(ms, () => { this.resume(n, p) })
  }

  private resume (n: SimNode, p: Proc): void {
    if (n.proc !== p || !p.paused) return
    p.paused = false
    this.trace(`${n.name} resumed (${p.inbox.length} queued)`)
    // Pending I/O runs before overdue timers after SIGCONT.
    const inbox = p.inbox.splice(0)
    for (const f of inbox) f()
  }

  private partition (groupA: number[], kind: 'drop' | 'reset' | 'one-way', ms: number): void {
    const a = new Set(groupA)
    const pairs: Array<[number, number]> = []
    for (const x of this.nodes) {
      for (const y of this.nodes) {
        if (a.has(x.index) && !a.has(y.index)) {
          pairs.push([x.index, y.index])
          if (kind !== 'one-way') pairs.push([y.index, x.index])
        }
      }
    }
    const state: LinkState = kind === 'reset' ? 'reset' : 'drop'
    for (const [x, y] of pairs) this.links.set(`${x}>${y}`, state)
    if (kind === 'reset') {
      for (const [x, y] of pairs) {
        const o = this.nodes[x]!
        const peer = this.nodes[y]!
        if (o.proc !== undefined) {
          const inc = o.proc.incarnation
          this.at(this.rng.range(0.5, 5), () => { this.input(o, inc, { type: 'disconnected', peerId: peer.peerId }) })
        }
      }
    }
    this.at(ms, () => { for (const [x, y] of pairs) this.links.delete(`${x}>${y}`) })
  }

  private randomFault (): void {
    const live = this.nodes.filter(n => n.proc !== undefined)
    const r = this.rng.next()
    const leader = this.nodes.find(n => n.proc !== undefined && n.proc.machine.isLeader(this.local(n)))
    // Faults aim at the leader half of the time: that is where the safety argument is tested.
    const victim = (): SimNode | undefined => (leader !== undefined && this.rng.chance(0.5)) ? leader : (live.length > 0 ? this.rng.pick(live) : undefined)
    let what = ''
    if (r < 0.2) {
      const v = victim()
      const dead = this.nodes.filter(n => n.proc === undefined && n.incarnations > 0).length
      if (v !== undefined && dead + 1 < this.nodes.length) {
        this.crash(v, 'crash')
        const back = this.rng.range(200, 6000)
        this.at(back, () => { if (v.proc === undefined && this.t < this.o.faultMs) this.start(v) })
        what = `crash ${v.name} for ${back.toFixed(0)}`
      }
    } else if (r < 0.38) {
      const v = victim()
      if (v !== undefined) {
        const ms = this.rng.chance(0.5) ? this.rng.range(300, 2500) : this.rng.range(2500, 9000)
        this.pause(v, ms)
        what = `pause ${v.name} ${ms.toFixed(0)}`
      }
    } else if (r < 0.7) {
      const kinds = ['drop', 'reset', 'one-way'] as const
      const kind = this.rng.pick(kinds)
      const size = this.rng.int(1, Math.max(1, Math.floor(this.nodes.length / 2)))
      const group: number[] = []
      const pool = this.nodes.map(n => n.index)
      const v = victim()
      if (v !== undefined && this.rng.chance(0.6)) { group.push(v.index); pool.splice(pool.indexOf(v.index), 1) }
      while (group.length < size && pool.length > 0) group.push(pool.splice(this.rng.int(0, pool.length - 1), 1)[0]!)
      const ms = this.rng.range(500, 8000)
      this.partition(this.rng.chance(0.5) ? group : this.nodes.map(n => n.index).filter(i => !group.includes(i)), kind, ms)
      what = `${kind} partition {${group.map(i => `m${i}`).join(',')}} ${ms.toFixed(0)}`
    } else if (r < 0.8) {
      this.lossProb = this.rng.chance(0.5) ? this.rng.range(0, 0.2) : 0
      this.dupProb = this.rng.range(0, 0.05)
      this.slowProb = this.rng.range(0, 0.2)
      what = `network loss=${this.lossProb.toFixed(2)} dup=${this.dupProb.toFixed(2)} slow=${this.slowProb.toFixed(2)}`
    } else if (r < 0.9) {
      const v = victim()
      if (v?.proc !== undefined) {
        this.input(v, v.proc.incarnation, { type: 'leave' })
        const back = this.rng.range(500, 5000)
        this.at(back, () => { if (v.proc === undefined && this.t < this.o.faultMs) this.start(v) })
        what = `leave ${v.name}`
      }
    } else {
      if (leader?.proc !== undefined) {
        const to = this.rng.chance(0.5) ? this.rng.pick(this.nodes).name : undefined
        this.input(leader, leader.proc.incarnation, to !== undefined ? { type: 'transfer', to } : { type: 'transfer' })
        what = `transfer from ${leader.name} to ${to ?? 'next'}`
      }
    }
    if (what !== '') {
      this.faults.push(`${this.t.toFixed(0)}:${what}`)
      this.trace(`FAULT ${what}`)
    }
  }

  private scripted (f: ScriptedFault): void {
    const leader = this.nodes.find(n => n.proc !== undefined && n.proc.machine.isLeader(this.local(n)))
    if (leader?.proc === undefined) { this.faults.push(`${this.t.toFixed(0)}:${f.action} (no leader)`); return }
    switch (f.action) {
      case 'pause-leader': this.pause(leader, f.ms ?? 5000); break
      case 'crash-leader': this.crash(leader, 'crash'); break
      case 'leave-leader': this.input(leader, leader.proc.incarnation, { type: 'leave' }); break
      case 'transfer': this.input(leader, leader.proc.incarnation, { type: 'transfer' }); break
      case 'partition-leader': this.partition([leader.index], f.kind ?? 'drop', f.ms ?? 5000); break
      case 'crash-member': {
        const victim = [...this.nodes].reverse().find(n => n.proc !== undefined && n !== leader)
        if (victim !== undefined) this.crash(victim, 'crash')
        this.faults.push(`${this.t.toFixed(0)}:${f.action} ${victim?.name ?? '-'}`)
        return
      }
    }
    this.faults.push(`${this.t.toFixed(0)}:${f.action} ${leader.name}`)
    this.trace(`FAULT ${f.action} ${leader.name}`)
  }

  /** Name of the member holding a lease now, if any. */
  leaderNow (): string | undefined {
    return this.nodes.find(n => n.proc !== undefined && n.proc.machine.isLeader(this.local(n)))?.name
  }

  // ---------------------------------------------------------------------------------------------------------
  // Invariants

  private checkInvariants (): void {
    if (this.o.quorum === 'majority') {
      let leaders = 0
      let names = ''
      for (const n of this.nodes) {
        // A paused member's state is frozen but its clock runs: `isLeader(now)` is what it would answer.
        if (n.proc !== undefined && n.proc.machine.isLeader(this.local(n))) { leaders++; names += ` ${n.name}` }
      }
      if (leaders > 1) this.fail(`two leases at once:${names}`)
    }
    if (this.o.checkNoSplit) {
      const coords = new Set<string>()
      for (const n of this.nodes) {
        const v = n.proc?.machine.currentView()
        if (v !== undefined && v.members.length > 1) coords.add(v.id.coordinator)
      }
      if (coords.size > 1) this.fail(`transient split: multi-member views of ${[...coords].join(', ')}`)
    }
  }

  /** One view holding exactly the live members, and (when a quorum is possible) exactly one leader, its coordinator. */
  converged (): boolean {
    const live = this.nodes.filter(n => n.proc !== undefined)
    if (live.length === 0) return true
    const keys = new Set(live.map(n => memberKey(n.proc!.member)))
    let first: string | undefined
    for (const n of live) {
      const v = n.proc!.machine.currentView()
      if (v === undefined) return false
      const id = `${v.id.coordinator}#${v.id.counter}`
      if (first === undefined) first = id
      if (id !== first) return false
      if (v.members.length !== keys.size || !v.members.every(m => keys.has(memberKey(m)))) return false
    }
    const leaders = live.filter(n => n.proc!.machine.isLeader(this.local(n)))
    const needLeader = this.o.quorum === 'none' || live.length > this.o.nodes / 2
    if (needLeader && leaders.length !== 1) return false
    if (leaders.length === 1) {
      const v = leaders[0]!.proc!.machine.currentView()!
      if (v.members[0]!.name !== leaders[0]!.name) return false
      if (this.o.quorum === 'majority') {
        // Every member in the primary view, and each one has said so (its last view:installed event): a member
        // whose view became primary without the event would show a non-primary view to its operators forever.
        for (const n of live) {
          if (!n.proc!.machine.status(this.local(n)).primary) return false
          if (n.reportedPrimary !== first) return false
        }
      }
    }
    return true
  }

  // ---------------------------------------------------------------------------------------------------------
  // Run

  run (): SimResult {
    const o = this.o
    let lastStart = 0
    for (const n of this.nodes) {
      const at = this.rng.range(0, o.startSpreadMs)
      lastStart = Math.max(lastStart, at)
      this.q.push({ at, kind: 'call', fn: () => { this.start(n) } })
    }
    if (o.faultMs > 0 && o.script === undefined) {
      let t = 2000
      while (t < o.faultMs) {
        this.q.push({ at: t, kind: 'call', fn: () => { this.randomFault() } })
        t += this.rng.range(0.3, 1.7) * o.faultEveryMs
      }
    }
    for (const f of o.script ?? []) this.q.push({ at: f.at, kind: 'call', fn: () => { this.scripted(f) } })
    const faultEnd = o.faultMs
    let convergedSince: number | undefined
    let coldStartMs: number | undefined
    const endAt = faultEnd + o.settleBoundMs
    let healed = false
    const heal = (): void => {
      healed = true
      this.links.clear()
      this.lossProb = 0
      this.dupProb = 0
      this.slowProb = 0
      for (const n of this.nodes) if (n.proc?.paused === true) this.resume(n, n.proc)
      const dead = this.nodes.filter(n => n.proc === undefined && n.incarnations > 0)
      const keepDead = Math.min(o.permanentlyDead, Math.floor((this.nodes.length - 1) / 2))
      // Up to `permanentlyDead` crashed members stay down (their address refuses: they must be verified and dropped).
      dead.slice(keepDead).forEach(n => { this.start(n) })
      // The pods that stay down are deleted (their node is gone): the running members' pod watches see it.
      if (o.outsideDeathFacts) for (const n of dead.slice(0, keepDead)) this.reportPodDown(n, this.rng.range(100, 800))
      this.trace('FAULTS END')
    }
    this.q.push({ at: faultEnd, kind: 'call', fn: heal })
    const cold = o.coldNetwork
    if (cold !== undefined) {
      this.q.push({ at: faultEnd + 0.001, kind: 'call', fn: () => { this.lossProb = cold.lossProb; this.slowProb = cold.slowProb; this.slowMaxMs = 800 } })
      this.q.push({ at: cold.untilMs, kind: 'call', fn: () => { this.lossProb = 0; this.slowProb = 0; this.slowMaxMs = 400 } })
    }
    const MAX_EVENTS = 5_000_000
    while (this.q.size > 0) {
      const e = this.q.pop()!
      if (e.at > endAt) break
      this.t = e.at
      if (++this.events > MAX_EVENTS) this.fail('event budget exhausted (livelock?)')
      if (e.kind === 'tick') {
        const n = this.nodes[e.node]!
        if (n.proc === undefined || n.proc.incarnation !== e.inc) continue
        const p = n.proc
        if (!p.paused) {
          p.driver.step({ type: 'tick' }, this.local(n))
          this.scheduleTick(n, (this.hb / 5) * n.rng.range(0.9, 1.1))
        } else {
          // A paused process's timers fire after it resumes.
          p.inbox.push(() => {
            if (n.proc !== p) return
            p.driver.step({ type: 'tick' }, this.local(n))
            this.scheduleTick(n, (this.hb / 5) * n.rng.range(0.9, 1.1))
          })
        }
      } else {
        e.fn()
      }
      this.checkInvariants()
      if (healed || o.faultMs === 0) {
        if (this.converged()) {
          convergedSince ??= this.t
          if (o.faultMs === 0 && coldStartMs === undefined && this.nodes.every(n => n.proc !== undefined)) coldStartMs = this.t - lastStart
        } else {
          convergedSince = undefined
        }
      }
    }
    this.t = endAt
    if (!this.converged() || convergedSince === undefined) {
      const views = this.nodes.map(n => {
        const v = n.proc?.machine.currentView()
        const s = n.proc?.machine.status(this.local(n))
        return `${n.name}:${n.proc === undefined ? 'down' : v === undefined ? 'no-view' : `${v.id.coordinator}#${v.id.counter}[${v.members.map(m => `${m.name}/${m.incarnation}`).join(',')}]${s?.isLeader === true ? ' LEADER' : ''}${s?.primary === true ? ' P' : ''}`}`
      })
      const states = this.nodes.map(n => n.proc === undefined ? '' : `\n  ${n.name}: ${JSON.stringify(n.proc.machine.debugState(this.local(n)))}`)
      this.fail(`no convergence within ${o.settleBoundMs} ms after the faults: ${views.join(' | ')}${states.join('')}`)
    }
    const res: SimResult = {
      seed: o.seed,
      events: this.events,
      convergeMs: Math.max(0, convergedSince - faultEnd),
      leaderChanges: this.leaderChanges,
      views: this.views,
      faults: this.faults,
      elections: this.elections,
      digest: this.digest.value()
    }
    if (coldStartMs !== undefined) res.coldStartMs = coldStartMs
    return res
  }
}

/** Named option sets, so a replay command is short. */
export function profileOptions (profile: string, seed: number, nodes: number, quorum: 'majority' | 'none'): SimOptions {
  const base: SimOptions = { seed, nodes, quorum }
  switch (profile) {
    case 'cold-start': return { ...base, faultMs: 0, settleBoundMs: 10_000, checkNoSplit: true, startSpreadMs: 200 }
    // Members starting up to 1.5 s apart (a loaded machine, a slow image pull): founders act on older answers.
    case 'cold-start-spread': return { ...base, faultMs: 0, settleBoundMs: 10_000, checkNoSplit: true, startSpreadMs: 1500, coldNetwork: { untilMs: 3000, lossProb: 0.05, slowProb: 0.3 } }
    case 'mixed': return { ...base, faultMs: 20_000, faultEveryMs: 1500, settleBoundMs: 12_000 }
    case 'crash-k8s': return { ...base, faultMs: 20_000, faultEveryMs: 1500, settleBoundMs: 12_000, outsideDeathFacts: true, permanentlyDead: 1 }
    case 'storm': return { ...base, faultMs: 30_000, faultEveryMs: 600, settleBoundMs: 15_000 }
    case 'drift-edge': return { ...base, faultMs: 20_000, faultEveryMs: 900, settleBoundMs: 12_000, driftAtBound: true }
    default: throw new RangeError(`unknown simulation profile ${profile} (${PROFILES.join(' | ')})`)
  }
}

export const PROFILES = ['cold-start', 'cold-start-spread', 'mixed', 'crash-k8s', 'storm', 'drift-edge'] as const
