import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig, DEFAULT_HTTP_PORT, DEFAULT_PESIT_PORT } from '../../daemon/config.js'
import { DEFAULT_CLUSTER_PORT } from '../../cluster/defaults.js'
import { ConfigError } from '../../common/config-error.js'
import { configuredDirectories, validatePesitConfig, type PesitConfig } from '../../transfer/config-types.js'
import { PesitConfigError } from '../../transfer/errors.js'

const gen = (): string => 'generated-password'
const load = (env: Record<string, string>, files: Record<string, string> = {}) => loadConfig(env, {
  cwd: '/srv/vectis',
  generatePassword: gen,
  readFile: (p) => {
    const f = files[p]
    if (f === undefined) throw new Error(`ENOENT: no such file or directory, open '${p}'`)
    return f
  }
})

function expectError (env: Record<string, string>, key: string, valuePart: string | undefined, expectedPart: RegExp, files?: Record<string, string>): void {
  assert.throws(() => load(env, files), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`)
    assert.equal(err.key, key)
    if (valuePart !== undefined) assert.ok(err.message.includes(valuePart), `message "${err.message}" should include ${valuePart}`)
    assert.match(err.message, expectedPart)
    assert.ok(!err.message.includes('\n'), 'one line')
    return true
  })
}

describe('configuration defaults', () => {
  it('an empty environment gives the embedded defaults: standalone, ports 8080/7800/5000, ./data', () => {
    const { config, warnings } = load({})
    assert.equal(config.clusterEnabled, false)
    assert.equal(config.httpPort, DEFAULT_HTTP_PORT)
    assert.equal(config.clusterPort, DEFAULT_CLUSTER_PORT)
    assert.equal(config.heartbeatMs, 500)
    assert.equal(config.failureTimeoutMs, 2500)
    assert.equal(config.handoverDrainMs, 3000)
    assert.equal(config.quorum, 'majority')
    assert.equal(config.dataDir, '/srv/vectis/data')
    assert.equal(config.sharedDir, '/srv/vectis/data/shared')
    assert.equal(config.k8sEnabled, false)
    assert.equal(config.leaderLabel, 'vectis-leader')
    assert.equal(config.podSelector, 'app=vectis')
    assert.equal(config.apiPassword, 'generated-password')
    assert.equal(config.apiPasswordGenerated, true)
    assert.deepEqual(config.pesit.servers.map((s) => s.port), [DEFAULT_PESIT_PORT])
    // Standalone, outside Kubernetes, without VECTIS_CONFIG: the demo partner, its password from the generator.
    assert.deepEqual(config.demo, { partner: 'DEMO', password: 'generate', outbox: '/srv/vectis/data/shared/inbox/demo', sample: 'hello.txt' })
    assert.deepEqual(config.pesit.partners, [{ id: 'DEMO', password: 'generate', access: 'both' }])
    assert.deepEqual(config.pesit.files.map((f) => [f.id, f.direction, f.directory]), [['DEMOFILE', 'both', '/srv/vectis/data/shared/inbox/demo']])
    assert.ok(!warnings.some((w) => /partners/.test(w)))
  })

  it('no demo partner in a cluster, in a pod, or with a VECTIS_CONFIG', () => {
    const envs: Array<Record<string, string>> = [{ VECTIS_CLUSTER_ENABLED: 'true', VECTIS_CLUSTER_SIZE: '3' }, { KUBERNETES_SERVICE_HOST: '10.0.0.1' }]
    for (const env of envs) {
      const { config, warnings } = load(env)
      assert.equal(config.demo, undefined, JSON.stringify(env))
      assert.deepEqual(config.pesit.partners, [])
      assert.ok(warnings.some((w) => /partners/.test(w)))
    }
    const { config } = load({ VECTIS_CONFIG: 'c.yaml' }, { '/srv/vectis/c.yaml': 'servers: []\n' })
    assert.equal(config.demo, undefined)
  })

  it('reads every variable', () => {
    const { config } = load({
      VECTIS_CLUSTER_ENABLED: 'true', VECTIS_CLUSTER_NAME: 'prod', POD_NAME: 'vectis-1', POD_NAMESPACE: 'ft',
      POD_IP: '10.0.0.5', VECTIS_BIND_HOST: '10.0.0.5', VECTIS_CLUSTER_PORT: '7900', VECTIS_HTTP_PORT: '9090',
      VECTIS_DISCOVERY_DNS: 'vectis-headless.ft.svc.cluster.local', VECTIS_DISCOVERY_DNS_SRV: 'true',
      VECTIS_DNS_SERVERS: '127.0.0.1:5353, 10.0.0.10:53', VECTIS_SEEDS: 'a:7800,b.example:7800',
      VECTIS_CLUSTER_SIZE: '3', VECTIS_QUORUM: 'majority', VECTIS_FORCE_NEW_CLUSTER: 'false',
      VECTIS_HEARTBEAT_MS: '200', VECTIS_FAILURE_TIMEOUT_MS: '1000', VECTIS_HANDOVER_DRAIN_MS: '0',
      VECTIS_CLUSTER_SECRET: 'a-long-enough-secret', VECTIS_K8S: 'on', VECTIS_LEADER_LABEL: 'example.com/leader',
      VECTIS_POD_SELECTOR: 'app=x,tier=ft', VECTIS_API_USER: 'ops', VECTIS_API_PASSWORD: 'pw',
      VECTIS_DATA_DIR: '/var/lib/vectis', VECTIS_SHARED_DIR: 'shared', VECTIS_REPLICATION: 'sync',
      VECTIS_LOG_LEVEL: 'debug', VECTIS_JOURNAL_RETENTION_DAYS: '7', VECTIS_BACKUP_SCHEDULE: '0 3 * * *', VECTIS_BACKUP_KEEP: '14'
    })
    assert.equal(config.clusterEnabled, true)
    assert.equal(config.clusterName, 'prod')
    assert.equal(config.podName, 'vectis-1')
    assert.equal(config.podNamespace, 'ft')
    assert.equal(config.clusterPort, 7900)
    assert.equal(config.httpPort, 9090)
    assert.equal(config.discoveryDnsSrv, true)
    assert.deepEqual(config.dnsServers, ['127.0.0.1:5353', '10.0.0.10:53'])
    assert.deepEqual(config.seeds, ['a:7800', 'b.example:7800'])
    assert.equal(config.clusterSize, 3)
    assert.equal(config.failureTimeoutMs, 1000)
    assert.equal(config.k8sEnabled, true)
    assert.equal(config.apiUser, 'ops')
    assert.equal(config.apiPasswordGenerated, false)
    assert.equal(config.sharedDir, '/srv/vectis/shared')
    assert.equal(config.replication, 'sync')
    assert.equal(config.journalRetentionDays, 7)
    assert.equal(config.backupSchedule, '0 3 * * *')
    assert.equal(config.backupKeep, 14)
  })

  it('warns about unknown VECTIS_ variables and quorum none', () => {
    const { warnings } = load({ VECTIS_HTTP_PROT: '1', VECTIS_CLUSTER_ENABLED: 'true', VECTIS_QUORUM: 'none', VECTIS_SEEDS: 'a:1' })
    assert.ok(warnings.some((w) => w.includes('VECTIS_HTTP_PROT')))
    assert.ok(warnings.some((w) => /split brain/.test(w)))
  })

  it('K8S auto is on in a pod or with KUBECONFIG', () => {
    assert.equal(load({ KUBERNETES_SERVICE_HOST: '10.96.0.1' }).config.k8sEnabled, true)
    assert.equal(load({ KUBECONFIG: '/k' }).config.k8sEnabled, true)
    assert.equal(load({ KUBECONFIG: '/k', VECTIS_K8S: 'off' }).config.k8sEnabled, false)
  })
})

describe('configuration errors name the variable, the value and what was expected', () => {
  const cases: Array<[string, Record<string, string>, string, string | undefined, RegExp]> = [
    ['non-numeric port', { VECTIS_HTTP_PORT: 'abc' }, 'VECTIS_HTTP_PORT', '"abc"', /TCP port from 1 to 65535/],
    ['port out of range', { VECTIS_CLUSTER_PORT: '70000' }, 'VECTIS_CLUSTER_PORT', '"70000"', /from 1 to 65535/],
    ['same http and cluster port', { VECTIS_HTTP_PORT: '7800' }, 'VECTIS_HTTP_PORT', '"7800"', /differ/],
    ['failure timeout not above twice the heartbeat', { VECTIS_HEARTBEAT_MS: '500', VECTIS_FAILURE_TIMEOUT_MS: '1000' }, 'VECTIS_FAILURE_TIMEOUT_MS', '"1000"', /twice VECTIS_HEARTBEAT_MS/],
    ['heartbeat not a number', { VECTIS_HEARTBEAT_MS: '1s' }, 'VECTIS_HEARTBEAT_MS', '"1s"', /milliseconds/],
    ['boolean', { VECTIS_CLUSTER_ENABLED: 'maybe' }, 'VECTIS_CLUSTER_ENABLED', '"maybe"', /true or false/],
    ['majority quorum without cluster size', { VECTIS_CLUSTER_ENABLED: 'true', VECTIS_SEEDS: 'a:1' }, 'VECTIS_CLUSTER_SIZE', undefined, /required when/],
    ['cluster size zero', { VECTIS_CLUSTER_SIZE: '0' }, 'VECTIS_CLUSTER_SIZE', '"0"', /from 1/],
    ['quorum enum', { VECTIS_QUORUM: 'all' }, 'VECTIS_QUORUM', '"all"', /majority, none/],
    ['k8s enum', { VECTIS_K8S: 'yes' }, 'VECTIS_K8S', '"yes"', /on, off, auto/],
    ['replication enum', { VECTIS_REPLICATION: 'semi' }, 'VECTIS_REPLICATION', '"semi"', /async, sync/],
    ['log level', { VECTIS_LOG_LEVEL: 'verbose' }, 'VECTIS_LOG_LEVEL', '"verbose"', /info/],
    ['dns servers need ip:port', { VECTIS_DNS_SERVERS: 'dns.local:53' }, 'VECTIS_DNS_SERVERS', 'dns.local', /not an IP address/],
    ['dns servers need a port', { VECTIS_DNS_SERVERS: '10.0.0.1' }, 'VECTIS_DNS_SERVERS', '10.0.0.1', /ip:port/],
    ['seeds need a port', { VECTIS_SEEDS: 'vectis-0' }, 'VECTIS_SEEDS', 'vectis-0', /host:port/],
    ['pod ip', { POD_IP: 'not-an-ip' }, 'POD_IP', '"not-an-ip"', /IP address/],
    ['bind host', { VECTIS_BIND_HOST: 'localhost' }, 'VECTIS_BIND_HOST', '"localhost"', /IP address/],
    ['short secret', { VECTIS_CLUSTER_SECRET: 'short' }, 'VECTIS_CLUSTER_SECRET', undefined, /at least 16/],
    ['unreadable secret file', { VECTIS_CLUSTER_SECRET_FILE: '/nope/secret' }, 'VECTIS_CLUSTER_SECRET_FILE', '/nope/secret', /readable file/],
    ['password and password file', { VECTIS_API_PASSWORD: 'x', VECTIS_API_PASSWORD_FILE: '/p' }, 'VECTIS_API_PASSWORD', undefined, /not both/],
    ['label key', { VECTIS_LEADER_LABEL: 'bad label' }, 'VECTIS_LEADER_LABEL', '"bad label"', /label key/],
    // The API server's rule, which the label controller applies: a prefix is a DNS subdomain (no empty label).
    ['label key with an empty prefix label', { VECTIS_LEADER_LABEL: 'example..com/leader' }, 'VECTIS_LEADER_LABEL', '"example..com/leader"', /DNS subdomain/],
    // Selectors that look plausible (no blank, no empty item) but that the API server's syntax rejects.
    ['pod selector with a bad label value', { VECTIS_POD_SELECTOR: 'app=-vectis' }, 'VECTIS_POD_SELECTOR', '"app=-vectis"', /label value "-vectis"/],
    ['pod selector with a bad label key', { VECTIS_POD_SELECTOR: 'app=vectis,-tier=ft' }, 'VECTIS_POD_SELECTOR', '"app=vectis,-tier=ft"', /name part of "-tier"/],
    ['pod selector with an unbalanced parenthesis', { VECTIS_POD_SELECTOR: 'tier in (ft' }, 'VECTIS_POD_SELECTOR', '"tier in (ft"', /unbalanced/],
    // The label controller refuses these at its start, after the cluster has started: too late for exit code 2.
    ['pod selector on the leader label', { VECTIS_POD_SELECTOR: 'app=vectis,vectis-leader=true' }, 'VECTIS_POD_SELECTOR', '"app=vectis,vectis-leader=true"', /leader label "vectis-leader"/],
    ['pod selector on a custom leader label', { VECTIS_LEADER_LABEL: 'example.com/leader', VECTIS_POD_SELECTOR: 'app=vectis,!example.com/leader' }, 'VECTIS_POD_SELECTOR', undefined, /leader label "example.com\/leader"/],
    ['retention', { VECTIS_JOURNAL_RETENTION_DAYS: '-1' }, 'VECTIS_JOURNAL_RETENTION_DAYS', '"-1"', /days/],
    ['backup schedule with a bad field', { VECTIS_BACKUP_SCHEDULE: '61 * * * *' }, 'VECTIS_BACKUP_SCHEDULE', '"61 * * * *"', /cron expression.*minute/],
    ['backup schedule with 7 fields', { VECTIS_BACKUP_SCHEDULE: '0 0 3 * * * 2027' }, 'VECTIS_BACKUP_SCHEDULE', undefined, /5 fields.*6/],
    ['backup schedule that never fires', { VECTIS_BACKUP_SCHEDULE: '0 0 30 2 *' }, 'VECTIS_BACKUP_SCHEDULE', undefined, /never fires/],
    ['backups kept', { VECTIS_BACKUP_KEEP: '0' }, 'VECTIS_BACKUP_KEEP', '"0"', /backups/],
    ['unreadable VECTIS_CONFIG', { VECTIS_CONFIG: '/etc/vectis/missing.yaml' }, 'VECTIS_CONFIG', 'missing.yaml', /readable YAML file.*ENOENT/]
  ]
  for (const [name, env, key, value, expected] of cases) {
    it(name, () => { expectError(env, key, value, expected) })
  }

  it('accepts set-based pod selectors (blanks and commas inside parentheses)', () => {
    assert.equal(load({ VECTIS_POD_SELECTOR: 'app=vectis, tier in (ft,edge), !canary' }).config.podSelector, 'app=vectis, tier in (ft,edge), !canary')
  })

  it('the secret never appears in an error message', () => {
    assert.throws(() => load({ VECTIS_CLUSTER_SECRET: 'tiny' }), (err: Error) => !err.message.includes('tiny'))
  })
})

describe('YAML configuration (docs/contract.md §5)', () => {
  const cfg = (yaml: string, extra: Record<string, string> = {}) => load({ VECTIS_CONFIG: 'vectis.yaml', ...extra }, {
    '/srv/vectis/vectis.yaml': yaml, '/run/secrets/pw': 'fromfile\n', '/tls/tls.crt': 'c', '/tls/tls.key': 'k', '/tls/ca.crt': 'ca'
  })
  const good = `
servers:
  - id: PESITSRV
    port: 5000
    maxConnections: 10
    syncIntervalKb: 32
    maxEntitySize: 4096
partners:
  - id: CXCLIENT
    password: test123
    access: write
  - id: OTHER
    passwordFile: /run/secrets/pw
files:
  - id: PAYMENTS
    direction: receive
    directory: inbox/payments
    filenamePattern: "\${partner}_\${file}_\${transferId}"
`

  it('parses a configuration shaped like docs/contract.md §5.6, resolving directories against the shared dir', () => {
    const { config } = cfg(good)
    assert.deepEqual(config.pesit.servers, [{ id: 'PESITSRV', port: 5000, maxConnections: 10, syncIntervalKb: 32, maxEntitySize: 4096 }])
    assert.deepEqual(config.pesit.partners, [{ id: 'CXCLIENT', password: 'test123', access: 'write' }, { id: 'OTHER', password: 'fromfile', access: 'both' }])
    assert.deepEqual(config.pesit.files, [{ id: 'PAYMENTS', direction: 'receive', directory: '/srv/vectis/data/shared/inbox/payments', filenamePattern: '${partner}_${file}_${transferId}' }])
    validatePesitConfig(config.pesit) // what the loader accepts, the PeSIT servers accept at their start
  })

  const sending = `${good}  - id: STATEMENTS
    direction: send
    directory: outbox/\${partner}/statements
    afterSend: move:sent/\${partner}
  - id: REPORTS
    direction: both
    directory: /var/reports
    afterSend: delete
`

  const withTls = good.replace('partners:', `  - id: PESITSRV
    port: 5001
    tls: {certFile: /tls/tls.crt, keyFile: /tls/tls.key, caFile: /tls/ca.crt, clientAuth: optional}
partners:`)

  it('servers[].tls: the same server id over TLS on its own port, with the defaults of docs/contract.md §5.2', () => {
    const { config } = cfg(withTls)
    assert.deepEqual(config.pesit.servers[1], {
      id: 'PESITSRV', port: 5001, maxConnections: 100, syncIntervalKb: 1024, maxEntitySize: 65535,
      tls: { certFile: '/tls/tls.crt', keyFile: '/tls/tls.key', caFile: '/tls/ca.crt', clientAuth: 'optional', minVersion: 'TLSv1.2' }
    })
    validatePesitConfig(config.pesit)
    assert.equal(cfg(withTls, { VECTIS_HTTP_TLS_CERT_FILE: '/tls/tls.crt', VECTIS_HTTP_TLS_KEY_FILE: '/tls/tls.key' }).config.httpTls?.keyFile, '/tls/tls.key')
    expectError({ VECTIS_HTTP_TLS_CERT_FILE: '/tls/tls.crt' }, 'VECTIS_HTTP_TLS_KEY_FILE', undefined, /both/)
  })

  it('send virtual files: ${partner} in directories, afterSend keep (default), delete, move:<dir>', () => {
    const { config } = cfg(sending)
    const [, statements, reports] = config.pesit.files
    assert.deepEqual(statements, { id: 'STATEMENTS', direction: 'send', directory: '/srv/vectis/data/shared/outbox/${partner}/statements', filenamePattern: '${partner}_${file}_${transferId}', afterSend: { action: 'move', directory: '/srv/vectis/data/shared/sent/${partner}' } })
    assert.deepEqual(reports?.afterSend, { action: 'delete' })
    assert.deepEqual(cfg(sending.replace('    afterSend: delete\n', '')).config.pesit.files[2]?.afterSend, { action: 'keep' })
    validatePesitConfig(config.pesit)
    assert.deepEqual(configuredDirectories(config.pesit).map((d) => d.directory), [
      '/srv/vectis/data/shared/inbox/payments', '/srv/vectis/data/shared/outbox/CXCLIENT/statements', '/srv/vectis/data/shared/outbox/OTHER/statements',
      '/srv/vectis/data/shared/sent/CXCLIENT', '/srv/vectis/data/shared/sent/OTHER', '/var/reports'
    ])
  })

  const bad: Array<[string, string, string, RegExp]> = [
    ['port of the wrong type', good.replace('port: 5000', 'port: "5000"'), 'servers[0].port', /integer from 1 to 65535/],
    ['server id lower-case', good.replace('id: PESITSRV', 'id: pesitsrv'), 'servers[0].id', /upper-case/],
    ['server id too long', good.replace('id: PESITSRV', 'id: PESITSRV99'), 'servers[0].id', /1 to 8/],
    ['unknown key (a typo)', good.replace('syncIntervalKb', 'syncIntervalKB'), 'servers[0].syncIntervalKB', /unknown key/],
    ['servers not a list', 'servers: {id: X}\n', 'servers', /a list/],
    ['password too long for PeSIT', good.replace('password: test123', 'password: far-too-long'), 'partners[0].password', /8 printable/],
    ['password missing', good.replace('    password: test123\n', ''), 'partners[0].password', /required/],
    ['access enum', good.replace('access: write', 'access: all'), 'partners[0].access', /read, write, both/],
    ['direction enum', good.replace('direction: receive', 'direction: up'), 'files[0].direction', /receive, send, both/],
    ['directory escaping the shared dir', good.replace('inbox/payments', '../../etc'), 'files[0].directory', /inside VECTIS_SHARED_DIR/],
    ['unknown placeholder', good.replace('${transferId}', '${id}'), 'files[0].filenamePattern', /unknown placeholder/],
    ['slash in pattern', good.replace('${partner}_', '${partner}/'), 'files[0].filenamePattern', /without \//],
    // Both were accepted here and refused by the PeSIT servers' own check once the daemon started (exit 1).
    ['pattern starting with a dot', good.replace('"${partner}_${file}_${transferId}"', '".${partner}_${file}_${transferId}"'), 'files[0].filenamePattern', /start with a dot/],
    ['partner id with a blank', good.replace('id: CXCLIENT', 'id: CX CLIENT'), 'partners[0].id', /without blanks/],
    ['duplicate partner', good.replace('id: OTHER', 'id: CXCLIENT'), 'partners[1]', /duplicate/],
    ['server port equal to the HTTP port', good.replace('port: 5000', 'port: 8080'), 'servers[0].port', /differ/],
    ['unreadable password file', good.replace('/run/secrets/pw', '/run/secrets/none'), 'partners[1].passwordFile', /readable file/],
    ['invalid YAML', 'servers: [\n', 'VECTIS_CONFIG', /valid YAML/],
    ['top level not a mapping', '- a\n- b\n', 'VECTIS_CONFIG', /mapping/],
    ['unknown top-level key', 'server: []\n', '.server', /unknown key/],
    ['tlsClientCn of the wrong type', good.replace('    access: write', '    access: write\n    tlsClientCn: [a]'), 'partners[0].tlsClientCn', /string/],
    ['tls not a mapping', withTls.replace(/tls: \{.*\}/, 'tls: yes'), 'servers[1].tls', /mapping/],
    ['tls unknown key', withTls.replace('clientAuth: optional', 'clientauth: optional'), 'servers[1].tls.clientauth', /unknown key/],
    ['tls clientAuth enum', withTls.replace('clientAuth: optional', 'clientAuth: always'), 'servers[1].tls.clientAuth', /none, optional, required/],
    ['tls unreadable key', withTls.replace('/tls/tls.key', '/tls/missing.key'), 'servers[1].tls.keyFile', /readable file/],
    ['tls client certificates without a CA', withTls.replace(', caFile: /tls/ca.crt', ''), 'servers[1].tls.caFile', /verify client certificates/],
    ['two TLS listeners for one server id', withTls.replace('partners:', `  - id: PESITSRV
    port: 5002
    tls: {certFile: /tls/tls.crt, keyFile: /tls/tls.key}
partners:`), 'servers[2]', /duplicate/],
    ['afterSend on a receive file', good.replace('    directory: inbox/payments', '    directory: inbox/payments\n    afterSend: delete'), 'files[0].afterSend', /only a send/],
    ['afterSend unknown action', sending.replace('afterSend: delete', 'afterSend: shred'), 'files[2].afterSend', /keep, delete or move/],
    ['afterSend move without a directory', sending.replace('afterSend: delete', 'afterSend: "move:"'), 'files[2].afterSend', /keep, delete or move/],
    ['afterSend move out of the shared dir', sending.replace('move:sent/', 'move:../../'), 'files[1].afterSend', /inside VECTIS_SHARED_DIR/],
    ['unknown placeholder in a directory', sending.replace('outbox/${partner}', 'outbox/${file}'), 'files[1].directory', /\$\{partner\} only/]
  ]
  for (const [name, yaml, key, expected] of bad) {
    it(`rejects ${name}`, () => {
      assert.throws(() => cfg(yaml), (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err))
        assert.equal(err.key, key)
        assert.match(err.message, expected)
        assert.ok(!err.message.includes('\n'))
        return true
      })
    })
  }

  it('reads a real file from disk', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vectis-cfg-'))
    try {
      writeFileSync(join(dir, 'c.yaml'), good.replace('passwordFile: /run/secrets/pw', 'password: x'))
      const { config } = loadConfig({ VECTIS_CONFIG: join(dir, 'c.yaml') }, { cwd: dir })
      assert.equal(config.pesit.partners[0]!.id, 'CXCLIENT')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('partners the cluster calls and schedules (docs/contract.md §5.3, §5.5)', () => {
  const secrets = {
    '/tls/partner-ca.crt': 'ca', '/tls/client.crt': 'c', '/tls/client.key': 'k', '/run/secrets/cx-remote': 'fromfile\n'
  }
  const cfg = (yaml: string) => load({ VECTIS_CONFIG: 'vectis.yaml' }, { '/srv/vectis/vectis.yaml': yaml, ...secrets })
  // The example of the issue: relative directories are under VECTIS_SHARED_DIR (/srv/vectis/data/shared here).
  const example = `
servers:
  - id: PESITSRV
    port: 5000
partners:
  - id: CXCLIENT
    password: secret
    access: both
    host: cx.example.net
    port: 6000
    serverId: CXSRV
    remotePassword: theirs
    tls: {caFile: /tls/partner-ca.crt}
    maxConnections: 2
files:
  - id: STATEMENTS
    direction: send
    directory: outbox/\${partner}/statements
    afterSend: move:sent/statements
schedules:
  - cron: "*/15 * * * *"
    direction: send
    partner: CXCLIENT
    file: STATEMENTS
    pattern: "*.csv"
    remoteFile: STMTS
`
  // The example plus a partner we do not call and a receive virtual file, for the cross-checks of schedules.
  const wider = example.replace('files:\n', `  - id: INBOUND
    password: x
files:
  - id: PAYMENTS
    directory: inbox/payments
`)

  it('loads the example: the outbound settings of a partner and a send schedule, which the PeSIT side accepts too', () => {
    const { config } = cfg(example)
    assert.deepEqual(config.pesit.partners, [{
      id: 'CXCLIENT', password: 'secret', access: 'both',
      outbound: { host: 'cx.example.net', port: 6000, serverId: 'CXSRV', localId: 'PESITSRV', password: 'theirs', tls: { caFile: '/tls/partner-ca.crt' }, maxConnections: 2 }
    }])
    assert.deepEqual(config.pesit.schedules, [{
      id: 'STATEMENTS-CXCLIENT-STMTS', cron: '*/15 * * * *', timezone: 'UTC', direction: 'send', partner: 'CXCLIENT',
      file: 'STATEMENTS', pattern: '*.csv', remoteFile: 'STMTS'
    }])
    validatePesitConfig(config.pesit)
  })

  it('defaults: maxConnections 2, localId the first server id, no tls; timezone UTC, direction send, pattern *, the id derived', () => {
    const minimal = example
      .replace('    remotePassword: theirs\n    tls: {caFile: /tls/partner-ca.crt}\n    maxConnections: 2\n', '    remotePasswordFile: /run/secrets/cx-remote\n')
      .replace('    direction: send\n    partner', '    partner').replace('    pattern: "*.csv"\n', '')
      .replace('servers:\n', 'servers:\n  - id: FIRST\n    port: 5001\n')
    const { config } = cfg(minimal)
    assert.deepEqual(config.pesit.partners[0]?.outbound, { host: 'cx.example.net', port: 6000, serverId: 'CXSRV', localId: 'FIRST', password: 'fromfile', maxConnections: 2 })
    assert.deepEqual(config.pesit.schedules, [{
      id: 'STATEMENTS-CXCLIENT-STMTS', cron: '*/15 * * * *', timezone: 'UTC', direction: 'send', partner: 'CXCLIENT',
      file: 'STATEMENTS', pattern: '*', remoteFile: 'STMTS'
    }])
    validatePesitConfig(config.pesit)
    // A partner without host is one we do not call; no schedules key: none. The embedded default has none either.
    assert.equal(cfg(wider).config.pesit.partners[1]?.outbound, undefined)
    assert.deepEqual(cfg(example.replace(/schedules:[^]*$/, '')).config.pesit.schedules, [])
    assert.deepEqual(load({}).config.pesit.schedules, [])
    assert.deepEqual(load({ KUBERNETES_SERVICE_HOST: '10.0.0.1' }).config.pesit.schedules, [])
  })

  it('every key given: localId, a client certificate, an IP host, an id, a time zone, 6 fields with seconds', () => {
    const full = example
      .replace('tls: {caFile: /tls/partner-ca.crt}', 'tls: {caFile: /tls/partner-ca.crt, certFile: /tls/client.crt, keyFile: /tls/client.key}\n    localId: OURS')
      .replace('host: cx.example.net', 'host: 192.0.2.7').replace('maxConnections: 2', 'maxConnections: 100').replace('direction: send\n    directory', 'direction: both\n    directory')
      .replace('  - cron: "*/15 * * * *"', '  - id: statements every 30 s\n    cron: "*/30 * 8-18 * * 1-5"\n    timezone: Europe/Paris')
    const { config } = cfg(full)
    assert.deepEqual(config.pesit.partners[0]?.outbound, {
      host: '192.0.2.7', port: 6000, serverId: 'CXSRV', localId: 'OURS', password: 'theirs', maxConnections: 100,
      tls: { caFile: '/tls/partner-ca.crt', certFile: '/tls/client.crt', keyFile: '/tls/client.key' }
    })
    assert.deepEqual(config.pesit.schedules[0], {
      id: 'statements every 30 s', cron: '*/30 * 8-18 * * 1-5', timezone: 'Europe/Paris', direction: 'send', partner: 'CXCLIENT',
      file: 'STATEMENTS', pattern: '*.csv', remoteFile: 'STMTS'
    })
    validatePesitConfig(config.pesit)
    // tls: {} is TLS verified against the system's CAs.
    assert.deepEqual(cfg(example.replace('{caFile: /tls/partner-ca.crt}', '{}')).config.pesit.partners[0]?.outbound?.tls, {})
  })

  const twoSchedules = (second: string): string => `${example}${second}`
  const bad: Array<[string, string, string, RegExp]> = [
    ['host without port', example.replace('    port: 6000\n', ''), 'partners[0].port', /required with host/],
    ['host without serverId', example.replace('    serverId: CXSRV\n', ''), 'partners[0].serverId', /required with host/],
    ['host without a remote password', example.replace('    remotePassword: theirs\n', ''), 'partners[0].remotePassword', /required \(or remotePasswordFile\)/],
    ['both remotePassword and remotePasswordFile', example.replace('remotePassword: theirs', 'remotePassword: theirs\n    remotePasswordFile: /run/secrets/cx-remote'), 'partners[0].remotePassword', /either remotePassword or remotePasswordFile, not both/],
    ['an unreadable remotePasswordFile', example.replace('remotePassword: theirs', 'remotePasswordFile: /run/secrets/none'), 'partners[0].remotePasswordFile', /readable file/],
    ['a remote password too long for PeSIT', example.replace('remotePassword: theirs', 'remotePassword: far-too-long'), 'partners[0].remotePassword', /1 to 8 printable/],
    ['an outbound key without host', example.replace('    host: cx.example.net\n', '').replace(/schedules:[^]*$/, ''), 'partners[0].port', /only with host/],
    ['maxConnections without host', example.replace('    host: cx.example.net\n    port: 6000\n    serverId: CXSRV\n    remotePassword: theirs\n    tls: {caFile: /tls/partner-ca.crt}\n', '').replace(/schedules:[^]*$/, ''), 'partners[0].maxConnections', /only with host/],
    ['port out of range', example.replace('port: 6000', 'port: 70000'), 'partners[0].port', /1 to 65535/],
    ['serverId lower-case', example.replace('serverId: CXSRV', 'serverId: cxsrv'), 'partners[0].serverId', /upper-case/],
    ['localId too long', example.replace('serverId: CXSRV', 'serverId: CXSRV\n    localId: OURSERVER1'), 'partners[0].localId', /1 to 8/],
    ['no localId and no server', example.replace('servers:\n  - id: PESITSRV\n    port: 5000\n', 'servers: []\n'), 'partners[0].localId', /required when no server is configured/],
    ['a host that is not a name', example.replace('host: cx.example.net', 'host: "cx example.net"'), 'partners[0].host', /DNS name or an IP address/],
    ['maxConnections 0', example.replace('maxConnections: 2', 'maxConnections: 0'), 'partners[0].maxConnections', /from 1 to 100/],
    ['maxConnections above 100', example.replace('maxConnections: 2', 'maxConnections: 101'), 'partners[0].maxConnections', /from 1 to 100/],
    ['a client certificate without its key', example.replace('{caFile: /tls/partner-ca.crt}', '{certFile: /tls/client.crt}'), 'partners[0].tls.keyFile', /go together/],
    ['a client key without its certificate', example.replace('{caFile: /tls/partner-ca.crt}', '{keyFile: /tls/client.key}'), 'partners[0].tls.certFile', /go together/],
    ['an unreadable CA file', example.replace('/tls/partner-ca.crt', '/tls/missing-ca.crt'), 'partners[0].tls.caFile', /readable file.*ENOENT/],
    ['an unknown tls key', example.replace('{caFile: /tls/partner-ca.crt}', '{caFile: /tls/partner-ca.crt, insecure: true}'), 'partners[0].tls.insecure', /unknown key/],
    ['tls not a mapping', example.replace('{caFile: /tls/partner-ca.crt}', 'yes'), 'partners[0].tls', /mapping/],
    ['a bad cron field', example.replace('*/15 * * * *', '61 * * * *'), 'schedules[0].cron', /cron expression.*minute/],
    ['a cron of 7 fields', example.replace('*/15 * * * *', '0 */15 * * * * 2027'), 'schedules[0].cron', /5 fields.*6/],
    ['a cron that never fires', example.replace('*/15 * * * *', '0 0 30 2 *'), 'schedules[0].cron', /never fires/],
    ['no cron', example.replace('  - cron: "*/15 * * * *"\n    direction', '  - direction'), 'schedules[0].cron', /cron expression/],
    ['an unknown time zone', example.replace('    direction: send\n    partner', '    timezone: Mars/Olympus\n    direction: send\n    partner'), 'schedules[0].timezone', /IANA time zone/],
    ['a fetch schedule', example.replace('    direction: send\n    partner', '    direction: fetch\n    partner'), 'schedules[0].direction', /fetch schedules are not supported/],
    ['another direction', example.replace('    direction: send\n    partner', '    direction: receive\n    partner'), 'schedules[0].direction', /expected send/],
    ['an unknown partner', example.replace('partner: CXCLIENT', 'partner: NOBODY'), 'schedules[0].partner', /not a configured partner/],
    ['a partner without host', wider.replace('partner: CXCLIENT', 'partner: INBOUND'), 'schedules[0].partner', /no host/],
    ['an unknown file', example.replace('file: STATEMENTS', 'file: NOFILE'), 'schedules[0].file', /not a configured virtual file/],
    ['a receive-only file', wider.replace('file: STATEMENTS', 'file: PAYMENTS'), 'schedules[0].file', /a receive virtual file/],
    ['a pattern with /', example.replace('"*.csv"', '"sub/*.csv"'), 'schedules[0].pattern', /without \//],
    ['a pattern with brackets', example.replace('"*.csv"', '"[ab]*.csv"'), 'schedules[0].pattern', /only \* and \? are wildcards/],
    ['no remoteFile', example.replace('    remoteFile: STMTS\n', ''), 'schedules[0].remoteFile', /non-empty string/],
    ['an unknown schedule key', example.replace('remoteFile: STMTS', 'remoteFile: STMTS\n    remotefile: X'), 'schedules[0].remotefile', /unknown key/],
    ['schedules not a list', example.replace(/schedules:[^]*$/, 'schedules: {cron: "* * * * *"}\n'), 'schedules', /a list/],
    ['duplicate derived ids', twoSchedules('  - {cron: "0 * * * *", partner: CXCLIENT, file: STATEMENTS, remoteFile: STMTS}\n'), 'schedules[1]', /duplicate schedule id.*give one of the schedules an id/],
    ['duplicate given ids', twoSchedules('  - {id: STATEMENTS-CXCLIENT-STMTS, cron: "0 * * * *", partner: CXCLIENT, file: STATEMENTS, remoteFile: OTHER}\n'), 'schedules[1].id', /duplicate schedule id; each must be unique/]
  ]
  for (const [name, yaml, key, expected] of bad) {
    it(`rejects ${name}`, () => {
      assert.throws(() => cfg(yaml), (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err))
        assert.equal(err.key, key, err.message)
        assert.match(err.message, expected)
        assert.ok(!err.message.includes('\n'))
        assert.ok(!err.message.includes('theirs') && !err.message.includes('far-too-long'), 'no password in the message')
        return true
      })
    })
  }

  it('two schedules of the same file to one partner load with ids of their own', () => {
    const { config } = cfg(twoSchedules('  - {id: hourly, cron: "0 * * * *", partner: CXCLIENT, file: STATEMENTS, remoteFile: STMTS}\n'))
    assert.deepEqual(config.pesit.schedules.map((s) => s.id), ['STATEMENTS-CXCLIENT-STMTS', 'hourly'])
  })

  it('validatePesitConfig re-checks what the queue and the schedules rely on, naming the key', () => {
    const good = (): PesitConfig => cfg(wider).config.pesit
    validatePesitConfig(good())
    validatePesitConfig({ ...good(), schedules: undefined }) // a configuration built in code may leave them out
    const broken: Array<[(c: PesitConfig) => void, RegExp]> = [
      [(c) => { c.partners[0]!.outbound!.port = 0 }, /partners\[0\]\.outbound\.port/],
      [(c) => { c.partners[0]!.outbound!.serverId = 'cx srv' }, /partners\[0\]\.outbound\.serverId/],
      [(c) => { c.partners[0]!.outbound!.localId = '' }, /partners\[0\]\.outbound\.localId/],
      [(c) => { c.partners[0]!.outbound!.password = 'way too long' }, /partners\[0\]\.outbound\.password/],
      [(c) => { c.partners[0]!.outbound!.tls = { certFile: '/tls/client.crt' } }, /partners\[0\]\.outbound\.tls: certFile and keyFile/],
      [(c) => { c.partners[0]!.outbound!.maxConnections = 101 }, /partners\[0\]\.outbound\.maxConnections/],
      [(c) => { c.partners[0]!.outbound!.host = 'a b' }, /partners\[0\]\.outbound\.host/],
      [(c) => { c.schedules![0]!.cron = '* * *' }, /schedules\[0\]\.cron/],
      [(c) => { c.schedules![0]!.timezone = 'Nowhere/Town' }, /schedules\[0\]\.timezone/],
      [(c) => { c.schedules![0]!.partner = 'INBOUND' }, /schedules\[0\]\.partner: INBOUND is a partner without host/],
      [(c) => { c.schedules![0]!.partner = 'NOBODY' }, /schedules\[0\]\.partner: NOBODY is not a configured partner/],
      [(c) => { c.schedules![0]!.file = 'PAYMENTS' }, /schedules\[0\]\.file: PAYMENTS is a receive virtual file/],
      [(c) => { c.schedules![0]!.pattern = 'a/b' }, /schedules\[0\]\.pattern/],
      [(c) => { c.schedules![0]!.remoteFile = '' }, /schedules\[0\]\.remoteFile/],
      [(c) => { (c.schedules![0] as { direction: string }).direction = 'fetch' }, /schedules\[0\]\.direction/],
      [(c) => { c.schedules!.push({ ...c.schedules![0]! }) }, /schedules\[1\]\.id: duplicate schedule/]
    ]
    for (const [mut, re] of broken) {
      const c = good()
      mut(c)
      assert.throws(() => { validatePesitConfig(c) }, (e: unknown) => e instanceof PesitConfigError && re.test(e.message), re.source)
    }
  })

  it('reads the example from disk, its CA file included', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vectis-cfg-'))
    try {
      writeFileSync(join(dir, 'partner-ca.crt'), '-----BEGIN CERTIFICATE-----\n')
      writeFileSync(join(dir, 'c.yaml'), example.replace('/tls/partner-ca.crt', join(dir, 'partner-ca.crt')))
      const { config } = loadConfig({ VECTIS_CONFIG: join(dir, 'c.yaml'), VECTIS_SHARED_DIR: join(dir, 'shared') }, { cwd: dir })
      assert.deepEqual(config.pesit.partners[0]?.outbound?.tls, { caFile: join(dir, 'partner-ca.crt') })
      assert.equal(config.pesit.files[0]?.directory, join(dir, 'shared', 'outbox', '${partner}', 'statements'))
      assert.equal(config.pesit.schedules[0]?.id, 'STATEMENTS-CXCLIENT-STMTS')
      rmSync(join(dir, 'partner-ca.crt'))
      assert.throws(() => loadConfig({ VECTIS_CONFIG: join(dir, 'c.yaml') }, { cwd: dir }), (e: unknown) => e instanceof ConfigError && e.key === 'partners[0].tls.caFile')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
