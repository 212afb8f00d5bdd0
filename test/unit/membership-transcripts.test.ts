/**
 * Transcript tests of the membership machine, in the style of etcd-io/raft's datadriven tests: each file under
 * test/fixtures/transcripts/ is a readable script of commands, each followed by `----` and the output it must
 * produce (the events the members emitted, with the time, or the state asked for), then a blank line. A change of
 * behaviour shows as a diff of a story a reader can follow. `VECTIS_REWRITE_TRANSCRIPTS=1` writes the outputs the
 * code produces now into the files, to be read and committed with the change that explains them.
 *
 * Commands (members are n0, n1, …; time moves only with `advance`, on an instant network):
 *   members n0 n1 n2      add members (the first is the oldest once they found each other)
 *   discover              every member learns every address (DNS)
 *   advance MS            tick every live member every 100 ms for MS
 *   crash NAME            the process is gone: its connections close, its address refuses connections
 *   restart NAME          a new process of NAME (a new incarnation, on the persisted state) starts and discovers
 *   report-dead NAME      the Kubernetes pod watch reports NAME's process (with its incarnation) to every live member
 *   transfer NAME [TO]    NAME is asked to hand its leadership over (to TO, or the oldest member not suspected)
 *   leave NAME            NAME leaves gracefully (SIGTERM), and its process exits once it has left
 *   state                 each live member's view, leadership and epoch
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { MembershipMachine } from '../../cluster/membership/machine.js'
import type { MembershipEvent } from '../../cluster/membership/types.js'
import type { MemberInfo, ViewData } from '../../cluster/messages.js'
import { Net } from '../helpers/membership-net.js'

const DIR = fileURLToPath(new URL('../fixtures/transcripts/', import.meta.url))
const REWRITE = process.env.VECTIS_REWRITE_TRANSCRIPTS === '1'

interface Case { command: string, expected: string, line: number }

/** Splits a transcript into its cases; comments (`#`) and blank lines between cases are kept for a rewrite. */
function parse (text: string): Array<Case | string> {
  const out: Array<Case | string> = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!
    if (l.trim() === '' || l.startsWith('#')) { out.push(l); continue }
    if (lines[i + 1] !== '----') throw new Error(`line ${i + 2}: expected ---- after the command "${l}"`)
    const expected: string[] = []
    let j = i + 2
    for (; j < lines.length && lines[j] !== ''; j++) expected.push(lines[j]!)
    out.push({ command: l, expected: expected.join('\n'), line: i + 1 })
    i = j - 1
  }
  return out
}

const names = (v: ViewData): string => `${v.id.coordinator}#${v.id.counter} [${v.members.map(m => m.name).join(' ')}]`

function describeEvent (e: MembershipEvent): string {
  switch (e.type) {
    case 'view:installed': return `view ${names(e.view)}${e.primary ? ' primary' : ''}`
    case 'member:suspected': return `suspects ${e.member.name} (${e.reason})`
    case 'member:left': return `sees ${e.member.name} go (${e.reason})`
    case 'leader:elected': return `leads, epoch ${e.epoch.number}`
    case 'leader:demoted': return `no longer leads, epoch ${e.epoch.number} (${e.reason})`
    case 'self:left': return 'has left'
    case 'handover:completed': return `handed over to ${e.to.name}, epoch ${e.epoch.number}`
    case 'handover:failed': return `hand-over failed: ${e.reason}`
  }
}

class Transcript {
  readonly net = new Net({ clusterName: 'unit', clusterSize: 3 })
  private readonly byName = new Map<string, MembershipMachine>()

  run (command: string): string {
    const [verb, ...args] = command.split(/\s+/)
    const seen = this.net.events.length
    switch (verb) {
      case 'members':
        for (const name of args) {
          const i = Number(name.slice(1))
          this.byName.set(name, this.net.add({ name, peerId: `p${i}`, incarnation: 'a', address: `10.1.0.${i}:7800` }))
        }
        break
      case 'discover': this.net.discoverAll(); break
      case 'advance': this.net.advance(Number(args[0])); break
      case 'crash': {
        const dead = this.member(args[0]).me
        this.net.down.add(dead.address)
        // The kernel closes its connections: the others see them close.
        for (const m of this.live()) this.net.feed(m, { type: 'disconnected', peerId: dead.peerId })
        this.net.run()
        break
      }
      case 'restart': {
        // A new process at the same address, on the state its predecessor persisted (a new incarnation).
        const old = this.member(args[0]).me
        const m = this.net.add({ name: old.name, peerId: old.peerId, incarnation: 'a', address: old.address })
        this.byName.set(old.name, m)
        this.net.feed(m, { type: 'discovered', addresses: [...this.byName.values()].map(x => x.me.address) })
        this.net.run()
        break
      }
      case 'report-dead': {
        const dead: MemberInfo = this.member(args[0]).me
        for (const m of this.live()) this.net.feed(m, { type: 'verified-dead', name: dead.name, incarnation: dead.incarnation })
        this.net.run()
        break
      }
      case 'transfer':
        this.net.feed(this.member(args[0]), { type: 'transfer', ...(args[1] !== undefined ? { to: args[1] } : {}) })
        this.net.run()
        break
      case 'leave': {
        const m = this.member(args[0])
        this.net.feed(m, { type: 'leave' })
        this.net.run()
        // Once it has left, the process exits.
        if (this.net.events.slice(seen).some(e => e.who === m.me.name && e.type === 'self:left')) this.net.down.add(m.me.address)
        break
      }
      case 'state': return this.state()
      default: throw new Error(`unknown command ${String(verb)}`)
    }
    const lines = this.net.events.slice(seen).map(e => `t=${e.at} ${e.who} ${describeEvent(e.payload as MembershipEvent)}`)
    return lines.length === 0 ? 'ok' : lines.join('\n')
  }

  private member (name: string | undefined): MembershipMachine {
    const m = name === undefined ? undefined : this.byName.get(name)
    if (m === undefined) throw new Error(`no member ${String(name)}`)
    return m
  }

  private live (): MembershipMachine[] { return [...this.byName.values()].filter(m => !this.net.down.has(m.me.address)) }

  private state (): string {
    return this.live().map((m) => {
      const s = m.status(this.net.now)
      const view = s.view === undefined ? 'no view' : `view ${names(s.view)}${s.primary ? ' primary' : ''}`
      return `${m.me.name}: ${view}; leader ${s.leader ?? 'none'}${s.isLeader ? ' (me)' : ''}; epoch ${s.epoch?.number ?? 0}`
    }).join('\n')
  }
}

for (const file of readdirSync(DIR).filter(f => f.endsWith('.txt')).sort()) {
  void test(`transcript ${file}`, () => {
    const path = join(DIR, file)
    const parts = parse(readFileSync(path, 'utf8'))
    const t = new Transcript()
    const rewritten: string[] = []
    for (const p of parts) {
      if (typeof p === 'string') { rewritten.push(p); continue }
      const got = t.run(p.command)
      rewritten.push(p.command, '----', got)
      if (!REWRITE) assert.equal(got, p.expected, `${file}:${p.line}: ${p.command}`)
    }
    if (REWRITE) writeFileSync(path, rewritten.join('\n'))
  })
}
