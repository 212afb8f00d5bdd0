/**
 * The one typed configuration of `vectisd`: every environment variable of docs/contract.md §2 and the YAML file of
 * docs/contract.md §5, parsed and validated before anything starts. A bad value throws `ConfigError` naming the
 * variable or key, the value and what was expected; `vectisd` turns it into one line on stderr and exit code 2.
 * Nothing here has side effects except reading the files that variables point at (`VECTIS_CONFIG`, `*_FILE`).
 */
import { readFileSync } from 'node:fs'
import { hostname, networkInterfaces } from 'node:os'
import { resolve } from 'node:path'
import { isIP } from 'node:net'
import { parse as parseYaml, YAMLParseError } from 'yaml'
import { ConfigError } from '../common/config-error.js'
import type { TlsFiles } from '../common/tls-files.js'
import { cronError } from '../common/cron.js'
import { DEFAULT_BACKUP_KEEP } from '../store/backups.js'
import type { PesitConfig } from '../transfer/config-types.js'
import { DEFAULT_FILENAME_PATTERN, DEFAULT_SERVER_ID, defaultPesitConfig, parsePesitConfig } from './pesit-config.js'
import type { K8sMode } from '../k8s/parts.js'
import { DEFAULT_LEADER_LABEL, DEFAULT_POD_SELECTOR } from '../k8s/defaults.js'
import { DEFAULT_CLUSTER_NAME, DEFAULT_CLUSTER_PORT, DEFAULT_FAILURE_TIMEOUT_MS, DEFAULT_HANDOVER_DRAIN_MS, DEFAULT_HEARTBEAT_MS, timingsError } from '../cluster/defaults.js'
import { labelKeyError, validatePodSelector } from '../k8s/label-selector.js'
import type { QuorumMode } from '../cluster/membership/config.js'
import { FAULT_POINTS, type FaultPoint } from '../transfer/fault-injection.js'

// ---- embedded defaults (docs/contract.md §2.2) -----------------------------------------------------------------
// The cluster's own (name, port, heartbeat, failure timeout, hand-over drain) are in cluster/defaults.ts, the
// Kubernetes ones (selector, leader label) in k8s/defaults.ts.

export const DEFAULT_HTTP_PORT = 8080
// The YAML's (servers, files) are in daemon/pesit-config.ts, with its parser.
export {
  DEFAULT_PESIT_PORT, DEFAULT_FILENAME_PATTERN, DEFAULT_SERVER_ID, DEFAULT_MAX_CONNECTIONS, DEFAULT_SYNC_INTERVAL_KB,
  DEFAULT_MAX_ENTITY_SIZE, parsePesitConfig, defaultPesitConfig
} from './pesit-config.js'
export const DEFAULT_API_USER = 'vectis'
export const DEFAULT_DATA_DIR = './data'
export const DEFAULT_JOURNAL_RETENTION_DAYS = 30
/** Bound on a graceful stop; past it the daemon exits anyway (a second signal exits at once). */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export type LogLevel = typeof LOG_LEVELS[number]

// ---- shapes ----------------------------------------------------------------------------------------------------

// The PeSIT part owns the shape of its configuration; this module parses the YAML into it.
export type { PesitServerConfig, PartnerAccess, FileDirection, PesitConfig, PartnerOutbound, ScheduleConfig } from '../transfer/config-types.js'

export interface VectisConfig {
  clusterEnabled: boolean
  clusterName: string
  podName: string
  podNamespace: string
  podIp: string
  bindHost: string
  clusterPort: number
  httpPort: number
  /** both VECTIS_HTTP_TLS_* set: the HTTP port serves HTTPS with these files */
  httpTls: TlsFiles | undefined
  discoveryDns: string | undefined
  discoveryDnsSrv: boolean
  /** `ip:port` resolvers; undefined = the system's. */
  dnsServers: string[] | undefined
  /** `host:port` cluster ports to contact. */
  seeds: string[]
  clusterSize: number | undefined
  quorum: QuorumMode
  forceNewCluster: boolean
  heartbeatMs: number
  failureTimeoutMs: number
  handoverDrainMs: number
  clusterSecret: string | undefined
  k8sMode: K8sMode
  /** The resolved answer to "is the Kubernetes part on?" (auto: in a pod, or KUBECONFIG set). */
  k8sEnabled: boolean
  kubeconfig: string | undefined
  leaderLabel: string
  podSelector: string
  apiUser: string
  apiPassword: string
  /** True when no password was configured and one was generated (logged once at start-up). */
  apiPasswordGenerated: boolean
  dataDir: string
  sharedDir: string
  replication: 'async' | 'sync'
  /** VECTIS_FAULT_INJECTION: points where this process kills itself, for the tests of crashes at the worst moment */
  faults: FaultPoint[]
  configFile: string | undefined
  logLevel: LogLevel
  journalRetentionDays: number
  /** `VECTIS_BACKUP_SCHEDULE` (cron, UTC): the leader's backups; none when unset. */
  backupSchedule?: string
  /** `VECTIS_BACKUP_KEEP`. */
  backupKeep: number
  shutdownTimeoutMs: number
  /** the YAML (or the embedded default), `schedules` always present (empty without the key) */
  pesit: Required<PesitConfig>
  /** the demo partner of a standalone daemon started without VECTIS_CONFIG (docs/contract.md §5.1) */
  demo: DemoSetup | undefined
}

export interface DemoSetup {
  partner: string
  password: string
  /** the demo file's directory, where the sample file to pull is written at start */
  outbox: string
  sample: string
}

/** Every variable this module reads; anything else starting with `VECTIS_` is warned about. */
export const KNOWN_VARIABLES = [
  'VECTIS_CLUSTER_ENABLED', 'VECTIS_CLUSTER_NAME', 'VECTIS_BIND_HOST', 'VECTIS_CLUSTER_PORT', 'VECTIS_HTTP_PORT',
  'VECTIS_DISCOVERY_DNS', 'VECTIS_DISCOVERY_DNS_SRV', 'VECTIS_DNS_SERVERS', 'VECTIS_SEEDS', 'VECTIS_CLUSTER_SIZE',
  'VECTIS_QUORUM', 'VECTIS_FORCE_NEW_CLUSTER', 'VECTIS_HEARTBEAT_MS', 'VECTIS_FAILURE_TIMEOUT_MS',
  'VECTIS_HANDOVER_DRAIN_MS', 'VECTIS_CLUSTER_SECRET', 'VECTIS_CLUSTER_SECRET_FILE', 'VECTIS_K8S',
  'VECTIS_LEADER_LABEL', 'VECTIS_POD_SELECTOR', 'VECTIS_API_USER', 'VECTIS_API_PASSWORD', 'VECTIS_API_PASSWORD_FILE',
  'VECTIS_DATA_DIR', 'VECTIS_SHARED_DIR', 'VECTIS_REPLICATION', 'VECTIS_CONFIG', 'VECTIS_LOG_LEVEL',
  'VECTIS_JOURNAL_RETENTION_DAYS', 'VECTIS_SHUTDOWN_TIMEOUT_MS', 'VECTIS_HTTP_TLS_CERT_FILE', 'VECTIS_HTTP_TLS_KEY_FILE',
  'VECTIS_FAULT_INJECTION', 'VECTIS_BACKUP_SCHEDULE', 'VECTIS_BACKUP_KEEP'
] as const

export interface LoadResult {
  config: VectisConfig
  /** Non-fatal remarks for the log (unknown variables, risky choices). */
  warnings: string[]
}

type Env = Record<string, string | undefined>

// ---- scalar parsers --------------------------------------------------------------------------------------------

function present (env: Env, key: string): string | undefined {
  const v = env[key]
  return v === undefined || v.trim() === '' ? undefined : v.trim()
}

function parseBool (env: Env, key: string, def: boolean): boolean {
  const v = present(env, key)
  if (v === undefined) return def
  const l = v.toLowerCase()
  if (['true', '1', 'yes', 'on'].includes(l)) return true
  if (['false', '0', 'no', 'off'].includes(l)) return false
  throw new ConfigError(key, v, 'expected true or false')
}

function parseIntIn (key: string, v: string, min: number, max: number, what = 'an integer'): number {
  if (!/^-?\d+$/.test(v)) throw new ConfigError(key, v, `expected ${what} from ${min} to ${max}`)
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new ConfigError(key, v, `expected ${what} from ${min} to ${max}`)
  return n
}

function envInt (env: Env, key: string, def: number, min: number, max: number, what?: string): number {
  const v = present(env, key)
  return v === undefined ? def : parseIntIn(key, v, min, max, what)
}

function envPort (env: Env, key: string, def: number): number {
  return envInt(env, key, def, 1, 65535, 'a TCP port')
}

function envEnum<T extends string> (env: Env, key: string, allowed: readonly T[], def: T): T {
  const v = present(env, key)
  if (v === undefined) return def
  if (!(allowed as readonly string[]).includes(v)) throw new ConfigError(key, v, `expected one of ${allowed.join(', ')}`)
  return v as T
}

function hostPortList (key: string, v: string, requireIp: boolean): string[] {
  const out: string[] = []
  for (const raw of v.split(',')) {
    const item = raw.trim()
    if (item === '') continue
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d+)$/.exec(item)
    if (m === null) throw new ConfigError(key, v, `expected a comma list of ${requireIp ? 'ip' : 'host'}:port, got "${item}"`)
    const host = m[1]!.replace(/^\[|\]$/g, '')
    if (requireIp && isIP(host) === 0) throw new ConfigError(key, v, `expected a comma list of ip:port, "${host}" is not an IP address`)
    parseIntIn(key, m[2]!, 1, 65535, 'a port')
    out.push(item)
  }
  if (out.length === 0) throw new ConfigError(key, v, 'expected at least one entry')
  return out
}

function readSecret (env: Env, key: string): string | undefined {
  const direct = env[key]
  const fileKey = `${key}_FILE`
  const file = present(env, fileKey)
  if (direct !== undefined && direct !== '' && file !== undefined) {
    throw new ConfigError(key, undefined, `set either ${key} or ${fileKey}, not both`)
  }
  if (file !== undefined) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new ConfigError(fileKey, file, `expected a readable file (${(err as Error).message})`, { cause: err })
    }
    const secret = text.replace(/\r?\n$/, '')
    if (secret === '') throw new ConfigError(fileKey, file, 'the file is empty')
    return secret
  }
  return direct === undefined || direct === '' ? undefined : direct
}

function firstNonInternalIPv4 (): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family === 'IPv4' && !a.internal) return a.address
    }
  }
  return '127.0.0.1'
}

function inKubernetesPod (env: Env): boolean {
  return present(env, 'KUBERNETES_SERVICE_HOST') !== undefined
}

/** The demo partner and file (docs/contract.md §5.1): the same in a standalone daemon and in `vectis dev-cluster`. */
export const DEMO = Object.freeze({ server: DEFAULT_SERVER_ID, partner: 'DEMO', file: 'DEMOFILE', directory: 'inbox/demo', sample: 'hello.txt' })

function demoSetup (sharedDir: string, password: string): DemoSetup {
  return { partner: DEMO.partner, password, outbox: resolve(sharedDir, DEMO.directory), sample: DEMO.sample }
}

/** The embedded default plus the demo partner: DEMOFILE both receives and offers files in inbox/demo. */
function demoPesitConfig (demo: DemoSetup): Required<PesitConfig> {
  const c = defaultPesitConfig()
  c.partners.push({ id: demo.partner, password: demo.password, access: 'both' })
  c.files.push({ id: DEMO.file, direction: 'both', directory: demo.outbox, filenamePattern: DEFAULT_FILENAME_PATTERN, afterSend: { action: 'keep' } })
  return c
}

// ---- the whole configuration -----------------------------------------------------------------------------------

export interface LoadOptions {
  cwd?: string
  /** Injected for tests: a deterministic generated password (the API's, and the first 8 characters for the demo partner). */
  generatePassword?: () => string
  readFile?: (path: string) => string
}

export function loadConfig (env: Env = process.env, opts: LoadOptions = {}): LoadResult {
  const warnings: string[] = []
  const cwd = opts.cwd ?? process.cwd()
  const readFile = opts.readFile ?? ((p: string) => readFileSync(p, 'utf8'))

  for (const k of Object.keys(env)) {
    if (k.startsWith('VECTIS_') && !(KNOWN_VARIABLES as readonly string[]).includes(k)) warnings.push(`unknown variable ${k} ignored`)
  }

  const clusterEnabled = parseBool(env, 'VECTIS_CLUSTER_ENABLED', false)
  const clusterName = present(env, 'VECTIS_CLUSTER_NAME') ?? DEFAULT_CLUSTER_NAME
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(clusterName)) {
    throw new ConfigError('VECTIS_CLUSTER_NAME', clusterName, 'expected 1 to 63 letters, digits, . _ or -, starting with a letter or digit')
  }
  const podName = present(env, 'POD_NAME') ?? hostname()
  const podNamespace = present(env, 'POD_NAMESPACE') ?? 'default'
  const podIp = present(env, 'POD_IP') ?? firstNonInternalIPv4()
  if (isIP(podIp) === 0) throw new ConfigError('POD_IP', podIp, 'expected an IP address')
  const bindHost = present(env, 'VECTIS_BIND_HOST') ?? '0.0.0.0'
  if (isIP(bindHost) === 0) throw new ConfigError('VECTIS_BIND_HOST', bindHost, 'expected an IP address')

  const clusterPort = envPort(env, 'VECTIS_CLUSTER_PORT', DEFAULT_CLUSTER_PORT)
  const httpPort = envPort(env, 'VECTIS_HTTP_PORT', DEFAULT_HTTP_PORT)
  if (httpPort === clusterPort) throw new ConfigError('VECTIS_HTTP_PORT', String(httpPort), 'must differ from VECTIS_CLUSTER_PORT')
  const httpCert = present(env, 'VECTIS_HTTP_TLS_CERT_FILE')
  const httpKey = present(env, 'VECTIS_HTTP_TLS_KEY_FILE')
  if ((httpCert === undefined) !== (httpKey === undefined)) {
    throw new ConfigError(httpCert === undefined ? 'VECTIS_HTTP_TLS_CERT_FILE' : 'VECTIS_HTTP_TLS_KEY_FILE', undefined, 'set both VECTIS_HTTP_TLS_CERT_FILE and VECTIS_HTTP_TLS_KEY_FILE, or neither')
  }
  const httpTls = httpCert === undefined || httpKey === undefined ? undefined : { certFile: httpCert, keyFile: httpKey }

  const discoveryDns = present(env, 'VECTIS_DISCOVERY_DNS')
  if (discoveryDns !== undefined && !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\.?$/.test(discoveryDns)) {
    throw new ConfigError('VECTIS_DISCOVERY_DNS', discoveryDns, 'expected a DNS name')
  }
  const discoveryDnsSrv = parseBool(env, 'VECTIS_DISCOVERY_DNS_SRV', false)
  const dnsRaw = present(env, 'VECTIS_DNS_SERVERS')
  const dnsServers = dnsRaw === undefined ? undefined : hostPortList('VECTIS_DNS_SERVERS', dnsRaw, true)
  const seedsRaw = present(env, 'VECTIS_SEEDS')
  const seeds = seedsRaw === undefined ? [] : hostPortList('VECTIS_SEEDS', seedsRaw, false)

  const sizeRaw = present(env, 'VECTIS_CLUSTER_SIZE')
  const clusterSize = sizeRaw === undefined ? undefined : parseIntIn('VECTIS_CLUSTER_SIZE', sizeRaw, 1, 1000)
  const quorum = envEnum(env, 'VECTIS_QUORUM', ['majority', 'none'] as const, 'majority')
  if (clusterEnabled && quorum === 'majority' && clusterSize === undefined) {
    throw new ConfigError('VECTIS_CLUSTER_SIZE', undefined, 'required when VECTIS_CLUSTER_ENABLED=true and VECTIS_QUORUM=majority: the expected number of replicas')
  }
  if (clusterEnabled && quorum === 'none') warnings.push('VECTIS_QUORUM=none: every partition elects its own leader (split brain possible); use it only when you accept that')
  if (clusterEnabled && discoveryDns === undefined && seeds.length === 0) {
    warnings.push('clustering is enabled but neither VECTIS_DISCOVERY_DNS nor VECTIS_SEEDS is set: this member can only be joined by others')
  }
  const forceNewCluster = parseBool(env, 'VECTIS_FORCE_NEW_CLUSTER', false)

  const heartbeatMs = envInt(env, 'VECTIS_HEARTBEAT_MS', DEFAULT_HEARTBEAT_MS, 10, 60_000, 'milliseconds')
  const failureTimeoutMs = envInt(env, 'VECTIS_FAILURE_TIMEOUT_MS', DEFAULT_FAILURE_TIMEOUT_MS, 30, 600_000, 'milliseconds')
  const timings = timingsError(heartbeatMs, failureTimeoutMs)
  if (timings !== undefined) throw new ConfigError('VECTIS_FAILURE_TIMEOUT_MS', String(failureTimeoutMs), timings)
  const handoverDrainMs = envInt(env, 'VECTIS_HANDOVER_DRAIN_MS', DEFAULT_HANDOVER_DRAIN_MS, 0, 600_000, 'milliseconds')
  const clusterSecret = readSecret(env, 'VECTIS_CLUSTER_SECRET')
  if (clusterSecret !== undefined && clusterSecret.length < 16) {
    throw new ConfigError('VECTIS_CLUSTER_SECRET', undefined, 'expected at least 16 characters')
  }

  const k8sMode = envEnum(env, 'VECTIS_K8S', ['on', 'off', 'auto'] as const, 'auto')
  const kubeconfig = present(env, 'KUBECONFIG')
  const k8sEnabled = k8sMode === 'on' || (k8sMode === 'auto' && (inKubernetesPod(env) || kubeconfig !== undefined))
  const leaderLabel = present(env, 'VECTIS_LEADER_LABEL') ?? DEFAULT_LEADER_LABEL
  const leaderLabelError = labelKeyError(leaderLabel)
  if (leaderLabelError !== undefined) throw new ConfigError('VECTIS_LEADER_LABEL', leaderLabel, `expected a Kubernetes label key: ${leaderLabelError}`)
  const podSelector = present(env, 'VECTIS_POD_SELECTOR') ?? DEFAULT_POD_SELECTOR
  try {
    validatePodSelector(podSelector, leaderLabel)
  } catch (err) {
    throw new ConfigError('VECTIS_POD_SELECTOR', podSelector, (err as Error).message, { cause: err })
  }

  const apiUser = present(env, 'VECTIS_API_USER') ?? DEFAULT_API_USER
  if (apiUser.includes(':')) throw new ConfigError('VECTIS_API_USER', apiUser, 'expected a user name without ":"')
  const configuredPassword = readSecret(env, 'VECTIS_API_PASSWORD')
  const apiPasswordGenerated = configuredPassword === undefined
  const apiPassword = configuredPassword ?? (opts.generatePassword ?? defaultPasswordGenerator)()

  const dataDir = resolve(cwd, present(env, 'VECTIS_DATA_DIR') ?? DEFAULT_DATA_DIR)
  const sharedRaw = present(env, 'VECTIS_SHARED_DIR')
  const sharedDir = sharedRaw === undefined ? resolve(dataDir, 'shared') : resolve(cwd, sharedRaw)
  const replication = envEnum(env, 'VECTIS_REPLICATION', ['async', 'sync'] as const, 'async')
  const logLevel = envEnum(env, 'VECTIS_LOG_LEVEL', LOG_LEVELS, 'info')
  const journalRetentionDays = envInt(env, 'VECTIS_JOURNAL_RETENTION_DAYS', DEFAULT_JOURNAL_RETENTION_DAYS, 1, 36_500, 'days')
  const shutdownTimeoutMs = envInt(env, 'VECTIS_SHUTDOWN_TIMEOUT_MS', DEFAULT_SHUTDOWN_TIMEOUT_MS, 100, 3_600_000, 'milliseconds')
  const backupSchedule = present(env, 'VECTIS_BACKUP_SCHEDULE')?.trim()
  const scheduleError = backupSchedule === undefined ? undefined : cronError(backupSchedule)
  if (scheduleError !== undefined) throw new ConfigError('VECTIS_BACKUP_SCHEDULE', backupSchedule, `expected a cron expression, UTC: ${scheduleError}`)
  const backupKeep = envInt(env, 'VECTIS_BACKUP_KEEP', DEFAULT_BACKUP_KEEP, 1, 10_000, 'backups')

  const configFile = present(env, 'VECTIS_CONFIG')
  let pesit = defaultPesitConfig()
  let demo: DemoSetup | undefined
  if (configFile === undefined && !clusterEnabled && !k8sEnabled && !inKubernetesPod(env)) {
    // A newcomer's first `npm start`: something to push to and pull from at once. Never in a cluster or a pod.
    demo = demoSetup(sharedDir, ((opts.generatePassword ?? defaultPasswordGenerator)()).replace(/[^A-Za-z0-9]/g, '').slice(0, 8).padEnd(8, '0'))
    pesit = demoPesitConfig(demo)
  }
  if (configFile !== undefined) {
    const path = resolve(cwd, configFile)
    let text: string
    try {
      text = readFile(path)
    } catch (err) {
      throw new ConfigError('VECTIS_CONFIG', configFile, `expected a readable YAML file (${(err as Error).message})`, { cause: err })
    }
    let doc: unknown
    try {
      doc = parseYaml(text, { prettyErrors: false, uniqueKeys: true })
    } catch (err) {
      const where = err instanceof YAMLParseError && err.linePos !== undefined ? ` at line ${err.linePos[0].line}` : ''
      throw new ConfigError('VECTIS_CONFIG', configFile, `expected valid YAML (${(err as Error).message.split('\n')[0]}${where})`, { cause: err })
    }
    pesit = parsePesitConfig(doc, sharedDir, readFile)
  }
  for (const s of pesit.servers) {
    if (s.port === httpPort || s.port === clusterPort) {
      throw new ConfigError(`servers[${pesit.servers.indexOf(s)}].port`, String(s.port), 'must differ from VECTIS_HTTP_PORT and VECTIS_CLUSTER_PORT')
    }
  }
  if (pesit.servers.length > 0 && pesit.partners.length === 0) warnings.push('no PeSIT partners are configured: every CONNECT will be refused')
  const faults: FaultPoint[] = []
  for (const p of (present(env, 'VECTIS_FAULT_INJECTION') ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '')) {
    if (!(FAULT_POINTS as readonly string[]).includes(p)) throw new ConfigError('VECTIS_FAULT_INJECTION', p, `expected a comma-separated list of ${FAULT_POINTS.join(', ')}`)
    faults.push(p as FaultPoint)
  }
  if (faults.length > 0) warnings.push(`VECTIS_FAULT_INJECTION=${faults.join(',')}: this process kills itself at these points (tests only)`)

  return {
    config: {
      clusterEnabled, clusterName, podName, podNamespace, podIp, bindHost, clusterPort, httpPort, httpTls, discoveryDns,
      discoveryDnsSrv, dnsServers, seeds, clusterSize, quorum, forceNewCluster, heartbeatMs, failureTimeoutMs,
      handoverDrainMs, clusterSecret, k8sMode, k8sEnabled, kubeconfig, leaderLabel, podSelector, apiUser, apiPassword,
      apiPasswordGenerated, dataDir, sharedDir, replication, configFile, logLevel, journalRetentionDays,
      shutdownTimeoutMs, pesit, demo, faults, ...(backupSchedule !== undefined ? { backupSchedule } : {}), backupKeep
    },
    warnings
  }
}

function defaultPasswordGenerator (): string {
  // 18 random bytes → 24 URL-safe characters: ~144 bits.
  return globalThis.crypto.getRandomValues(Buffer.alloc(18)).toString('base64url')
}
