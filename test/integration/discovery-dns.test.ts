// Discovery through node:dns against the in-process DNS server (UDP on 127.0.0.1, random port).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { once } from 'node:events'
import dnsPacket from 'dns-packet'
import { Discovery } from '../../cluster/discovery.js'
import { silentLogger } from '../../common/logger.js'
import { TestDnsServer } from '../helpers/dns-server.js'
import { waitFor } from '../helpers/wait-for.js'

void test('A records through VECTIS_DNS_SERVERS, followed as they change; SERVFAIL keeps the last answer', async (t) => {
  const dns = new TestDnsServer()
  await dns.start()
  t.after(() => dns.stop())
  dns.setRecords('vectis-headless.default.svc', [{ ip: '127.0.4.10' }, { ip: '127.0.4.11' }, { ip: '127.0.4.12' }])
  const d = new Discovery({ logger: silentLogger() }, {
    dnsName: 'vectis-headless.default.svc', port: 7800, dnsServers: [dns.address], selfAddresses: ['127.0.4.10:7800'], fastIntervalMs: 50, slowIntervalMs: 100
  })
  t.after(() => d.stop())
  await d.start()
  await waitFor(() => d.peers.length === 2, { what: 'two peers' })
  assert.deepEqual(d.peers, ['127.0.4.11:7800', '127.0.4.12:7800'])
  dns.addRecord('vectis-headless.default.svc', { ip: '127.0.4.13' })
  dns.removeRecord('vectis-headless.default.svc', '127.0.4.11')
  await waitFor(() => d.peers.join() === '127.0.4.12:7800,127.0.4.13:7800', { what: 'the new record set' })
  d.setJoined(true)
  dns.setFailure('servfail')
  const rounds = d.completedRounds
  await waitFor(() => d.completedRounds >= rounds + 2, { what: 'rounds while failing' })
  assert.deepEqual(d.peers, ['127.0.4.12:7800', '127.0.4.13:7800'])
  dns.setFailure(undefined)
  dns.deleteName('vectis-headless.default.svc')
  await waitFor(() => d.peers.length === 0, { what: 'NXDOMAIN empties the set' })
  assert.ok(dns.queries.every((q) => q.type === 'A'))
})

void test('SRV records give each member its own port', async (t) => {
  const dns = new TestDnsServer()
  await dns.start()
  t.after(() => dns.stop())
  dns.setRecords('vectis.ns.svc.cluster.local', [{ ip: '127.0.4.20', port: 7801, hostname: 'vectis-0' }, { ip: '127.0.4.21', port: 7802, hostname: 'vectis-1' }])
  const d = new Discovery({ logger: silentLogger() }, {
    dnsName: 'vectis.ns.svc.cluster.local', srv: true, port: 7800, dnsServers: [dns.address], selfAddresses: [], fastIntervalMs: 50
  })
  t.after(() => d.stop())
  await d.start()
  await waitFor(() => d.peers.length === 2, { what: 'two SRV peers' })
  assert.deepEqual(d.peers, ['127.0.4.20:7801', '127.0.4.21:7802'])
})

void test('the DNS server answers over TCP too', async (t) => {
  const dns = new TestDnsServer()
  await dns.start()
  t.after(() => dns.stop())
  dns.setRecords('svc', [{ ip: '127.0.4.30' }])
  const s = connect(dns.port, dns.host)
  t.after(() => s.destroy())
  await once(s, 'connect')
  const chunks: Buffer[] = []
  s.on('data', (d: Buffer) => chunks.push(d))
  s.write(dnsPacket.streamEncode({ type: 'query', id: 7, questions: [{ type: 'A', name: 'svc' }] }))
  await waitFor(() => {
    const all = Buffer.concat(chunks)
    return all.length >= 2 && all.length >= 2 + all.readUInt16BE(0)
  }, { what: 'a whole TCP answer' })
  const res = dnsPacket.streamDecode(Buffer.concat(chunks))
  assert.equal(res.id, 7)
  assert.deepEqual(res.answers?.map((a) => ('data' in a ? a.data : undefined) as unknown), ['127.0.4.30'])
})
