/**
 * The local HA cluster (`vectis dev-cluster`, docs/contract.md §1.5): everything Kubernetes would give the
 * daemons, on one machine and on loopback.
 *
 * - a DNS server answering for the headless Service name with every member's address (as a headless Service with
 *   `publishNotReadyAddresses: true` does);
 * - the Kubernetes API emulator holding one pod per member (`app=vectis`, its loopback IP) and a kubeconfig per
 *   member and one for the operator (any client of the pods API; kubectl needs discovery, which is not emulated);
 * - N `vectisd` processes, member i on `base + i` (127.0.0.10, .11, … by default) with the same ports, as pods
 *   have; their JSON logs go to `<data>/logs/<name>.log`. With `netns`, member i runs instead in a network
 *   namespace of its own at 10.S.0.(10+i), behind a bridge whose address 10.S.0.1 the DNS server and the API
 *   emulator listen on, so `partition()` can cut members off from each other as a network would (`netns.ts`);
 * - a TCP load balancer on 127.0.0.1 whose endpoint follows the pod labelled `vectis-leader=true`, driven by the
 *   emulator's change events the way a Service's endpoints follow its selector (and, with `lbBytesPerSecond`, slower
 *   than the network, to watch transfers in progress).
 *
 * It also plays the kubelet: a member process that exits on its own is reported to the API as a container
 * restart (restartCount + 1, which the other members' pod watch takes as a verified death) and is started again
 * after a back-off (1 s doubling to 30 s, reset after a minute of running), unless restarts are off.
 *
 * NOT emulated: readiness gating of the endpoint (a labelled pod whose process is dead stays the endpoint until
 * the label moves, as it would until the kubelet reports it), more than one Service port (the load balancer forwards
 * to the first PeSIT server of the configuration), node failures; network partitions only with `netns` (root,
 * iproute2 and iptables), between members: the load balancer, DNS, the API and Prometheus reach every member.
 * Not for production.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { isIPv4 } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DEMO, loadConfig, type PesitServerConfig } from '../daemon/config.js'
import type { Logger } from '../common/logger.js'
import type { Startable } from '../common/lifecycle.js'
import { TypedEmitter } from '../common/typed-events.js'
import { DEFAULT_LEADER_LABEL, DEFAULT_POD_SELECTOR, EPOCH_ANNOTATION } from '../k8s/defaults.js'
import { equalityLabels, parseLabelSelector } from '../k8s/label-selector.js'
import { HeadlessDnsServer } from './dns-server.js'
import { K8sApiEmulator } from './k8s-api-emulator.js'
import type { PodObject } from './k8s-api-objects.js'
import { TcpLoadBalancer } from './load-balancer.js'
import { NetnsLab } from './netns.js'
import { LocalPrometheus } from './prometheus.js'

export const DEV_NAMESPACE = 'vectis'
export const DEV_DNS_NAME = 'vectis-headless.vectis.svc.cluster.local'
export const DEV_API_USER = 'vectis'
export const DEMO_PARTNER = DEMO.partner
export const DEMO_SERVER = DEMO.server
export const DEMO_FILE = DEMO.file
export const DEMO_DIRECTORY = DEMO.directory
/** kubelet-like crash back-off: first restart after this, doubling per quick crash, capped. */
const RESTART_BASE_MS = 1_000
const RESTART_MAX_MS = 30_000
/** A member that ran this long before exiting starts its back-off from the base again. */
const RESTART_RESET_MS = 60_000
/** How long members get to stop gracefully (their own bound is 10 s) before SIGKILL. */
const DEFAULT_STOP_TIMEOUT_MS = 15_000

export interface DevClusterInit {
  nodes: number
  /** Address of member 0; member i gets the last octet + i. */
  baseIp: string
  /** Everything lives under it: members' data, shared directory, logs, kubeconfigs, the demo configuration. */
  dataDir: string
  lbHost: string
  /** 0: any free port. */
  lbPort: number
  /**
   * Slows the load balancer down: at most this many bytes a second per connection and direction (`--lb-rate`; the
   * load balancer's `bytesPerSecond`), so that a transfer through it can be watched in progress. Off by default.
   */
  lbBytesPerSecond?: number
  httpPort: number
  clusterPort: number
  /** `VECTIS_CONFIG` of every member; without it a demo configuration is written and used. */
  configFile?: string
  /** Port of the demo configuration's server (only without `configFile`). */
  demoPesitPort: number
  apiUser: string
  apiPassword: string
  demoPassword: string
  clusterSecret: string
  logLevel: string
  /** Restart members that exit on their own (as a kubelet does); default true. */
  restart: boolean
  stopTimeoutMs?: number
  /** Extra environment for every member (the dev cluster's own variables win). */
  env?: Record<string, string | undefined>
  /** argv of a member; default the `vectisd` next to this module. */
  memberCommand?: string[]
  /** Also run a real Prometheus (Debian's `prometheus`) on this port of 127.0.0.1, scraping every member. */
  prometheusPort?: number
  /**
   * Run each member in a network namespace of its own, on 10.`subnet`.0.0/24 (`baseIp` is then not used), so
   * `partition()` works. Needs root, iproute2 and iptables (`NetnsLab.unavailable()` says what is missing).
   */
  netns?: { subnet: number }
}

export interface ClusterStatusView {
  nodeName: string
  isLeader: boolean
  leader: string | null
  epoch: number
  viewId: { coordinator: string, id: number } | null
  quorum?: { required: number, present: number, ok: boolean }
  members: Array<{ name: string, address: string, isLeader: boolean }>
  servers?: Array<{ id: string, port: number, running: boolean }>
}

export type MemberProcessState = 'starting' | 'running' | 'exited' | 'stopping' | 'stopped'

export interface DevMember {
  index: number
  name: string
  ip: string
  dataDir: string
  logFile: string
  kubeconfig: string
  pid: number | undefined
  state: MemberProcessState
  restarts: number
  lastExit: { code: number | null, signal: NodeJS.Signals | null, at: number } | undefined
  /** Epoch ms of the next automatic restart, while exited. */
  restartAt: number | undefined
  status: ClusterStatusView | undefined
  statusError: string | undefined
}

export type DevClusterEvents = {
  'member:started': { name: string, pid: number, restarts: number }
  /** `reason`: the member's own one-line account on stderr (`vectisd: start failed: …`), when it left one. */
  'member:exited': { name: string, pid: number | undefined, code: number | null, signal: NodeJS.Signals | null, restartInMs: number | undefined, reason: string | undefined }
  /** A label change on a pod of the selector, from the emulator's history. */
  'label:changed': { pod: string, leader: boolean, epoch: string | undefined }
  'lb:endpoint': { name: string, host: string, port: number } | { name: undefined }
  /** More than one pod carries the leader label: a Service would spread connections over them. */
  'label:conflict': { pods: string[] }
  'status:polled': Record<string, never>
}

interface MemberRuntime extends DevMember {
  proc: ChildProcess | undefined
  startedAt: number
  restartTimer: NodeJS.Timeout | undefined
  exited: Promise<void> | undefined
}

/** The member IPs: `base + i` within the same /24. */
export function memberIps (baseIp: string, nodes: number): string[] {
  if (!isIPv4(baseIp)) throw new RangeError(`base IP ${baseIp} is not an IPv4 address`)
  const parts = baseIp.split('.').map(Number) as [number, number, number, number]
  if (parts[0] !== 127) throw new RangeError(`base IP ${baseIp} must be a loopback address (127.x.y.z)`)
  if (parts[3] < 2 || parts[3] + nodes - 1 > 254) throw new RangeError(`base IP ${baseIp} leaves no room for ${nodes} members (last octet from 2, up to 254)`)
  return Array.from({ length: nodes }, (_, i) => `${parts[0]}.${parts[1]}.${parts[2]}.${parts[3] + i}`)
}

/**
 * The demo configuration (docs/contract.md §1.5, YAML of §5): one server, partner DEMO, file DEMOFILE received
 * into `inbox/demo`.
 */
export function demoConfigYaml (opts: { port: number, password: string }): string {
  return [
    '# Written by vectis dev-cluster: the demo partner and file.',
    'servers:',
    `  - id: ${DEMO_SERVER}`,
    `    port: ${opts.port}`,
    '    maxConnections: 20',
    '    syncIntervalKb: 64',
    'partners:',
    `  - id: ${DEMO_PARTNER}`,
    `    password: "${opts.password}"`,
    '    access: both',
    'files:',
    `  - id: ${DEMO_FILE}`,
    '    direction: both',
    `    directory: ${DEMO_DIRECTORY}`,
    '    filenamePattern: "${partner}_${file}_${transferId}"',
    ''
  ].join('\n')
}

/** The last `vectisd: …` line of a member's log (its stderr shares the file): why it exited, in its words. */
function lastStderrLine (logFile: string): string | undefined {
  let fd: number | undefined
  try {
    fd = openSync(logFile, 'r')
    const size = fstatSync(fd).size
    const len = Math.min(size, 16 * 1024)
    const buf = Buffer.alloc(len)
    readSync(fd, buf, 0, len, size - len)
    return buf.toString('utf8').split('\n').filter((l) => l.startsWith('vectisd: ')).at(-1)
  } catch {
    return undefined
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}

/** The alert rules of deploy/, from the source tree or beside the built package (not in the image). */
function rulesManifest (): string | undefined {
  const up = fileURLToPath(import.meta.url).endsWith('.ts') ? '..' : '../..'
  const path = fileURLToPath(new URL(`${up}/deploy/components/monitoring/prometheusrule.yaml`, import.meta.url))
  return existsSync(path) ? path : undefined
}

function defaultMemberCommand (): string[] {
  const here = fileURLToPath(import.meta.url)
  if (here.endsWith('.ts')) {
    // Running from source (tsx): the member runs from source too.
    const root = fileURLToPath(new URL('..', import.meta.url))
    return [process.execPath, '--import', 'tsx', '--import', join(root, 'common', 'polyfill.ts'), join(root, 'bin', 'vectisd.ts')]
  }
  return [process.execPath, fileURLToPath(new URL('../bin/vectisd.js', import.meta.url))]
}

export class DevCluster implements Startable {
  readonly events = new TypedEmitter<DevClusterEvents>()
  readonly dns: HeadlessDnsServer
  readonly api: K8sApiEmulator
  readonly lb: TcpLoadBalancer
  /** With `prometheusPort`: the Prometheus scraping the members. */
  readonly prometheus: LocalPrometheus | undefined
  readonly sharedDir: string
  readonly logDir: string
  /** The operator's kubeconfig for the emulator (for a Kubernetes client or curl). */
  readonly kubeconfig: string
  readonly configFile: string
  /** The PeSIT servers of the configuration; the load balancer forwards to the first one's port. */
  servers: PesitServerConfig[] = []
  /** With `netns`: the namespaces the members run in. */
  readonly lab: NetnsLab | undefined
  private readonly members: MemberRuntime[]
  private readonly log: Logger
  private readonly command: string[]
  private readonly offs: Array<() => void> = []
  private state: 'idle' | 'starting' | 'started' | 'stopping' | 'stopped' = 'idle'
  private pollTimer: NodeJS.Timeout | undefined
  private polling = false
  private historySeen = 0
  private lastEndpoint: string | undefined
  /** Last resort if the dev cluster exits without stop() (an uncaught error): no member outlives it. */
  private readonly onProcessExit = (): void => { this.killAll() }

  constructor (components: { logger: Logger }, readonly init: DevClusterInit) {
    this.log = components.logger.child({ component: 'dev-cluster' })
    this.lab = init.netns === undefined ? undefined : new NetnsLab({ subnet: init.netns.subnet, hosts: init.nodes })
    const ips = this.lab?.hosts.map((h) => h.ip) ?? memberIps(init.baseIp, init.nodes)
    if (ips.includes(init.lbHost)) throw new RangeError(`the load balancer address ${init.lbHost} is also a member's address`)
    this.command = init.memberCommand ?? defaultMemberCommand()
    this.sharedDir = join(init.dataDir, 'shared')
    this.logDir = join(init.dataDir, 'logs')
    this.kubeconfig = join(init.dataDir, 'kubeconfig')
    this.configFile = init.configFile ?? join(init.dataDir, 'demo-config.yaml')
    this.members = ips.map((ip, i) => {
      const name = `vectis-${i}`
      return {
        index: i, name, ip,
        dataDir: join(init.dataDir, 'members', name),
        logFile: join(init.dataDir, 'logs', `${name}.log`),
        kubeconfig: join(init.dataDir, 'kube', `${name}.kubeconfig`),
        pid: undefined, state: 'stopped', restarts: 0, lastExit: undefined, restartAt: undefined,
        status: undefined, statusError: undefined, proc: undefined, startedAt: 0, restartTimer: undefined, exited: undefined
      }
    })
    // In namespaces, members reach this namespace only through the bridge's address.
    const serviceHost = this.lab?.gateway ?? '127.0.0.1'
    this.dns = new HeadlessDnsServer({ host: serviceHost, ttl: 5 })
    // No bearer tokens: kubectl will not send one over plain http, a curl one-liner should not need one, and the
    // emulator listens on loopback (or the lab's bridge) only. Each member's kubeconfig still names its own user.
    this.api = new K8sApiEmulator({ host: serviceHost, logger: components.logger })
    this.lb = new TcpLoadBalancer({ logger: components.logger }, { host: init.lbHost, port: init.lbPort, bytesPerSecond: init.lbBytesPerSecond })
    const rules = rulesManifest()
    this.prometheus = init.prometheusPort === undefined
      ? undefined
      : new LocalPrometheus({ logger: components.logger }, {
        dir: join(init.dataDir, 'prometheus'), host: '127.0.0.1', port: init.prometheusPort, namespace: DEV_NAMESPACE,
        targets: this.members.map((m) => ({ pod: m.name, address: `${m.ip}:${init.httpPort}` })),
        ...(rules !== undefined ? { rulesManifest: rules } : {})
      })
  }

  /** A snapshot of the members for display. */
  snapshot (): DevMember[] {
    return this.members.map(({ proc: _p, restartTimer: _t, exited: _e, startedAt: _s, ...m }) => ({ ...m, status: m.status === undefined ? undefined : structuredClone(m.status) }))
  }

  /** The PeSIT port the load balancer forwards to (undefined when the configuration has no server). */
  get targetPort (): number | undefined { return this.servers[0]?.port }

  /** The environment of member i: what a StatefulSet pod of the deploy manifests would get. */
  envOf (i: number): Record<string, string> {
    const m = this.members[i]
    if (m === undefined) throw new RangeError(`no member ${i}`)
    const inherited: Record<string, string> = {}
    for (const [k, v] of Object.entries({ ...process.env, ...this.init.env })) {
      // The parent's Kubernetes and pod identity must not leak into the members; its other VECTIS_* tuning may.
      if (v === undefined || k === 'KUBECONFIG' || k.startsWith('POD_') || k.startsWith('KUBERNETES_')) continue
      // A secret file would compete with the value set below.
      if (k === 'VECTIS_API_PASSWORD_FILE' || k === 'VECTIS_CLUSTER_SECRET_FILE') continue
      inherited[k] = v
    }
    return {
      ...inherited,
      VECTIS_CLUSTER_ENABLED: 'true',
      VECTIS_CLUSTER_SIZE: String(this.init.nodes),
      VECTIS_CLUSTER_SECRET: this.init.clusterSecret,
      POD_NAME: m.name,
      POD_NAMESPACE: DEV_NAMESPACE,
      POD_IP: m.ip,
      VECTIS_BIND_HOST: m.ip,
      VECTIS_CLUSTER_PORT: String(this.init.clusterPort),
      VECTIS_HTTP_PORT: String(this.init.httpPort),
      VECTIS_DISCOVERY_DNS: DEV_DNS_NAME,
      VECTIS_DNS_SERVERS: this.dns.address,
      VECTIS_K8S: 'on',
      KUBECONFIG: m.kubeconfig,
      VECTIS_POD_SELECTOR: DEFAULT_POD_SELECTOR,
      VECTIS_LEADER_LABEL: DEFAULT_LEADER_LABEL,
      VECTIS_DATA_DIR: m.dataDir,
      VECTIS_SHARED_DIR: this.sharedDir,
      VECTIS_CONFIG: this.configFile,
      VECTIS_API_USER: this.init.apiUser,
      VECTIS_API_PASSWORD: this.init.apiPassword,
      VECTIS_LOG_LEVEL: this.init.logLevel
    }
  }

  async start (): Promise<void> {
    if (this.state !== 'idle') return
    this.state = 'starting'
    process.on('exit', this.onProcessExit)
    try {
      const unavailable = this.lab === undefined ? undefined : NetnsLab.unavailable()
      if (unavailable !== undefined) throw new Error(`network namespaces: ${unavailable}`)
      await this.prepareFiles()
      // Validates the whole member configuration (the YAML included) before anything listens: a ConfigError here
      // names the key, and nothing has been started. The DNS address is not known yet: a placeholder stands in.
      this.servers = loadConfig({ ...this.envOf(0), VECTIS_DNS_SERVERS: '127.0.0.1:53' }).config.pesit.servers
      await this.lab?.build()
      await this.dns.start()
      this.dns.setRecords(DEV_DNS_NAME, this.members.map((m) => ({ ip: m.ip, port: this.init.clusterPort, hostname: m.name })))
      await this.api.start()
      await this.api.writeKubeconfig(this.kubeconfig, { namespace: DEV_NAMESPACE, user: 'operator' })
      for (const m of this.members) {
        this.api.createPod(DEV_NAMESPACE, m.name, {
          labels: { ...equalityLabels(parseLabelSelector(DEFAULT_POD_SELECTOR)), 'statefulset.kubernetes.io/pod-name': m.name },
          podIP: m.ip,
          nodeName: 'dev-node'
        })
        await this.api.writeKubeconfig(m.kubeconfig, { namespace: DEV_NAMESPACE, user: m.name })
      }
      this.offs.push(this.api.events.on('pod:changed', (e) => { if (e.labelsChanged) this.followLabels() }))
      try {
        await this.lb.start()
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        throw new Error(`load balancer ${this.init.lbHost}:${this.init.lbPort}: ${code === 'EADDRINUSE' ? 'address in use (choose another --lb-port)' : (err as Error).message}`, { cause: err })
      }
      this.followLabels()
      // Before the members: if it cannot start, nothing is left running (it scrapes targets that are not up yet).
      await this.prometheus?.start()
      for (const m of this.members) this.spawnMember(m)
      this.state = 'started'
      this.schedulePoll(0)
    } catch (err) {
      await this.teardown()
      this.state = 'stopped'
      throw err
    }
  }

  async stop (): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping' || this.state === 'idle') return
    this.state = 'stopping'
    clearTimeout(this.pollTimer)
    await this.stopMembers(this.init.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS)
    await this.teardown()
    this.state = 'stopped'
  }

  /** SIGKILL every member now (a second Ctrl-C); `stop()` still completes the rest. */
  killAll (): void {
    for (const m of this.members) m.proc?.kill('SIGKILL')
  }

  /** kill -9 of member i (demos); it is restarted like any crashed member. */
  kill (i: number): boolean {
    const m = this.members[i]
    if (m?.proc === undefined || m.state !== 'running') return false
    return m.proc.kill('SIGKILL')
  }

  /**
   * Cuts the members into groups that cannot reach each other (both ways, packets dropped silently); members not
   * listed form one more group. Needs `netns`.
   */
  async partition (groups: number[][]): Promise<void> {
    if (this.lab === undefined) throw new Error('partitions need the network namespace mode (--netns)')
    await this.lab.partition(groups)
    this.log.info({ groups, blocked: this.lab.blockedPairs }, 'members partitioned')
  }

  /** Removes every partition. */
  async heal (): Promise<void> {
    if (this.lab === undefined) return
    await this.lab.heal()
    this.log.info('partitions healed')
  }

  /** Starts member i now if it is not running (skips the back-off). */
  restartNow (i: number): boolean {
    const m = this.members[i]
    if (m === undefined || this.state !== 'started' || m.proc !== undefined) return false
    clearTimeout(m.restartTimer)
    m.restartTimer = undefined
    this.spawnMember(m)
    return true
  }

  private async prepareFiles (): Promise<void> {
    for (const dir of [this.init.dataDir, this.sharedDir, this.logDir, join(this.init.dataDir, 'kube'), ...this.members.map((m) => m.dataDir)]) {
      mkdirSync(dir, { recursive: true })
    }
    if (this.init.configFile === undefined) {
      await writeFile(this.configFile, demoConfigYaml({ port: this.init.demoPesitPort, password: this.init.demoPassword }), { mode: 0o600 })
    } else if (!existsSync(this.configFile)) {
      throw new Error(`--config ${this.configFile}: no such file`)
    }
  }

  private async teardown (): Promise<void> {
    process.off('exit', this.onProcessExit)
    for (const off of this.offs.splice(0)) off()
    for (const m of this.members) { clearTimeout(m.restartTimer); m.restartTimer = undefined }
    await this.prometheus?.stop()
    await this.lb.stop()
    await this.api.stop()
    await this.dns.stop()
    await this.lab?.destroy()
  }

  private spawnMember (m: MemberRuntime): void {
    const [cmd, ...args] = (this.lab?.wrap(m.index, this.command) ?? this.command) as [string, ...string[]]
    // The log file is opened for the child only: it inherits the descriptor, the dev cluster does not read it.
    const fd = openSync(m.logFile, 'a')
    let proc: ChildProcess
    try {
      // Its own process group: a Ctrl-C on the terminal reaches the dev cluster only, which then stops the
      // members in order with one SIGTERM each (a second signal would make a member exit at once).
      proc = spawn(cmd, args, { env: this.envOf(m.index), stdio: ['ignore', fd, fd], detached: true })
    } finally {
      closeSync(fd)
    }
    m.proc = proc
    m.pid = proc.pid
    m.state = 'starting'
    m.startedAt = Date.now()
    m.restartAt = undefined
    m.status = undefined
    m.statusError = undefined
    m.exited = new Promise<void>((resolve) => {
      proc.once('exit', (code, signal) => { this.onExit(m, proc, code, signal); resolve() })
    })
    proc.on('error', (err) => { this.log.error({ err, member: m.name }, 'member process error') })
    this.log.info({ member: m.name, pid: proc.pid, logFile: m.logFile }, 'member started')
    if (proc.pid !== undefined) this.events.emit('member:started', { name: m.name, pid: proc.pid, restarts: m.restarts })
  }

  private onExit (m: MemberRuntime, proc: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (m.proc !== proc) return
    m.proc = undefined
    m.lastExit = { code, signal, at: Date.now() }
    m.status = undefined
    const shuttingDown = this.state === 'stopping' || this.state === 'stopped'
    m.state = shuttingDown ? 'stopped' : 'exited'
    let restartInMs: number | undefined
    if (!shuttingDown) {
      // What the kubelet reports for a container that died: the other members' pod watch reads it as a verified
      // death of the process that ran there.
      try { this.api.restartContainer(DEV_NAMESPACE, m.name) } catch (err) { this.log.warn({ err, member: m.name }, 'could not record the restart') }
      if (this.init.restart) {
        const quick = Date.now() - m.startedAt < RESTART_RESET_MS
        restartInMs = quick ? Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** Math.min(m.restarts, 10)) : RESTART_BASE_MS
        m.restartAt = Date.now() + restartInMs
        m.restartTimer = setTimeout(() => {
          m.restartTimer = undefined
          if (this.state !== 'started' || m.proc !== undefined) return
          m.restarts++
          this.spawnMember(m)
        }, restartInMs)
      }
    }
    const reason = code !== 0 && code !== null ? lastStderrLine(m.logFile) : undefined
    this.log.info({ member: m.name, pid: proc.pid, code, signal, restartInMs, reason }, 'member exited')
    this.events.emit('member:exited', { name: m.name, pid: proc.pid, code, signal, restartInMs, reason })
  }

  /**
   * SIGTERM to the standbys first, then to the leader(s): a leader stopping while its standbys still run hands
   * over to one of them, which then stops too; stopping it last spares that round. Whatever still runs after the
   * bound gets SIGKILL.
   */
  private async stopMembers (timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    const running = this.members.filter((m) => m.proc !== undefined)
    const leaders = running.filter((m) => m.status?.isLeader === true)
    const standbys = running.filter((m) => !leaders.includes(m))
    const term = async (group: MemberRuntime[], until: number): Promise<void> => {
      for (const m of group) { m.state = 'stopping'; m.proc?.kill('SIGTERM') }
      await this.waitExits(group, until)
    }
    await term(standbys, Math.min(deadline, Date.now() + timeoutMs / 2))
    await term([...leaders, ...standbys.filter((m) => m.proc !== undefined)], deadline)
    const left = this.members.filter((m) => m.proc !== undefined)
    if (left.length > 0) {
      this.log.warn({ members: left.map((m) => m.name) }, 'members did not stop in time: SIGKILL')
      for (const m of left) m.proc?.kill('SIGKILL')
      await this.waitExits(left, Date.now() + 5_000)
    }
  }

  private async waitExits (group: MemberRuntime[], until: number): Promise<void> {
    const pending = group.filter((m) => m.proc !== undefined).map(async (m) => await m.exited)
    if (pending.length === 0) return
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      Promise.all(pending),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.max(0, until - Date.now())) })
    ])
    clearTimeout(timer)
  }

  /**
   * The Service's endpoint: the labelled pod of the selector, at the PeSIT port. Also reports every label change
   * from the emulator's history (which records each write, so none is missed between two events).
   */
  private followLabels (): void {
    const history = this.api.labelHistory()
    for (const h of history.slice(this.historySeen)) {
      if (h.namespace !== DEV_NAMESPACE) continue
      const was = h.before?.[DEFAULT_LEADER_LABEL] === 'true'
      const is = h.after?.[DEFAULT_LEADER_LABEL] === 'true'
      if (was !== is) {
        const pod = this.api.getPod(DEV_NAMESPACE, h.pod)
        this.events.emit('label:changed', { pod: h.pod, leader: is, epoch: pod?.metadata.annotations?.[EPOCH_ANNOTATION] })
      }
    }
    this.historySeen = history.length
    const labelled = this.api.listPods(DEV_NAMESPACE, `${DEFAULT_POD_SELECTOR},${DEFAULT_LEADER_LABEL}=true`)
      .filter((p): p is PodObject & { status: { podIP: string } } => p.status.podIP !== undefined)
      .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
    if (labelled.length > 1) this.events.emit('label:conflict', { pods: labelled.map((p) => p.metadata.name) })
    const target = labelled[0]
    const port = this.targetPort
    const key = target === undefined || port === undefined ? '' : `${target.metadata.name}@${target.status.podIP}:${port}`
    if (key === this.lastEndpoint) return
    this.lastEndpoint = key
    if (target === undefined || port === undefined) {
      this.lb.setEndpoint(undefined)
      this.events.emit('lb:endpoint', { name: undefined })
    } else {
      this.lb.setEndpoint({ host: target.status.podIP, port, name: target.metadata.name })
      this.events.emit('lb:endpoint', { name: target.metadata.name, host: target.status.podIP, port })
    }
  }

  // ---------------------------------------------------------------- status polling

  private schedulePoll (ms: number): void {
    clearTimeout(this.pollTimer)
    if (this.state !== 'started' && this.state !== 'starting') return
    this.pollTimer = setTimeout(() => { void this.poll() }, ms)
  }

  private async poll (): Promise<void> {
    if (this.polling) return
    this.polling = true
    try {
      const auth = `Basic ${Buffer.from(`${this.init.apiUser}:${this.init.apiPassword}`).toString('base64')}`
      await Promise.all(this.members.map(async (m) => {
        if (m.proc === undefined) return
        const proc = m.proc
        try {
          const res = await fetch(`http://${m.ip}:${this.init.httpPort}/api/cluster/status`, { headers: { authorization: auth }, signal: AbortSignal.timeout(800) })
          const body = await res.text()
          if (m.proc !== proc) return
          if (!res.ok) throw new Error(`HTTP ${res.status}`)
          m.status = JSON.parse(body) as ClusterStatusView
          m.statusError = undefined
          if (m.state === 'starting') m.state = 'running'
        } catch (err) {
          if (m.proc !== proc) return
          m.status = undefined
          m.statusError = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err)
        }
      }))
      this.events.emit('status:polled', {})
    } finally {
      this.polling = false
      this.schedulePoll(1_000)
    }
  }
}
