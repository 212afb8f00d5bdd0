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
    const b = new PesitLeaderBinding({ logger: silentLogger(), leadership: { events, isLeader: () => leader }, servers }, {
      beforeStart: async () => { order.push('label') }
    })
    await b.start()
    leader = true
    let ac = new AbortController()
    events.emit('leader:elected', { epoch: { number: 1, leader: 'a' }, signal: ac.signal })
    await b.settled()
    assert.deepEqual(servers.log, ['start'])
    assert.deepEqual(order, ['label'])
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
