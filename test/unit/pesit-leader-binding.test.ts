import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { TypedEmitter } from '../../common/typed-events.js'
import { silentLogger } from '../../common/logger.js'
import type { LeadershipEvents } from '../../cluster/leadership-api.js'
import { PesitLeaderBinding, type LeaderRunnable } from '../../transfer/pesit-leader-binding.js'
import type { StopOptions } from '../../transfer/pesit-server.js'

class FakeServers implements LeaderRunnable {
  log: string[] = []
  async start (): Promise<void> { this.log.push('start') }
  async stop (opts: StopOptions = {}): Promise<void> { this.log.push(opts.handover === true ? 'stop:handover' : 'stop') }
}

describe('PeSIT servers follow leadership', () => {
  it('start on election (after beforeStart), stop on demotion, IDT mode on a hand-over', async () => {
    const events = new TypedEmitter<LeadershipEvents>()
    let leader = false
    const servers = new FakeServers()
    const order: string[] = []
    const serving: Array<{ epoch: number, silent: number | undefined, since: number }> = []
    const b = new PesitLeaderBinding({ logger: silentLogger(), leadership: { events, isLeader: () => leader }, servers }, {
      beforeStart: async () => { order.push('label') },
      onServing: (e, since) => { serving.push({ epoch: e.epoch.number, silent: e.previousLeaderSilentMs, since }) }
    })
    await b.start()
    leader = true
    let ac = new AbortController()
    events.emit('leader:elected', { epoch: { number: 1, leader: 'a' }, signal: ac.signal, previousLeaderSilentMs: 1200 })
    await b.settled()
    assert.deepEqual(servers.log, ['start'])
    assert.deepEqual(order, ['label'])
    // Reported once serving, with the takeover's start carried by the election.
    assert.equal(serving.length, 1)
    assert.equal(serving[0]!.silent, 1200)
    assert.ok(serving[0]!.since >= 0 && serving[0]!.since < 5000)
    leader = false
    events.emit('leader:demoted', { epoch: { number: 1, leader: 'a' }, reason: 'handover' })
    ac.abort()
    await b.settled()
    assert.deepEqual(servers.log, ['start', 'stop:handover'])
    // elected again, then the lease expires: plain stop
    leader = true
    ac = new AbortController()
    events.emit('leader:elected', { epoch: { number: 3, leader: 'a' }, signal: ac.signal })
    await b.settled()
    leader = false
    ac.abort()
    await b.settled()
    assert.deepEqual(servers.log, ['start', 'stop:handover', 'start', 'stop'])
    await b.stop()
  })

  it('a leadership told to stand down (its pod fenced) stops its servers; a stand-down of another epoch does nothing', async () => {
    const events = new TypedEmitter<LeadershipEvents>()
    const servers = new FakeServers()
    const b = new PesitLeaderBinding({ logger: silentLogger(), leadership: { events, isLeader: () => true }, servers })
    await b.start()
    const ac = new AbortController()
    events.emit('leader:elected', { epoch: { number: 4, leader: 'a' }, signal: ac.signal })
    await b.settled()
    b.standDown({ number: 3, leader: 'a' }, 'a stale report')
    await b.settled()
    assert.deepEqual(servers.log, ['start'])
    b.standDown({ number: 4, leader: 'a' }, 'pod fenced by epoch 5')
    await b.settled()
    assert.deepEqual(servers.log, ['start', 'stop'])
    // The lease still runs: nothing restarts them for this leadership; its end stops nothing more.
    ac.abort()
    await b.settled()
    await b.stop()
    assert.deepEqual(servers.log, ['start', 'stop'])
  })

  it('never starts when leadership ended before the start completed', async () => {
    const events = new TypedEmitter<LeadershipEvents>()
    const servers = new FakeServers()
    const ac = new AbortController()
    const b = new PesitLeaderBinding({ logger: silentLogger(), leadership: { events, isLeader: () => false }, servers }, {
      beforeStart: async () => { ac.abort() }
    })
    await b.start()
    events.emit('leader:elected', { epoch: { number: 2, leader: 'a' }, signal: ac.signal })
    await b.settled()
    assert.deepEqual(servers.log, [])
    await b.stop()
    assert.deepEqual(servers.log, [])
  })
})
