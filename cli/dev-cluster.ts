/**
 * `vectis dev-cluster`: runs a whole HA cluster on this machine (docs/contract.md §1.5; the parts are in
 * `dev-cluster/dev-cluster.ts`), prints where each part listens and the credentials, then a live status
 * table: redrawn in place on a terminal, printed again on every change otherwise (logs, CI). Ctrl-C or SIGTERM
 * stops everything and exits 0.
 */
import { randomBytes, randomInt } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import { DEFAULT_HTTP_PORT, DEFAULT_PESIT_PORT } from '../daemon/config.js'
import { DEFAULT_CLUSTER_PORT } from '../cluster/defaults.js'
import { ConfigError } from '../common/config-error.js'
import { DEFAULT_LEADER_LABEL } from '../k8s/defaults.js'
import { createLogger } from '../common/logger.js'
import {
  DEMO_DIRECTORY, DEMO_FILE, DEMO_PARTNER, DEMO_SERVER, DEV_API_USER, DEV_DNS_NAME, DEV_NAMESPACE, DevCluster,
  memberIps, type DevClusterInit, type DevMember
} from '../dev-cluster/dev-cluster.js'
import { intOption, parseArgs, UsageError } from './args.js'

const USAGE = `usage: vectis dev-cluster [options]

Runs an HA cluster on this machine, on loopback, without Kubernetes: a DNS server for the headless Service, a
Kubernetes API emulator holding the pods and their labels, N vectisd members on their own loopback addresses
(same ports, as pods), and a TCP load balancer that routes each new connection to the pod labelled
${DEFAULT_LEADER_LABEL}=true. Ctrl-C stops everything.

options:
  --nodes N          members (default 3)
  --lb-port P        load balancer port on 127.0.0.1 (default ${DEFAULT_PESIT_PORT}; 0: any free port)
  --lb-rate B        cap each load-balanced connection at B bytes/s in each direction (default: no cap), so that
                     a transfer lasts long enough to be watched in progress
  --config FILE      VECTIS_CONFIG of every member (default: a demo partner ${DEMO_PARTNER} whose password is printed)
  --data DIR         members' data, shared transfer directory, logs (default: a new temporary folder)
  --http-port P      members' HTTP port (default ${DEFAULT_HTTP_PORT})
  --cluster-port P   members' cluster port (default ${DEFAULT_CLUSTER_PORT})
  --pesit-port P     the demo configuration's PeSIT server port (default ${DEFAULT_PESIT_PORT}; ignored with --config)
  --base-ip IP       address of the first member; the next ones count up (default 127.0.0.10)
  --log-level L      members' VECTIS_LOG_LEVEL (default info)
  --no-restart       leave members that exit dead (default: restarted after a back-off, as a kubelet would)
  --prometheus       also run Debian's prometheus (apt-get install prometheus) on 127.0.0.1:9090, scraping every
                     member and loading the alert rules of deploy/
  --prometheus-port P  its port instead of 9090 (implies --prometheus)
  --netns            run each member in a network namespace of its own (10.S.0.10, .11, …; root, iproute2 and
                     iptables needed), so members can be cut off from each other; --base-ip is then not used
  --netns-subnet S   S of 10.S.0.0/24 (default 77); two dev clusters at once need different ones (a start
                     removes what is left of the namespaces of its subnet, processes included)
  --help             this text

On a terminal, keys 0-9 kill -9 that member, r restarts exited members now, q quits; with --netns, c then a
digit cuts that member off from the others (both ways, packets dropped) and h heals every cut.`

const REFRESH_MS = 1_000
const ALNUM = 'abcdefghijkmnpqrstuvwxyz23456789'

function randomWord (n: number): string {
  let s = ''
  for (let i = 0; i < n; i++) s += ALNUM[randomInt(ALNUM.length)]
  return s
}

export interface DevClusterCliOptions {
  init: DevClusterInit
  dataGiven: boolean
}

export function parseDevClusterArgs (argv: string[], env: Record<string, string | undefined> = process.env): DevClusterCliOptions | 'help' {
  const { options, positionals } = parseArgs(argv, {
    nodes: { type: 'string' },
    'lb-port': { type: 'string' },
    'lb-rate': { type: 'string' },
    config: { type: 'string' },
    data: { type: 'string' },
    'http-port': { type: 'string' },
    'cluster-port': { type: 'string' },
    'pesit-port': { type: 'string' },
    'base-ip': { type: 'string' },
    'log-level': { type: 'string' },
    'no-restart': { type: 'boolean' },
    prometheus: { type: 'boolean' },
    'prometheus-port': { type: 'string' },
    netns: { type: 'boolean' },
    'netns-subnet': { type: 'string' },
    help: { type: 'boolean' }
  }, {})
  if (options.help === true) return 'help'
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`)
  const nodes = intOption('nodes', options.nodes, 3, 1, 50)
  const lbPort = intOption('lb-port', options['lb-port'], DEFAULT_PESIT_PORT, 0, 65535)
  const lbBytesPerSecond = options['lb-rate'] === undefined ? undefined : intOption('lb-rate', options['lb-rate'], 0, 1, 1_000_000_000_000)
  const httpPort = intOption('http-port', options['http-port'], DEFAULT_HTTP_PORT, 1, 65535)
  const clusterPort = intOption('cluster-port', options['cluster-port'], DEFAULT_CLUSTER_PORT, 1, 65535)
  const demoPesitPort = intOption('pesit-port', options['pesit-port'], DEFAULT_PESIT_PORT, 1, 65535)
  if (httpPort === clusterPort) throw new UsageError('--http-port and --cluster-port must differ')
  const baseIp = typeof options['base-ip'] === 'string' ? options['base-ip'] : '127.0.0.10'
  const netns = options.netns === true || options['netns-subnet'] !== undefined
    ? { subnet: intOption('netns-subnet', options['netns-subnet'], 77, 1, 254) }
    : undefined
  if (netns !== undefined && typeof options['base-ip'] === 'string') throw new UsageError('--base-ip and --netns exclude each other')
  if (netns !== undefined && nodes > 200) throw new UsageError('--netns: at most 200 members')
  try {
    if (netns === undefined) memberIps(baseIp, nodes)
  } catch (err) {
    throw new UsageError(`--base-ip: ${(err as Error).message}`)
  }
  const logLevel = typeof options['log-level'] === 'string' ? options['log-level'] : 'info'
  const dataGiven = typeof options.data === 'string'
  const dataDir = typeof options.data === 'string' ? resolve(options.data) : mkdtempSync(resolve(tmpdir(), 'vectis-dev-'))
  return {
    dataGiven,
    init: {
      nodes, baseIp, dataDir, lbHost: '127.0.0.1', lbPort, httpPort, clusterPort, demoPesitPort,
      ...(lbBytesPerSecond !== undefined ? { lbBytesPerSecond } : {}),
      ...(typeof options.config === 'string' ? { configFile: resolve(options.config) } : {}),
      apiUser: env.VECTIS_API_USER ?? DEV_API_USER,
      apiPassword: env.VECTIS_API_PASSWORD ?? randomBytes(12).toString('base64url'),
      // PeSIT carries at most 8 bytes of password (PI 5).
      demoPassword: randomWord(8),
      clusterSecret: env.VECTIS_CLUSTER_SECRET ?? randomBytes(24).toString('base64url'),
      logLevel,
      restart: options['no-restart'] !== true,
      ...(options.prometheus === true || options['prometheus-port'] !== undefined
        ? { prometheusPort: intOption('prometheus-port', options['prometheus-port'], 9090, 1, 65535) }
        : {}),
      ...(netns !== undefined ? { netns } : {})
    }
  }
}

function exitText (m: DevMember, now: number): string {
  const e = m.lastExit
  const how = e === undefined ? 'exited' : e.signal !== null ? `killed (${e.signal})` : `exited (${e.code ?? '?'})`
  return m.restartAt === undefined ? how : `${how}, restart in ${Math.max(0, Math.ceil((m.restartAt - now) / 1000))}s`
}

/** The status table: one row per member, from its own status API, plus the label and the load balancer. */
export function formatDevTable (c: { members: DevMember[], labelled: string[], endpoint: string | undefined, routed: Map<string, number>, refused: number, lb: string }, now = Date.now()): string {
  const leaders = new Set(c.members.filter((m) => m.status?.isLeader === true).map((m) => m.name))
  const views = new Set(c.members.filter((m) => m.status?.viewId != null).map((m) => `${m.status!.viewId!.coordinator}#${m.status!.viewId!.id}`))
  const head = leaders.size === 1
    ? `leader: ${[...leaders][0]!}`
    : leaders.size === 0 ? 'leader: (none)' : `leader: SEVERAL ${[...leaders].join(',')}`
  const lines = [
    `${head}   views: ${views.size === 0 ? '-' : [...views].join(' ')}   label: ${c.labelled.length === 0 ? '(none)' : c.labelled.join(',')}   lb -> ${c.endpoint ?? '(no endpoint: refusing)'}`,
    `${'NAME'.padEnd(10)} ${'ADDRESS'.padEnd(15)} ${'PID'.padEnd(8)} ${'PROCESS'.padEnd(32)} ${'ROLE'.padEnd(8)} ${'EPOCH'.padEnd(6)} ${'VIEW'.padEnd(16)} ${'QUORUM'.padEnd(8)} ${'PESIT'.padEnd(8)} ${'LABEL'.padEnd(6)} ROUTED`
  ]
  for (const m of c.members) {
    const s = m.status
    const proc = m.state === 'exited' || m.state === 'stopped'
      ? exitText(m, now)
      : m.state === 'starting' && s === undefined ? `starting${m.restarts > 0 ? ` (restart ${m.restarts})` : ''}` : `${m.state}${m.restarts > 0 ? ` (restarts ${m.restarts})` : ''}`
    const role = s === undefined ? (m.state === 'running' ? 'no api' : '-') : s.isLeader ? 'LEADER' : s.viewId === null ? 'joining' : 'standby'
    const view = s?.viewId == null ? '-' : `${s.viewId.coordinator}#${s.viewId.id}/${s.members.length}`
    const quorum = s?.quorum === undefined ? '-' : `${s.quorum.present}/${s.quorum.required}${s.quorum.ok ? '' : '!'}`
    const pesit = s?.servers === undefined ? '-' : s.servers.some((x) => x.running) ? 'serving' : 'closed'
    lines.push([
      m.name.padEnd(10), m.ip.padEnd(15), String(m.pid ?? '-').padEnd(8), proc.padEnd(32), role.padEnd(8), String(s?.epoch ?? '-').padEnd(6),
      view.padEnd(16), quorum.padEnd(8), pesit.padEnd(8), (c.labelled.includes(m.name) ? 'yes' : '').padEnd(6), String(c.routed.get(m.name) ?? 0)
    ].join(' '))
  }
  lines.push(`load balancer ${c.lb}: ${[...c.routed.values()].reduce((a, b) => a + b, 0)} connections routed, ${c.refused} refused`)
  return lines.join('\n')
}

export async function runDevCluster (argv: string[], out: NodeJS.WriteStream = process.stdout): Promise<number> {
  const parsed = parseDevClusterArgs(argv)
  if (parsed === 'help') { out.write(`${USAGE}\n`); return 0 }
  const { init } = parsed
  // The dev cluster's own log (load balancer, emulator) goes to a file next to the members' logs.
  const logger = createLogger({ level: 'info', destination: pino.destination({ dest: resolve(init.dataDir, 'dev-cluster.log'), mkdir: true, sync: true }) })
  const cluster = new DevCluster({ logger }, init)
  const tty = out.isTTY === true
  const eventsKept: string[] = []
  const stamp = (): string => new Date().toISOString().slice(11, 19)
  // Once stopping, the table is no longer redrawn: events are printed as lines.
  let stopping = false
  // Events before the header is printed wait for it.
  let early: string[] | undefined = []
  const event = (text: string): void => { deliver(`${stamp()} ${text}`) }
  const deliver = (line: string): void => {
    if (early !== undefined) {
      early.push(line)
    } else if (tty && !stopping) {
      eventsKept.push(line)
      if (eventsKept.length > 8) eventsKept.shift()
    } else {
      out.write(`${line}\n`)
    }
  }
  cluster.events.on('member:started', (e) => { event(`${e.name} started pid ${e.pid}${e.restarts > 0 ? ` (restart ${e.restarts})` : ''}`) })
  cluster.events.on('member:exited', (e) => {
    const how = e.signal !== null ? `killed by ${e.signal}` : `exited with code ${e.code ?? '?'}`
    event(`${e.name} pid ${e.pid ?? '?'} ${how}${e.restartInMs === undefined ? '' : `; restarting in ${e.restartInMs} ms`}${e.reason === undefined ? '' : `: ${e.reason}`}`)
  })
  cluster.events.on('label:changed', (e) => { event(`label ${DEFAULT_LEADER_LABEL}=true ${e.leader ? 'set on' : 'removed from'} ${e.pod}${e.leader && e.epoch !== undefined ? ` (epoch ${e.epoch})` : ''}`) })
  cluster.events.on('label:conflict', (e) => { event(`WARNING: ${e.pods.length} pods labelled at once: ${e.pods.join(', ')}`) })
  cluster.events.on('lb:endpoint', (e) => { event(e.name === undefined ? 'lb endpoint: none (new connections refused)' : `lb endpoint: ${e.name} ${e.host}:${e.port}`) })

  // A Ctrl-C under `npm run` arrives twice at once (from the terminal and forwarded by npm): a second signal
  // means "kill now" only when it comes a moment after the first.
  let firstSignalAt: number | undefined
  let requestStop!: () => void
  const stopRequested = new Promise<void>((resolve) => { requestStop = resolve })
  const onSignal = (): void => {
    if (firstSignalAt === undefined) {
      firstSignalAt = Date.now()
      requestStop()
    } else if (Date.now() - firstSignalAt > 1_000) {
      cluster.killAll()
    }
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  // Installed before the start: a signal during start-up stops what started, once it has.
  try {
    await cluster.start()
  } catch (err) {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await cluster.stop()
    if (err instanceof ConfigError) throw new UsageError(`configuration error: ${err.message}`)
    throw err
  }

  const lbAddr = `${init.lbHost}:${cluster.lb.port ?? init.lbPort}`
  const vectisBin = fileURLToPath(new URL('../bin/vectis.js', import.meta.url))
  const target = cluster.targetPort
  const header = [
    `vectis dev-cluster: ${init.nodes} members, data in ${init.dataDir}${parsed.dataGiven ? '' : ' (temporary, kept after exit)'}`,
    `  dns server       ${cluster.dns.address}  answers ${DEV_DNS_NAME}`,
    `  kubernetes api   ${cluster.api.url}  namespace ${DEV_NAMESPACE}; kubeconfig ${cluster.kubeconfig}`,
    ...cluster.snapshot().map((m) => `  member ${m.name.padEnd(9)} ${m.ip}  http ${m.ip}:${init.httpPort}  cluster ${m.ip}:${init.clusterPort}  pesit ${m.ip}:${target ?? '-'}  log ${m.logFile}`),
    `  load balancer    ${lbAddr} -> pod labelled ${DEFAULT_LEADER_LABEL}=true, port ${target ?? '(no PeSIT server configured)'}${init.lbBytesPerSecond === undefined ? '' : `; at most ${init.lbBytesPerSecond} bytes/s per connection and direction`}`,
    `  shared dir       ${cluster.sharedDir}`,
    ...(cluster.prometheus !== undefined ? [`  prometheus       ${cluster.prometheus.url}  (scrapes every member every 2 s; the alert rules of deploy/ loaded)`] : []),
    `  api credentials  user ${init.apiUser} password ${init.apiPassword}   (vectis status --url http://${cluster.snapshot()[0]!.ip}:${init.httpPort} --user ${init.apiUser} --password ${init.apiPassword})`,
    `  web console      ${cluster.snapshot().map((m) => `http://${m.ip}:${init.httpPort}/`).join('  ')}  (any member; the api credentials)`,
    init.configFile === undefined
      ? `  demo partner     ${DEMO_PARTNER} password ${init.demoPassword}  server ${DEMO_SERVER}  file ${DEMO_FILE} -> ${resolve(cluster.sharedDir, DEMO_DIRECTORY)}`
      : `  configuration    ${init.configFile}`,
    init.configFile === undefined
      ? `push a file: node ${vectisBin} send --host ${init.lbHost} --port ${cluster.lb.port ?? init.lbPort} --partner ${DEMO_PARTNER} --password ${init.demoPassword} --server ${DEMO_SERVER} --file ${DEMO_FILE} PATH`
      : `push a file: node ${vectisBin} send --host ${init.lbHost} --port ${cluster.lb.port ?? init.lbPort} --partner ID --password PW --server SRVID --file FILEID PATH`,
    ...(cluster.lab !== undefined ? [`  namespaces       ${cluster.lab.hosts.map((h) => h.ns).join(' ')} (one per member) behind bridge ${cluster.lab.bridge} ${cluster.lab.gateway}`] : []),
    tty
      ? `keys: 0-9 kill -9 that member, r restart exited members, ${cluster.lab !== undefined ? 'c then 0-9 cut that member off, h heal, ' : ''}q or Ctrl-C stop`
      : 'Ctrl-C or SIGTERM stops everything'
  ].join('\n')
  out.write(`${header}\n\n`)
  const held = early
  early = undefined
  for (const line of held) deliver(line)

  let drawnLines = 0
  let lastTable = ''
  const render = (): void => {
    const table = formatDevTable({
      members: cluster.snapshot(),
      labelled: cluster.api.holders(DEFAULT_LEADER_LABEL, 'true', DEV_NAMESPACE),
      endpoint: ((): string | undefined => { const e = cluster.lb.current(); return e === undefined ? undefined : `${e.name ?? '?'} ${e.host}:${e.port}` })(),
      routed: cluster.lb.routed,
      refused: cluster.lb.refused,
      lb: lbAddr
    })
    if (tty) {
      const text = `${table}\n\nrecent events:\n${eventsKept.join('\n')}\n`
      // Back to the top of the previous drawing, clear it and everything below, draw again.
      out.write(`${drawnLines > 0 ? `\x1b[${drawnLines}F\x1b[J` : ''}${text}`)
      drawnLines = text.split('\n').length - 1
    } else if (table !== lastTable) {
      out.write(`${stamp()} status\n${table}\n`)
    }
    lastTable = table
  }
  render()
  const refresh = setInterval(render, REFRESH_MS)
  const offPoll = cluster.events.on('status:polled', () => { if (!tty) render() })

  const stdin = process.stdin
  // After `c`, the next digit names the member to cut off instead of the one to kill.
  let cutNext = false
  const cut = (i: number): void => {
    if (i >= init.nodes) { event(`no member ${i}`); return }
    const others = Array.from({ length: init.nodes }, (_, j) => j).filter((j) => j !== i)
    cluster.partition([[i], others]).then(() => { event(`vectis-${i} cut off from the others`) }, (err: unknown) => { event(`cut failed: ${(err as Error).message}`) })
  }
  const onKey = (buf: Buffer): void => {
    const k = buf.toString('utf8')
    const wasCut = cutNext
    cutNext = false
    if (k === '\u0003' || k === 'q') onSignal()
    else if (/^[0-9]$/.test(k) && wasCut) cut(Number(k))
    else if (/^[0-9]$/.test(k)) { if (!cluster.kill(Number(k))) event(`member ${k} is not running`) } else if (k === 'r') {
      for (const m of cluster.snapshot()) if (m.state === 'exited') cluster.restartNow(m.index)
    } else if (k === 'c' && cluster.lab !== undefined) {
      cutNext = true
    } else if (k === 'h' && cluster.lab !== undefined) {
      cluster.heal().then(() => { event('every cut healed') }, (err: unknown) => { event(`heal failed: ${(err as Error).message}`) })
    }
  }
  const interactive = tty && stdin.isTTY
  if (interactive) {
    stdin.setRawMode(true)
    stdin.on('data', onKey)
    stdin.resume()
  }
  try {
    await stopRequested
  } finally {
    clearInterval(refresh)
    offPoll()
    if (interactive) {
      stdin.off('data', onKey)
      stdin.setRawMode(false)
      stdin.pause()
    }
  }
  stopping = true
  out.write(`${stamp()} stopping: SIGTERM to the members (standbys first), SIGKILL after the bound\n`)
  await cluster.stop()
  process.off('SIGINT', onSignal)
  process.off('SIGTERM', onSignal)
  const left = cluster.snapshot().filter((m) => m.state !== 'stopped' && m.state !== 'exited')
  out.write(`${stamp()} stopped${left.length > 0 ? ` (still running: ${left.map((m) => m.name).join(', ')})` : ''}; data kept in ${init.dataDir}\n`)
  return left.length > 0 ? 1 : 0
}
