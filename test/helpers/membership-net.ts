/**
 * Members of the membership machine on an instant in-memory network, through the one driver the daemon uses: sends
 * are delivered in FIFO order as soon as `run()` is called, time moves only with `advance()`. For the unit tests and
 * the transcript tests of the machine.
 */
import assert from 'node:assert/strict'
import { MembershipMachine } from '../../cluster/membership/machine.js'
import { MembershipDriver } from '../../cluster/membership/driver.js'
import type { MembershipInput, PersistedClusterState } from '../../cluster/membership/types.js'
import type { MembershipInit } from '../../cluster/membership/config.js'
import type { ClusterRequest, MemberInfo, ReplyMessage } from '../../cluster/messages.js'
import { Prng } from './sim/prng.js'

export class Net {
  now = 0
  readonly machines = new Map<string, MembershipMachine>()
  readonly persisted = new Map<string, PersistedClusterState>()
  readonly events: Array<{ who: string, type: string, payload: unknown, at: number }> = []
  private readonly drivers = new Map<MembershipMachine, MembershipDriver>()
  private queue: Array<() => void> = []
  readonly down = new Set<string>()
  /** Addresses that never answer (requests to them time out). */
  readonly silent = new Set<string>()

  constructor (readonly init: MembershipInit = { clusterName: 'unit', clusterSize: 3 }) {}

  add (m: MemberInfo, overrides: MembershipInit = {}): MembershipMachine {
    const persisted = this.persisted.get(m.name)
    const machine = new MembershipMachine({ me: m, ...(persisted !== undefined ? { persisted } : {}), random: new Prng(m.name.length + m.incarnation.length).fn() },
      { ...this.init, ...overrides }, this.now)
    this.drivers.set(machine, new MembershipDriver(machine, {
      persist: (state) => { this.persisted.set(m.name, state) },
      event: (e) => { this.events.push({ who: m.name, type: e.type, payload: e, at: this.now }) },
      log: () => {},
      send: (o) => {
        this.queue.push(() => {
          const target = this.machines.get(o.to)
          if (this.silent.has(o.to)) {
            this.feed(machine, { type: 'send-result', id: o.id, ok: false, error: 'timeout' })
            return
          }
          if (target === undefined || this.down.has(o.to)) {
            this.feed(machine, { type: 'send-result', id: o.id, ok: false, error: 'refused' })
            return
          }
          const reply = this.feed(target, { type: 'message', msg: JSON.parse(JSON.stringify(o.msg)) as ClusterRequest })
          assert.ok(reply !== undefined, `a ${o.msg.type} got a reply`)
          this.queue.push(() => { this.feed(machine, { type: 'send-result', id: o.id, ok: true, reply }) })
        })
      },
      failed: (err) => { throw err }
    }))
    this.machines.set(m.address, machine)
    this.down.delete(m.address)
    return machine
  }

  /** Feeds one input to a member through its driver; the reply when the input was a request. */
  feed (m: MembershipMachine, input: MembershipInput): ReplyMessage | undefined {
    return this.drivers.get(m)!.step(input, this.now)
  }

  run (): void {
    for (let i = 0; i < 100_000 && this.queue.length > 0; i++) this.queue.shift()!()
  }

  /** Advances time in steps of `step` ms, ticking every live member and delivering. */
  advance (ms: number, step = 100): void {
    const end = this.now + ms
    while (this.now < end) {
      this.now = Math.min(end, this.now + step)
      for (const [addr, m] of this.machines) {
        if (!this.down.has(addr)) this.feed(m, { type: 'tick' })
      }
      this.run()
    }
  }

  discoverAll (): void {
    const all = [...this.machines.keys()]
    for (const m of this.machines.values()) this.feed(m, { type: 'discovered', addresses: all })
    this.run()
  }

  leaders (): string[] {
    return [...this.machines.entries()].filter(([a, m]) => !this.down.has(a) && m.isLeader(this.now)).map(([, m]) => m.me.name)
  }
}

