// The pure parts of `vectis dev-cluster`: argument checks, member addresses, the demo configuration, the table.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parse as parseYaml } from 'yaml'
import { parseDevClusterArgs, formatDevTable } from '../../cli/dev-cluster.js'
import { UsageError } from '../../cli/args.js'
import { demoConfigYaml, memberIps, type DevMember } from '../../dev-cluster/dev-cluster.js'
import { parsePesitConfig } from '../../daemon/config.js'

test('member addresses count up from the base, stay on loopback and inside the /24', () => {
  assert.deepEqual(memberIps('127.0.0.10', 3), ['127.0.0.10', '127.0.0.11', '127.0.0.12'])
  assert.throws(() => memberIps('10.0.0.10', 3), /loopback/)
  assert.throws(() => memberIps('127.0.0.250', 10), /no room/)
  assert.throws(() => memberIps('127.0.0.1', 2), /no room/) // .1 is the load balancer's
  assert.throws(() => memberIps('nope', 1), /IPv4/)
})

test('arguments: defaults, and bad usage is a UsageError naming the option', () => {
  const p = parseDevClusterArgs(['--data', '/tmp/x'], {})
  assert.notEqual(p, 'help')
  if (p === 'help') return
  assert.equal(p.init.nodes, 3)
  assert.equal(p.init.lbPort, 5000)
  assert.equal(p.init.httpPort, 8080)
  assert.equal(p.init.baseIp, '127.0.0.10')
  assert.equal(p.init.restart, true)
  assert.equal(p.init.dataDir, '/tmp/x')
  assert.ok(p.init.demoPassword.length > 0 && p.init.demoPassword.length <= 8, 'PeSIT carries 8 bytes of password')
  assert.ok(p.init.clusterSecret.length >= 16)
  assert.equal(parseDevClusterArgs(['--help'], {}), 'help')
  assert.equal(p.init.netns, undefined)
  const ns = parseDevClusterArgs(['--netns', '--data', '/tmp/x'], {})
  assert.deepEqual(ns !== 'help' && ns.init.netns, { subnet: 77 })
  const ns9 = parseDevClusterArgs(['--netns-subnet', '9', '--data', '/tmp/x'], {})
  assert.deepEqual(ns9 !== 'help' && ns9.init.netns, { subnet: 9 }, '--netns-subnet implies --netns')
  assert.equal(p.init.lbBytesPerSecond, undefined, 'no rate cap by default')
  const capped = parseDevClusterArgs(['--lb-rate', '1048576', '--data', '/tmp/x'], {})
  assert.equal(capped !== 'help' && capped.init.lbBytesPerSecond, 1048576)
  for (const [argv, re] of [
    [['--netns', '--base-ip', '127.0.0.10'], /exclude each other/],
    [['--netns-subnet', '255'], /--netns-subnet/],
    [['--nodes', '0'], /--nodes/],
    [['--nodes', 'x'], /--nodes/],
    [['--lb-port', '70000'], /--lb-port/],
    [['--lb-rate', '0'], /--lb-rate expects an integer from 1/],
    [['--lb-rate', '1.5'], /--lb-rate/],
    [['--lb-rate', '1M'], /--lb-rate/],
    [['--base-ip', '192.168.1.10'], /--base-ip/],
    [['--http-port', '7800'], /differ/],
    [['--bogus'], /unknown option --bogus/],
    [['extra'], /unexpected argument/]
  ] as const) {
    assert.throws(() => parseDevClusterArgs([...argv, '--data', '/tmp/x'], {}), (e: unknown) => e instanceof UsageError && re.test(e.message), argv.join(' '))
  }
})

test('the demo configuration is a valid VECTIS_CONFIG with partner DEMO and file DEMOFILE', () => {
  const cfg = parsePesitConfig(parseYaml(demoConfigYaml({ port: 5000, password: 'abcd2345' })), '/shared')
  assert.deepEqual(cfg.servers.map((s) => [s.id, s.port]), [['PESITSRV', 5000]])
  assert.deepEqual(cfg.partners.map((p) => [p.id, p.password]), [['DEMO', 'abcd2345']])
  assert.deepEqual(cfg.files.map((f) => [f.id, f.directory]), [['DEMOFILE', '/shared/inbox/demo']])
})

test('the table shows one row per member, the leader, the label, the endpoint and dead members', () => {
  const member = (i: number, over: Partial<DevMember>): DevMember => ({
    index: i, name: `vectis-${i}`, ip: `127.0.0.${10 + i}`, dataDir: '', logFile: '', kubeconfig: '', pid: 100 + i,
    state: 'running', restarts: 0, lastExit: undefined, restartAt: undefined, status: undefined, statusError: undefined, ...over
  })
  const status = (name: string, leader: boolean): DevMember['status'] => ({
    nodeName: name, isLeader: leader, leader: 'vectis-0', epoch: 4, viewId: { coordinator: 'vectis-0', id: 7 },
    quorum: { required: 2, present: 2, ok: true }, members: [], servers: [{ id: 'PESITSRV', port: 5000, running: leader }]
  })
  const text = formatDevTable({
    members: [
      member(0, { status: status('vectis-0', true) }),
      member(1, { status: status('vectis-1', false) }),
      member(2, { state: 'exited', pid: 102, lastExit: { code: null, signal: 'SIGKILL', at: 0 }, restartAt: 3_000 })
    ],
    labelled: ['vectis-0'],
    endpoint: 'vectis-0 127.0.0.10:5000',
    routed: new Map([['vectis-0', 2]]),
    refused: 1,
    lb: '127.0.0.1:5000'
  }, 1_000)
  const lines = text.split('\n')
  assert.match(lines[0]!, /^leader: vectis-0 .*label: vectis-0 .*lb -> vectis-0 127\.0\.0\.10:5000/)
  assert.match(lines[2]!, /^vectis-0 .* 100 .*running .*LEADER .* 4 .*vectis-0#7.*serving +yes +2$/)
  assert.match(lines[3]!, /^vectis-1 .*standby .*closed/)
  assert.match(lines[4]!, /^vectis-2 .*killed \(SIGKILL\), restart in 2s/)
  assert.match(lines[5]!, /2 connections routed, 1 refused/)
  const two = formatDevTable({ members: [member(0, { status: status('vectis-0', true) }), member(1, { status: status('vectis-1', true) })], labelled: [], endpoint: undefined, routed: new Map(), refused: 0, lb: 'x' })
  assert.match(two, /^leader: SEVERAL vectis-0,vectis-1 .*label: \(none\) .*lb -> \(no endpoint: refusing\)/)
})
