import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { SrvRecord } from 'node:dns'
import { Discovery, type DiscoveryInit, type DnsLookup } from '../../cluster/discovery.js'
import { ClusterConfigError } from '../../cluster/errors.js'
import { LogSink } from '../helpers/log-sink.js'

/** Timers driven by hand: each `fire()` runs the one pending timer and waits for the round it started. */
class FakeTimers {
  pending: Array<{ id: number, fn: () => void, ms: number }> = []
  delays: number[] = []
  private next = 1
  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = this.next++
    this.pending.push({ id, fn, ms })
    this.delays.push(ms)
    return id
  }

  clearTimeout = (h: unknown): void => { this.pending = this.pending.filter((p) => p.id !== h) }

  async fire (d: Discovery): Promise<void> {
    assert.equal(this.pending.length, 1, 'exactly one timer pending')
    const t = this.pending.shift()!
    t.fn()
    await d.refresh()
  }
}

class FakeDns implements DnsLookup {
  a = new Map<string, string[] | Error>()
  srv = new Map<string, SrvRecord[] | Error>()
  calls = 0
  async resolve4 (name: string): Promise<string[]> {
    this.calls++
    const v = this.a.get(name)
    if (v === undefined) throw Object.assign(new Error(`queryA ENOTFOUND ${name}`), { code: 'ENOTFOUND' })
    if (v instanceof Error) throw v
    return v
  }

  async resolveSrv (name: string): Promise<SrvRecord[]> {
    this.calls++
    const v = this.srv.get(name)
    if (v === undefined) throw Object.assign(new Error(`querySrv ENOTFOUND ${name}`), { code: 'ENOTFOUND' })
    if (v instanceof Error) throw v
    return v
  }
}

function make (init: Partial<DiscoveryInit>, dns = new FakeDns(), sink = new LogSink('debug')): { d: Discovery, timers: FakeTimers, dns: FakeDns, changes: string[][], sink: LogSink } {
  const timers = new FakeTimers()
  const d = new Discovery({ logger: sink.logger, dns, timers, random: () => 0.5 }, {
    port: 7800, selfAddresses: ['10.0.0.1:7800'], fastIntervalMs: 300, slowIntervalMs: 5000, maxBackoffMs: 4000, ...init
  })
  const changes: string[][] = []
  d.events.on('peers:changed', (e) => changes.push(e.peers))
  return { d, timers, dns, changes, sink }
}

const servfail = (): Error => Object.assign(new Error('queryA ESERVFAIL'), { code: 'ESERVFAIL' })

void test('A records and seeds, own address left out, sorted, emitted only on change', async () => {
  const { d, timers, dns, changes } = make({ dnsName: 'vectis-headless', seeds: ['10.0.0.9:7801', 'seed.example:7802'] })
  dns.a.set('vectis-headless', ['10.0.0.3', '10.0.0.1', '10.0.0.2'])
  dns.a.set('seed.example', ['10.0.0.7'])
  await d.start()
  assert.deepEqual(timers.delays, [0], 'the first round runs at once')
  await timers.fire(d)
  assert.deepEqual(d.peers, ['10.0.0.2:7800', '10.0.0.3:7800', '10.0.0.7:7802', '10.0.0.9:7801'])
  await timers.fire(d)
  assert.equal(changes.length, 1, 'same answer, no event')
  dns.a.set('vectis-headless', ['10.0.0.1', '10.0.0.4'])
  await timers.fire(d)
  assert.deepEqual(changes.at(-1), ['10.0.0.4:7800', '10.0.0.7:7802', '10.0.0.9:7801'])
  await d.stop()
  assert.equal(timers.pending.length, 0, 'stop() clears its timer')
})

void test('fast until joined, slow after, fast again (at once) when it leaves', async () => {
  const { d, timers, dns } = make({ dnsName: 'svc' })
  dns.a.set('svc', ['10.0.0.2'])
  await d.start()
  await timers.fire(d)
  await timers.fire(d)
  assert.deepEqual(timers.delays, [0, 300, 300])
  d.setJoined(true)
  await timers.fire(d)
  assert.equal(timers.delays.at(-1), 5000)
  d.setJoined(false)
  assert.equal(timers.delays.at(-1), 0, 'left the view: resolve now')
  await timers.fire(d)
  assert.equal(timers.delays.at(-1), 300)
  await d.stop()
})

void test('jitter spreads the delays within ±jitter', async () => {
  const values = [0, 1, 0.25]
  for (const r of values) {
    const timers = new FakeTimers()
    const d = new Discovery({ logger: new LogSink().logger, dns: new FakeDns(), timers, random: () => r }, { port: 7800, selfAddresses: [], fastIntervalMs: 1000, slowIntervalMs: 5000, jitter: 0.3 })
    assert.equal(Math.round(d.nextDelay()), Math.round(1000 * (1 + 0.3 * (2 * r - 1))))
  }
})

void test('DNS errors keep the last answer, back off exponentially up to the cap, never throw, and log at debug', async () => {
  const { d, timers, dns, changes, sink } = make({ dnsName: 'svc' })
  dns.a.set('svc', ['10.0.0.2', '10.0.0.3'])
  await d.start()
  await timers.fire(d)
  dns.a.set('svc', servfail())
  for (let i = 0; i < 6; i++) await timers.fire(d)
  assert.deepEqual(d.peers, ['10.0.0.2:7800', '10.0.0.3:7800'], 'kept through failures')
  assert.equal(changes.length, 1)
  assert.deepEqual(timers.delays, [0, 300, 600, 1200, 2400, 4000, 4000, 4000])
  const errLine = sink.find((l) => /DNS discovery failed/.test(l.msg ?? ''))
  assert.equal(errLine?.level, 'debug')
  dns.a.set('svc', ['10.0.0.3'])
  await timers.fire(d)
  assert.equal(timers.delays.at(-1), 300, 'back to the normal interval after a success')
  assert.deepEqual(d.peers, ['10.0.0.3:7800'])
  await d.stop()
})

void test('a name that does not exist (or has no records) is an empty answer, not an error', async () => {
  const { d, timers, dns } = make({ dnsName: 'svc' })
  dns.a.set('svc', ['10.0.0.2'])
  await d.start()
  await timers.fire(d)
  dns.a.delete('svc')
  await timers.fire(d)
  assert.deepEqual(d.peers, [])
  assert.equal(timers.delays.at(-1), 300, 'no backoff')
  await d.stop()
})

void test('SRV: ports from the records, targets resolved, IPv6 bracketed', async () => {
  const { d, timers, dns } = make({ dnsName: 'svc.ns.svc.cluster.local', srv: true, selfAddresses: ['10.0.0.1:9000'] })
  dns.srv.set('svc.ns.svc.cluster.local', [
    { name: 'a.svc.ns.svc.cluster.local', port: 9000, priority: 0, weight: 1 },
    { name: 'b.svc.ns.svc.cluster.local', port: 9001, priority: 0, weight: 1 },
    { name: 'fd00::5', port: 9002, priority: 0, weight: 1 }
  ])
  dns.a.set('a.svc.ns.svc.cluster.local', ['10.0.0.1'])
  dns.a.set('b.svc.ns.svc.cluster.local', ['10.0.0.2'])
  await d.start()
  await timers.fire(d)
  assert.deepEqual(d.peers, ['10.0.0.2:9001', '[fd00::5]:9002'])
  await d.stop()
})

void test('bad configuration is refused with the variable named', () => {
  const mk = (init: Partial<DiscoveryInit>): Discovery => new Discovery({ logger: new LogSink().logger, dns: new FakeDns() }, { port: 7800, selfAddresses: [], ...init })
  assert.throws(() => mk({ port: 0 }), ClusterConfigError)
  assert.throws(() => mk({ dnsName: 'bad name!' }), /VECTIS_DISCOVERY_DNS/)
  assert.throws(() => mk({ seeds: ['nohost'] }), /VECTIS_SEEDS/)
  assert.throws(() => mk({ seeds: ['h:99999'] }), /VECTIS_SEEDS/)
  assert.throws(() => new Discovery({ logger: new LogSink().logger }, { port: 7800, selfAddresses: [], dnsServers: ['dns.example:53'] }), /VECTIS_DNS_SERVERS/)
  assert.throws(() => mk({ fastIntervalMs: 500, slowIntervalMs: 100 }), ClusterConfigError)
})
