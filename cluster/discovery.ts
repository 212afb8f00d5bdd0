/**
 * Finds the cluster ports of the other members: A (or SRV) records of the headless Service name, plus static
 * seeds, re-resolved for as long as the member runs. Emits `peers:changed` with the sorted set of "ip:port"
 * whenever it changes; this member's own addresses are never in it.
 *
 * Re-resolution is fast (every ~300 ms, jittered) until the membership layer says the member joined a view,
 * then slow (~5 s): after joining, DNS only serves to notice members outside our view (a partition healing, a
 * cold start that produced two views) so they can be merged.
 *
 * NOT guaranteed: that an address in the set is a live member, or a member of this cluster (DNS may be stale by up
 * to its TTL plus resolver caching, ~30 s in Kubernetes); the transport and the membership layer decide that.
 * A DNS failure never empties the set: the last answer is kept, and the error is logged at debug level with a
 * growing retry delay. An empty answer (NXDOMAIN / no records) does replace it.
 */
import { Resolver, promises as dnsPromises, type SrvRecord } from 'node:dns'
import { isIP } from 'node:net'
import type { Logger } from '../common/logger.js'
import type { Startable } from '../common/lifecycle.js'
import { TypedEmitter } from '../common/typed-events.js'
import { jitter } from '../common/clock.js'
import { ClusterConfigError } from './errors.js'

export const DEFAULT_FAST_INTERVAL_MS = 300
export const DEFAULT_SLOW_INTERVAL_MS = 5000
export const DEFAULT_JITTER = 0.3
/** Retry delays after DNS errors double from the current interval up to this. */
export const DEFAULT_MAX_BACKOFF_MS = 10_000
/** Per-query timeout of the resolver (c-ares retries once more). */
export const DEFAULT_DNS_TIMEOUT_MS = 1000

/** The DNS calls discovery needs; `node:dns` by default, replaceable in tests. */
export interface DnsLookup {
  /** IPv4 addresses of `name`; [] when the name has no such record. */
  resolve4(name: string): Promise<string[]>
  resolveSrv(name: string): Promise<SrvRecord[]>
}

export interface DiscoveryTimers {
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

export interface DiscoveryComponents {
  logger: Logger
  /** Defaults to `node:dns` (a `Resolver` on `dnsServers` when given, else the system's `getaddrinfo`). */
  dns?: DnsLookup
  timers?: DiscoveryTimers
  random?: () => number
}

export interface DiscoveryInit {
  /** `VECTIS_DISCOVERY_DNS`: the headless Service name. */
  dnsName?: string
  /** `VECTIS_DISCOVERY_DNS_SRV`: resolve SRV records (their ports) instead of A records. */
  srv?: boolean
  /** Port to pair with A records (`VECTIS_CLUSTER_PORT`, the same on every member). */
  port: number
  /** `VECTIS_DNS_SERVERS`: "ip:port" resolvers used instead of the system's. */
  dnsServers?: string[]
  /** `VECTIS_SEEDS`: "host:port" cluster ports; host names are resolved at every round. */
  seeds?: string[]
  /** This member's own "ip:port" (advertised address, and any other it listens on): never reported. */
  selfAddresses: string[]
  fastIntervalMs?: number
  slowIntervalMs?: number
  /** ±fraction of jitter applied to every delay. */
  jitter?: number
  maxBackoffMs?: number
  dnsTimeoutMs?: number
}

export interface PeersChangedEvent {
  /** Sorted "ip:port" (IPv6 in brackets). */
  peers: string[]
}

export type DiscoveryEvents = {
  'peers:changed': PeersChangedEvent
}

interface Seed { host: string, port: number }

export class Discovery implements Startable {
  readonly events = new TypedEmitter<DiscoveryEvents>()
  private readonly log: Logger
  private readonly dns: DnsLookup
  private readonly timers: DiscoveryTimers
  private readonly random: () => number
  private readonly cfg: Required<Omit<DiscoveryInit, 'dnsName' | 'dnsServers' | 'seeds' | 'selfAddresses'>> & { dnsName: string | undefined }
  private readonly seeds: Seed[]
  private readonly self: Set<string>
  private timer: unknown
  private running = false
  private joined = false
  private current: string[] = []
  private lastDns: string[] = []
  private seedCache = new Map<string, string[]>()
  private consecutiveErrors = 0
  private round: Promise<void> | undefined
  private rounds = 0

  constructor (components: DiscoveryComponents, init: DiscoveryInit) {
    this.log = components.logger.child({ component: 'cluster:discovery' })
    this.timers = components.timers ?? { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => { clearTimeout(h as NodeJS.Timeout) } }
    this.random = components.random ?? Math.random
    if (!Number.isInteger(init.port) || init.port < 1 || init.port > 65535) throw new ClusterConfigError(`discovery port ${init.port} is not a TCP port`)
    if (init.dnsName !== undefined && !/^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9])?\.?$/.test(init.dnsName)) {
      throw new ClusterConfigError(`VECTIS_DISCOVERY_DNS ${JSON.stringify(init.dnsName)} is not a DNS name`)
    }
    this.cfg = {
      dnsName: init.dnsName,
      srv: init.srv ?? false,
      port: init.port,
      fastIntervalMs: init.fastIntervalMs ?? DEFAULT_FAST_INTERVAL_MS,
      slowIntervalMs: init.slowIntervalMs ?? DEFAULT_SLOW_INTERVAL_MS,
      jitter: init.jitter ?? DEFAULT_JITTER,
      maxBackoffMs: init.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS,
      dnsTimeoutMs: init.dnsTimeoutMs ?? DEFAULT_DNS_TIMEOUT_MS
    }
    if (this.cfg.fastIntervalMs <= 0 || this.cfg.slowIntervalMs < this.cfg.fastIntervalMs) {
      throw new ClusterConfigError('discovery intervals: need 0 < fastIntervalMs <= slowIntervalMs')
    }
    this.seeds = (init.seeds ?? []).map((s) => parseHostPort(s, 'VECTIS_SEEDS'))
    this.self = new Set(init.selfAddresses.map(canonical))
    this.dns = components.dns ?? nodeDns(init.dnsServers, this.cfg.dnsTimeoutMs)
  }

  /** The last known set of peer addresses. */
  get peers (): string[] { return [...this.current] }

  /** Number of completed resolution rounds (for tests and metrics). */
  get completedRounds (): number { return this.rounds }

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    this.log.debug({ dnsName: this.cfg.dnsName, srv: this.cfg.srv, seeds: this.seeds.length }, 'discovery started')
    // First round at once: a starting member wants its peers now; the jitter applies to the following rounds.
    this.schedule(0)
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer)
    this.timer = undefined
    await this.round?.catch(() => {})
  }

  /** Fast re-resolution until joined, slow after. Switching back to fast (left the view) resolves at once. */
  setJoined (joined: boolean): void {
    if (this.joined === joined) return
    this.joined = joined
    if (!joined && this.running && this.round === undefined) {
      if (this.timer !== undefined) this.timers.clearTimeout(this.timer)
      this.schedule(0)
    }
  }

  /** Resolves now (outside the schedule) and returns the set. */
  async refresh (): Promise<string[]> {
    await (this.round ?? this.resolveRound())
    return this.peers
  }

  private schedule (ms: number): void {
    if (!this.running) return
    this.timer = this.timers.setTimeout(() => {
      this.timer = undefined
      this.round = this.resolveRound().finally(() => {
        this.round = undefined
        this.schedule(this.nextDelay())
      })
    }, ms)
  }

  /** The delay before the next round: the interval for our state, doubled per consecutive error, jittered. */
  nextDelay (): number {
    const base = this.joined ? this.cfg.slowIntervalMs : this.cfg.fastIntervalMs
    const backoff = this.consecutiveErrors === 0 ? base : Math.min(this.cfg.maxBackoffMs, base * 2 ** Math.min(this.consecutiveErrors, 16))
    return Math.max(1, jitter(Math.max(base, backoff), this.cfg.jitter, this.random))
  }

  private async resolveRound (): Promise<void> {
    let failed = false
    const found: string[] = []
    if (this.cfg.dnsName !== undefined) {
      try {
        this.lastDns = await this.resolveName(this.cfg.dnsName)
      } catch (err) {
        failed = true
        this.log.debug({ err, dnsName: this.cfg.dnsName, consecutiveErrors: this.consecutiveErrors + 1 }, 'DNS discovery failed; keeping the last answer')
      }
      found.push(...this.lastDns)
    }
    for (const seed of this.seeds) {
      const key = `${seed.host}:${seed.port}`
      if (isIP(seed.host) !== 0) {
        found.push(joinHostPort(seed.host, seed.port))
        continue
      }
      try {
        const ips = await this.lookupHost(seed.host)
        this.seedCache.set(key, ips.map((ip) => joinHostPort(ip, seed.port)))
      } catch (err) {
        failed = true
        this.log.debug({ err, seed: key }, 'cannot resolve seed; keeping its last addresses')
      }
      found.push(...(this.seedCache.get(key) ?? []))
    }
    this.consecutiveErrors = failed ? this.consecutiveErrors + 1 : 0
    this.rounds++
    const next = [...new Set(found.map(canonical))].filter((a) => !this.self.has(a)).sort()
    if (next.length !== this.current.length || next.some((a, i) => a !== this.current[i])) {
      this.current = next
      this.log.debug({ peers: next }, 'discovered peers changed')
      this.events.emit('peers:changed', { peers: [...next] })
    }
  }

  private async resolveName (name: string): Promise<string[]> {
    if (!this.cfg.srv) {
      const ips = await this.lookupHost(name)
      return ips.map((ip) => joinHostPort(ip, this.cfg.port))
    }
    let records: SrvRecord[]
    try {
      records = await this.dns.resolveSrv(name)
    } catch (err) {
      if (isNoData(err)) return []
      throw err
    }
    const out: string[] = []
    for (const r of records) {
      if (isIP(r.name) !== 0) {
        out.push(joinHostPort(r.name, r.port))
        continue
      }
      for (const ip of await this.lookupHost(r.name)) out.push(joinHostPort(ip, r.port))
    }
    return out
  }

  private async lookupHost (host: string): Promise<string[]> {
    try {
      return await this.dns.resolve4(host)
    } catch (err) {
      if (isNoData(err)) return []
      throw err
    }
  }
}

/** The name exists without records, or does not exist: an answer, not a failure. */
function isNoData (err: unknown): boolean {
  const code = (err as { code?: unknown })?.code
  return code === 'ENODATA' || code === 'ENOTFOUND'
}

function nodeDns (servers: string[] | undefined, timeoutMs: number): DnsLookup {
  if (servers !== undefined && servers.length > 0) {
    for (const s of servers) parseHostPort(s, 'VECTIS_DNS_SERVERS', true)
    const r = new Resolver({ timeout: timeoutMs, tries: 2 })
    r.setServers(servers)
    return {
      resolve4: async (name) => await new Promise((resolve, reject) => {
        r.resolve4(name, (err, addrs) => { if (err !== null) reject(err); else resolve(addrs) })
      }),
      resolveSrv: async (name) => await new Promise((resolve, reject) => {
        r.resolveSrv(name, (err, recs) => { if (err !== null) reject(err); else resolve(recs) })
      })
    }
  }
  // The system resolver through getaddrinfo: honours /etc/hosts and the search domains of resolv.conf, which a
  // short Service name inside a pod needs. SRV has no getaddrinfo equivalent: it needs a fully qualified name.
  const sys = new Resolver({ timeout: timeoutMs, tries: 2 })
  return {
    resolve4: async (name) => (await dnsPromises.lookup(name, { all: true, family: 4 })).map((a) => a.address),
    resolveSrv: async (name) => await new Promise((resolve, reject) => {
      sys.resolveSrv(name, (err, recs) => { if (err !== null) reject(err); else resolve(recs) })
    })
  }
}

function parseHostPort (s: string, what: string, requireIp = false): Seed {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(s) ?? /^([^:\s[\]]+):(\d+)$/.exec(s)
  const port = Number(m?.[2])
  if (m === null || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ClusterConfigError(`${what}: ${JSON.stringify(s)} is not host:port`)
  }
  const host = m[1]!
  if (requireIp && isIP(host) === 0) throw new ClusterConfigError(`${what}: ${JSON.stringify(host)} is not an IP address`)
  return { host, port }
}

function joinHostPort (host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`
}

function canonical (address: string): string {
  const { host, port } = parseHostPort(address, 'address')
  return joinHostPort(host.toLowerCase(), port)
}
