/**
 * The cluster transport: libp2p (TCP + noise + yamux, optionally a private network) carrying JSON requests and
 * their replies (`envelope.ts`) on one long-lived stream per connection (`request-channel.ts`), over one
 * long-lived connection per peer (two when both dialled at once; either is used). Topics (`publish`, `subscribe`)
 * are gossipsub over the same connections, with settings for a small closed cluster (`gossipsubSettings`).
 *
 * NOT guaranteed:
 * - Exactly-once delivery: a request that fails with 'timeout' or 'closed' may still have been handled.
 * - That `onDisconnect` means the peer is dead: it means its last connection closed (a crash, a stop, a reset by
 *   the network, or both sides closing). It is a suspicion for the membership layer to verify.
 * - Without `VECTIS_CLUSTER_SECRET` anyone who can reach the port can join: noise encrypts the traffic, but any
 *   libp2p peer that speaks this protocol is accepted. A warning says so at start.
 */
import { createLibp2p, type Libp2p } from 'libp2p'
import { gossipsub, type GossipSub, type GossipsubOpts } from '@libp2p/gossipsub'
import { identify, type Identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { privateNetwork } from './private-network.js'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { ComponentLogger, Connection, Logger as Libp2pLogger, MultiaddrConnection, PeerId, Stream } from '@libp2p/interface'
import { isIPv4, isIPv6 } from 'node:net'
import type { Logger } from '../common/logger.js'
import { monotonicClock, type Clock } from '../common/clock.js'
import { Deadline, raceAbort } from '../common/abortable.js'
import { TransportError, ClusterConfigError } from './errors.js'
import {
  DEFAULT_MAX_FRAME_BYTES, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, FrameDecoder, commonVersion, decodeEnvelope,
  encodeFrame, type Envelope
} from './envelope.js'
import { loadOrCreateIdentityKey } from './identity-key.js'
import { DEFAULT_CLUSTER_NAME, DEFAULT_CLUSTER_PORT } from './defaults.js'
import { RequestChannel } from './request-channel.js'
import type {
  ClusterTransport, RequestHandler, RequestOptions, RequestResult, TopicHandler, TransportErrorCode
} from './transport-types.js'

type Services = { identify: Identify, pubsub: GossipSub } & Record<string, unknown>

const utf8 = new TextEncoder()
const fromUtf8 = new TextDecoder()

/**
 * Gossipsub for a cluster of a few members that share a secret (docs/design.md §5.6 says why each setting):
 * - no signatures: only members can connect (private network, noise), so the signature would prove nothing more;
 *   a message carries its publisher and epoch, which the receiver checks against what it knows of the leader;
 * - message ids are the caller's (`publish(topic, id, …)`, e.g. the epoch and sequence numbers of journal
 *   entries): the same content published twice is delivered once;
 * - peer scoring off (every threshold at its floor): a member that was slow or away for a while must not be
 *   pruned from the mesh or graylisted, it would miss what it needs most; misbehaving peers are the secret's job;
 * - a mesh of 3 (2 to 4): a publisher sends to at most 4 members, the others get the message relayed, so the
 *   leader does not send N copies; flood-publish off for the same reason; publishing with no peer subscribed is
 *   no error (a lone member; receivers repair what they miss).
 */
function gossipsubSettings (): Partial<GossipsubOpts> {
  const idOf = (data: Uint8Array | undefined): Uint8Array => {
    const end = data === undefined ? -1 : data.indexOf(0x0a)
    return end < 0 ? new Uint8Array(0) : data!.subarray(0, end)
  }
  return {
    globalSignaturePolicy: 'StrictNoSign',
    msgIdFn: (msg) => idOf(msg.data),
    fastMsgIdFn: (msg) => fromUtf8.decode(idOf(msg.data)),
    D: 3,
    Dlo: 2,
    Dhi: 4,
    Dout: 1,
    floodPublish: false,
    doPX: false,
    allowPublishToZeroTopicPeers: true,
    fallbackToFloodsub: false,
    emitSelf: false,
    scoreThresholds: {
      gossipThreshold: -Infinity,
      publishThreshold: -Infinity,
      graylistThreshold: -Infinity,
      acceptPXThreshold: Infinity,
      opportunisticGraftThreshold: Infinity
    }
  }
}

/** libp2p protocol id of cluster requests; the envelope carries the finer-grained version. */
export const CLUSTER_PROTOCOL = '/vectis/cluster/1.0.0'
/**
 * Failover must take well under a second, so a peer that does not answer the TCP + pnet + noise + yamux
 * handshake within a second is as good as gone for this round; the next heartbeat tries again.
 */
export const DEFAULT_DIAL_TIMEOUT_MS = 1000
export const DEFAULT_REQUEST_TIMEOUT_MS = 1000
/** Concurrent streams per connection and direction: heartbeats, joins, views and retries of a few dozen members. */
const MAX_STREAMS = 256
/** One line per remote IP per this many ms about refused handshakes, so a misconfigured peer cannot flood the log. */
const REFUSAL_LOG_INTERVAL_MS = 10_000

export interface Libp2pTransportComponents {
  logger: Logger
  clock?: Clock
}

export interface Libp2pTransportInit {
  /** Data directory holding the identity key (`cluster-identity.key`, mode 0600). Required. */
  dataDir: string
  /** Address peers reach this member at (`POD_IP`). Required: an IPv4 or IPv6 literal. */
  advertiseHost: string
  /** Address the listener binds (`VECTIS_BIND_HOST`); default `0.0.0.0`. */
  bindHost?: string
  /** TCP port (`VECTIS_CLUSTER_PORT`); default 7800; 0 picks a free port (tests). */
  port?: number
  /** Frames of another cluster name are refused ('denied'); default `vectis-cluster`. */
  clusterName?: string
  /** `VECTIS_CLUSTER_SECRET`: when set, a libp2p private network keyed from it (HKDF-SHA256). */
  secret?: string
  /** Upper bound of a dial (TCP connect + handshakes); default 1000 ms. */
  dialTimeoutMs?: number
  /** Default deadline of `request()` (dial included); default 1000 ms. */
  requestTimeoutMs?: number
  /** Largest frame accepted or sent; default 1 MiB. */
  maxFrameBytes?: number
  /** Close a connection after this many consecutive request timeouts on it (default 2); see `noteTimeout`. */
  recycleAfterTimeouts?: number
  /** Envelope versions spoken, `[minVersion, version]`; defaults are this build's. Tests set them to simulate upgrades. */
  version?: number
  minVersion?: number
}

interface Resolved {
  dataDir: string
  advertiseHost: string
  bindHost: string
  port: number
  clusterName: string
  secret: string | undefined
  dialTimeoutMs: number
  requestTimeoutMs: number
  maxFrameBytes: number
  recycleAfterTimeouts: number
  version: number
  minVersion: number
}

/** "ip:port" → multiaddr; IPv6 in brackets. Throws 'invalid' for anything else (host names are discovery's job). */
export function addressToMultiaddr (address: string): Multiaddr {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address)
  const host = m?.[1]
  const port = Number(m?.[2])
  if (host === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TransportError('invalid', `not an "ip:port" address: ${JSON.stringify(address)}`, { address })
  }
  if (isIPv4(host)) return multiaddr(`/ip4/${host}/tcp/${port}`)
  if (isIPv6(host)) return multiaddr(`/ip6/${host}/tcp/${port}`)
  throw new TransportError('invalid', `not an IP address: ${JSON.stringify(host)} (resolve names before calling)`, { address })
}

function hostPort (host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`
}

function multiaddrToAddress (ma: Multiaddr): string | undefined {
  const parts = ma.getComponents()
  const ip = parts.find((c) => c.name === 'ip4' || c.name === 'ip6')
  const port = parts.find((c) => c.name === 'tcp')
  if (ip?.value === undefined || port?.value === undefined) return undefined
  return hostPort(ip.value, Number(port.value))
}

/** Error codes and names anywhere in an error's cause / AggregateError tree. */
function errorSignature (err: unknown, depth = 0, out = new Set<string>()): Set<string> {
  if (depth > 6 || typeof err !== 'object' || err === null) return out
  const e = err as { code?: unknown, name?: unknown, cause?: unknown, errors?: unknown }
  if (typeof e.code === 'string') out.add(e.code)
  if (typeof e.name === 'string') out.add(e.name)
  errorSignature(e.cause, depth + 1, out)
  if (Array.isArray(e.errors)) for (const x of e.errors) errorSignature(x, depth + 1, out)
  return out
}

const REFUSED = ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'EHOSTDOWN']
const TIMEOUT = ['TimeoutError', 'ETIMEDOUT']
const CLOSED = ['ECONNRESET', 'EPIPE', 'ConnectionFailedError', 'StreamResetError', 'StreamClosedError', 'UnexpectedEOFError', 'ConnectionClosedError']

export class Libp2pTransport implements ClusterTransport {
  private readonly log: Logger
  private readonly clock: Clock
  private readonly cfg: Resolved
  private node: Libp2p<Services> | undefined
  private readonly topics = new Map<string, TopicHandler>()
  private status: 'stopped' | 'starting' | 'started' | 'stopping' = 'stopped'
  private starting: Promise<void> | undefined
  private stopController = new AbortController()
  private handler: RequestHandler | undefined
  private readonly disconnectListeners = new Set<(peerId: string) => void>()
  /** Advertised address → peer id, learned from dials and from the sender field of inbound frames. */
  private readonly peerByAddress = new Map<string, string>()
  /** Consecutive request timeouts per connection id (see `noteTimeout`). */
  private readonly timeoutsByConnection = new Map<string, number>()
  /** Peers whose last connection we are closing ourselves: their disconnect is not reported. */
  private readonly recycling = new Set<string>()
  /** The request stream of each connection (by connection id). */
  private readonly channels = new Map<string, Promise<RequestChannel>>()
  /** One dial at a time per address, shared by concurrent requests. */
  private readonly dialing = new Map<string, Promise<Connection>>()
  /** Version negotiated with a peer after it refused ours. */
  private readonly versionByAddress = new Map<string, number>()
  /** Raw connections that completed the secure handshake (the others closing = refused handshake). */
  private readonly secured = new WeakSet<MultiaddrConnection>()
  /** Raw connections whose refusal was already logged (by the key check). */
  private readonly reported = new WeakSet<object>()
  private readonly refusalLoggedAt = new Map<string, { at: number, suppressed: number }>()
  private localAddress: string | undefined
  private id: string | undefined

  constructor (components: Libp2pTransportComponents, init: Libp2pTransportInit) {
    this.log = components.logger.child({ component: 'cluster:transport' })
    this.clock = components.clock ?? monotonicClock
    this.cfg = resolveInit(init)
  }

  get peerId (): string {
    if (this.id === undefined) throw new TransportError('closed', 'the transport has not been started')
    return this.id
  }

  /** "advertiseHost:port" peers reach this member at (the real port once started when `port` was 0). */
  get address (): string {
    return this.localAddress ?? hostPort(this.cfg.advertiseHost, this.cfg.port)
  }

  async start (): Promise<void> {
    if (this.status === 'started') return
    if (this.status === 'starting') return this.starting
    if (this.status === 'stopping') throw new TransportError('closed', 'the transport is stopping')
    this.status = 'starting'
    this.starting = this.doStart()
    try {
      await this.starting
      this.status = 'started'
    } catch (err) {
      this.status = 'stopped'
      throw err
    } finally {
      this.starting = undefined
    }
  }

  private async doStart (): Promise<void> {
    const cfg = this.cfg
    const privateKey = await loadOrCreateIdentityKey(cfg.dataDir, this.log)
    this.stopController = new AbortController()
    if (cfg.secret === undefined) {
      this.log.warn('VECTIS_CLUSTER_SECRET is not set: any host that reaches the cluster port can join the cluster')
    }
    const node = await createLibp2p({
      start: false,
      // libp2p's own debug logger builds a logger per stream (and probes the terminal each time): measurable CPU
      // per request. It stays available for diagnosis with DEBUG=libp2p:*.
      ...(process.env.DEBUG === undefined || process.env.DEBUG === '' ? { logger: quietLogger } : {}),
      privateKey,
      addresses: {
        listen: [cfg.bindHost.includes(':') ? `/ip6/${cfg.bindHost}/tcp/${cfg.port}` : `/ip4/${cfg.bindHost}/tcp/${cfg.port}`]
      },
      transports: [tcp({ dialOpts: { noDelay: true }, listenOpts: { noDelay: true } })],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux({ maxEarlyStreams: MAX_STREAMS, maxInboundStreams: MAX_STREAMS * 4, maxOutboundStreams: MAX_STREAMS * 4 })],
      ...(cfg.secret !== undefined
        ? {
            connectionProtector: privateNetwork({
              secret: cfg.secret,
              timeoutMs: cfg.dialTimeoutMs,
              onMismatch: (connection, remote) => {
                this.reported.add(connection)
                const from = remote !== undefined ? multiaddrToAddress(multiaddr(remote)) ?? remote : 'unknown'
                const direction = connection.direction
                this.logRefusal(`${direction}:${from.replace(/:\d+$/, '')}`, { direction, remoteAddress: from },
                  'refused a peer without the cluster secret (VECTIS_CLUSTER_SECRET differs)')
              }
            })
          }
        : {}),
      connectionGater: {
        // Everything is on private addresses (pods, loopback in tests): the default gater would refuse some.
        denyDialMultiaddr: () => false,
        denyInboundConnection: (maConn) => { this.watchHandshake(maConn); return false },
        denyInboundEncryptedConnection: (_peer, maConn) => { this.secured.add(maConn); return false },
        denyOutboundEncryptedConnection: (_peer, maConn) => { this.secured.add(maConn); return false }
      },
      connectionManager: {
        // Slightly longer than our own deadline, so ours fires first and the error says 'timeout'.
        dialTimeout: cfg.dialTimeoutMs + 500,
        addressDialTimeout: cfg.dialTimeoutMs + 500,
        inboundUpgradeTimeout: Math.max(cfg.dialTimeoutMs, 2000),
        outboundStreamProtocolNegotiationTimeout: cfg.requestTimeoutMs,
        inboundStreamProtocolNegotiationTimeout: Math.max(cfg.requestTimeoutMs, 2000),
        // Every member of a loopback test cluster dials from 127.0.0.1: the default (5/s per host) would refuse them.
        inboundConnectionThreshold: 1000,
        maxIncomingPendingConnections: 100,
        // Reconnecting is the membership layer's decision (it knows who is still in the view).
        reconnectRetries: 0
      },
      // The connection monitor pings with a protocol we do not run, and liveness is the membership layer's job.
      connectionMonitor: { enabled: false },
      // identify tells each peer which protocols the other runs: gossipsub needs it to find the subscribers.
      services: { identify: identify(), pubsub: gossipsub(gossipsubSettings()) }
    })
    try {
      await node.handle(CLUSTER_PROTOCOL, (stream, connection) => { this.serve(stream, connection) }, {
        maxInboundStreams: MAX_STREAMS,
        maxOutboundStreams: MAX_STREAMS
      })
      node.addEventListener('peer:disconnect', (evt) => { this.emitDisconnect(evt.detail) })
      node.addEventListener('connection:close', (evt) => { this.timeoutsByConnection.delete(evt.detail.id) })
      node.services.pubsub.addEventListener('gossipsub:message', (evt) => {
        const { msg, propagationSource } = evt.detail
        this.deliver(msg.topic, msg.data, propagationSource.toString())
      })
      await node.start()
      for (const topic of this.topics.keys()) node.services.pubsub.subscribe(topic)
    } catch (err) {
      await Promise.resolve(node.stop()).catch(() => {})
      if (errorSignature(err).has('EADDRINUSE')) {
        throw new ClusterConfigError(`cluster port ${hostPort(cfg.bindHost, cfg.port)} is already in use`, { cause: err })
      }
      throw err
    }
    this.node = node
    this.id = node.peerId.toString()
    const port = node.getMultiaddrs().map(multiaddrToAddress).find((a) => a !== undefined)?.split(':').pop()
    this.localAddress = hostPort(cfg.advertiseHost, port !== undefined ? Number(port) : cfg.port)
    this.log.info({ peerId: this.id, address: this.localAddress, bind: cfg.bindHost, privateNetwork: cfg.secret !== undefined }, 'cluster transport listening')
  }

  async stop (): Promise<void> {
    if (this.status === 'stopped') return
    if (this.status === 'starting') await this.starting?.catch(() => {})
    if (this.status !== 'started') return
    this.status = 'stopping'
    this.stopController.abort(new TransportError('closed', 'the transport is stopping'))
    const node = this.node
    this.node = undefined
    try {
      await node?.stop()
    } finally {
      this.dialing.clear()
      this.channels.clear()
      this.timeoutsByConnection.clear()
      this.recycling.clear()
      this.status = 'stopped'
      this.log.info('cluster transport stopped')
    }
  }

  handle (handler: RequestHandler): void {
    this.handler = handler
  }

  async publish (topic: string, id: string, payload: unknown): Promise<void> {
    const node = this.node
    if (node === undefined) throw new TransportError('closed', 'the transport is not started')
    if (id.includes('\n')) throw new TransportError('invalid', 'a message id has no line break')
    const data = utf8.encode(`${id}\n${JSON.stringify(payload)}`)
    if (data.length > this.cfg.maxFrameBytes) throw new TransportError('invalid', `message of ${data.length} bytes exceeds ${this.cfg.maxFrameBytes}`)
    try {
      await node.services.pubsub.publish(topic, data)
    } catch (err) {
      // A duplicate id is a message already published: nothing to do.
      if ((err as Error).message?.includes('Duplicate') === true || (err as Error).name === 'Duplicate') return
      throw new TransportError('closed', `publish on ${topic} failed: ${(err as Error).message}`, { cause: err })
    }
  }

  subscribe (topic: string, handler: TopicHandler): void {
    const fresh = !this.topics.has(topic)
    this.topics.set(topic, handler)
    if (fresh) this.node?.services.pubsub.subscribe(topic)
  }

  private deliver (topic: string, data: Uint8Array, relayedBy: string): void {
    const handler = this.topics.get(topic)
    if (handler === undefined) return
    let payload: unknown
    try {
      const at = data.indexOf(0x0a)
      payload = JSON.parse(fromUtf8.decode(data.subarray(at + 1)))
    } catch (err) {
      this.log.warn({ topic, relayedBy, err }, 'dropped a malformed message')
      return
    }
    try {
      handler(payload, relayedBy)
    } catch (err) {
      this.log.error({ topic, err }, 'a topic handler failed')
    }
  }

  onDisconnect (listener: (peerId: string) => void): () => void {
    this.disconnectListeners.add(listener)
    return () => { this.disconnectListeners.delete(listener) }
  }

  async request (address: string, payload: unknown, opts: RequestOptions = {}): Promise<RequestResult> {
    addressToMultiaddr(address) // validates before anything else
    const node = this.node
    if (node === undefined || this.status !== 'started') throw new TransportError('closed', 'the transport is not started', { address })
    if (address === this.address) throw new TransportError('invalid', `${address} is this member's own address`, { address })
    const timeoutMs = opts.timeoutMs ?? this.cfg.requestTimeoutMs
    const scope = new Deadline(timeoutMs, () => new TransportError('timeout', `no reply from ${address} within ${timeoutMs} ms`, { address }))
    scope.link(this.stopController.signal, () => new TransportError('closed', 'the transport stopped', { address }))
    if (opts.signal !== undefined) {
      const caller = opts.signal
      scope.link(caller, () => new TransportError('closed', 'request aborted', { address, cause: caller.reason }))
    }
    const signal = scope.signal
    let version = this.versionByAddress.get(address) ?? this.cfg.version
    try {
      // Two rounds at most: the second only after the peer told us which versions it speaks.
      for (let attempt = 0; attempt < 2; attempt++) {
        const conn = await this.connect(node, address, signal)
        const env = await this.exchange(conn, address, { v: version, c: this.cfg.clusterName, k: 'req', f: this.address, p: payload }, signal)
        if (env.c !== this.cfg.clusterName) {
          throw new TransportError('denied', `peer belongs to cluster ${JSON.stringify(env.c)}, not ${JSON.stringify(this.cfg.clusterName)}`, { address })
        }
        if (env.k === 'err') {
          const e = env.e ?? { code: 'invalid' as const, message: 'no reason given' }
          const theirs = e.versions
          if (attempt === 0 && theirs !== undefined) {
            const v = commonVersion({ min: this.cfg.minVersion, max: this.cfg.version }, { min: theirs[0], max: theirs[1] })
            if (v !== undefined && v !== version) {
              this.log.info({ address, version: v, theirs }, 'peer speaks another protocol version; retrying in a common one')
              version = v
              this.versionByAddress.set(address, v)
              continue
            }
          }
          throw new TransportError(e.code, `peer refused the request: ${e.message}`, { address })
        }
        if (env.k !== 'rep' || env.v < this.cfg.minVersion || env.v > this.cfg.version) {
          throw new TransportError('invalid', `unexpected reply (kind ${env.k}, version ${env.v})`, { address })
        }
        return { peerId: conn.remotePeer.toString(), reply: env.p }
      }
      throw new TransportError('invalid', 'no common protocol version with the peer', { address })
    } catch (err) {
      throw this.classify(err, address, signal)
    } finally {
      scope.dispose()
    }
  }

  private classify (err: unknown, address: string, signal: AbortSignal): TransportError {
    if (err instanceof TransportError) return err
    // The deadline, a stop or the caller: the scope's reason says which.
    if (signal.aborted && signal.reason instanceof TransportError) return signal.reason
    const sig = errorSignature(err)
    let code: TransportErrorCode = 'closed'
    if (REFUSED.some((c) => sig.has(c))) code = 'refused'
    else if (TIMEOUT.some((c) => sig.has(c))) code = 'timeout'
    return new TransportError(code, `request failed: ${(err as Error)?.message ?? String(err)}`, { address, cause: err })
  }

  private async connect (node: Libp2p, address: string, signal: AbortSignal): Promise<Connection> {
    const known = this.peerByAddress.get(address)
    if (known !== undefined) {
      const open = node.getConnections(peerIdFromString(known)).find((c) => c.status === 'open')
      if (open !== undefined) return open
    }
    let dial = this.dialing.get(address)
    if (dial === undefined) {
      dial = this.dial(node, address)
      this.dialing.set(address, dial)
      const clear = (): void => { if (this.dialing.get(address) === dial) this.dialing.delete(address) }
      dial.then(clear, clear)
    }
    return raceAbort(dial, signal)
  }

  /** A dial shared by every request to that address, bounded by the dial timeout (not by one caller's deadline). */
  private async dial (node: Libp2p, address: string): Promise<Connection> {
    const ma = addressToMultiaddr(address)
    const scope = new Deadline(this.cfg.dialTimeoutMs, () => new TransportError('timeout', `dial to ${address} timed out`, { address }))
    scope.link(this.stopController.signal, () => new TransportError('closed', 'the transport stopped', { address }))
    const signal = scope.signal
    let conn: Connection
    try {
      conn = await node.dial(ma, { signal })
    } catch (err) {
      const sig = errorSignature(err)
      if (this.stopController.signal.aborted) throw new TransportError('closed', 'the transport stopped', { address, cause: err })
      if (REFUSED.some((c) => sig.has(c))) throw new TransportError('refused', `nothing accepts connections at ${address}`, { address, cause: err })
      if (signal.aborted || TIMEOUT.some((c) => sig.has(c)) || sig.has('AbortError')) throw new TransportError('timeout', `dial to ${address} timed out`, { address, cause: err })
      if (sig.has('InvalidPeerIdError')) {
        throw new TransportError('invalid', `${address} is this member itself`, { address, cause: err })
      }
      if (sig.has('ClusterSecretMismatchError')) {
        throw new TransportError('denied', `the peer at ${address} does not share the cluster secret`, { address, cause: err })
      }
      if (CLOSED.some((c) => sig.has(c))) {
        // The peer hung up during the handshake. A member whose secret differs does that (it cannot parse our
        // bytes), but so does a process dying right now: 'closed', not 'denied'. A member that has the secret
        // says so positively (ClusterSecretMismatchError above) and logs the refusal on its side.
        this.log.debug({ address, err }, 'connection closed during the cluster handshake')
        throw new TransportError('closed', `${address} closed the connection during the handshake (dying, or without our cluster secret?)`, { address, cause: err })
      }
      // The TCP connection opened and the upgrade failed for another reason than time: not one of us.
      this.log.warn({ address, err }, 'cluster handshake failed (wrong or missing VECTIS_CLUSTER_SECRET, or not a cluster member?)')
      throw new TransportError('denied', `handshake with ${address} failed (wrong or missing cluster secret, or not a cluster member)`, { address, cause: err })
    } finally {
      scope.dispose()
    }
    this.learn(address, conn.remotePeer.toString())
    return conn
  }

  private learn (address: string, peerId: string): void {
    const before = this.peerByAddress.get(address)
    if (before === peerId) return
    // A peer id lives at one address: drop a mapping it left behind (a pod that got a new IP).
    for (const [a, p] of this.peerByAddress) if (p === peerId) this.peerByAddress.delete(a)
    this.peerByAddress.set(address, peerId)
  }

  /** The request channel of a connection, opened on first use and shared by concurrent requests. */
  private async channelFor (conn: Connection, signal: AbortSignal): Promise<RequestChannel> {
    const existing = this.channels.get(conn.id)
    if (existing !== undefined) {
      const ch = await raceAbort(existing, signal)
      if (ch.alive) return ch
      if (this.channels.get(conn.id) === existing) this.channels.delete(conn.id)
    }
    const opening = (async () => {
      const scope = new Deadline(this.cfg.requestTimeoutMs, () => new TransportError('timeout', 'opening the request stream timed out'))
      scope.link(this.stopController.signal, () => new TransportError('closed', 'the transport stopped'))
      let stream: Stream
      try {
        stream = await conn.newStream(CLUSTER_PROTOCOL, { signal: scope.signal, maxOutboundStreams: MAX_STREAMS })
      } finally {
        scope.dispose()
      }
      return new RequestChannel(stream, this.cfg.maxFrameBytes, () => {
        if (this.channels.get(conn.id) === opening) this.channels.delete(conn.id)
      })
    })()
    this.channels.set(conn.id, opening)
    opening.catch(() => { if (this.channels.get(conn.id) === opening) this.channels.delete(conn.id) })
    return await raceAbort(opening, signal)
  }

  private async exchange (conn: Connection, address: string, env: Envelope, signal: AbortSignal): Promise<Envelope> {
    const ch = await this.channelFor(conn, signal)
    try {
      const reply = await ch.call(env, signal)
      this.timeoutsByConnection.delete(conn.id)
      return reply
    } catch (err) {
      if (signal.aborted && (signal.reason as TransportError)?.code === 'timeout') this.noteTimeout(conn, address)
      if (err instanceof TransportError || signal.aborted) throw err
      throw new TransportError('closed', `stream to ${address} closed before the reply`, { address, cause: err })
    }
  }

  /**
   * After a partition, TCP retransmits on an existing connection with exponential backoff (up to minutes), so a
   * healed network could stay unused for long. A connection whose requests time out `recycleAfterTimeouts`
   * times in a row is closed; the next request dials afresh and gets through as soon as the path is back.
   * That close is ours, so it is not reported through `onDisconnect` (the peer, on its side, sees it closed).
   */
  private noteTimeout (conn: Connection, address: string): void {
    const n = (this.timeoutsByConnection.get(conn.id) ?? 0) + 1
    this.timeoutsByConnection.set(conn.id, n)
    if (n < this.cfg.recycleAfterTimeouts || conn.status !== 'open') return
    this.timeoutsByConnection.delete(conn.id)
    const peerId = conn.remotePeer.toString()
    this.log.debug({ address, peerId, timeouts: n }, 'closing a connection whose requests keep timing out; the next request redials')
    if (this.node?.getConnections(conn.remotePeer).filter((c) => c.status === 'open').length === 1) this.recycling.add(peerId)
    conn.abort(new TransportError('timeout', `${n} requests in a row timed out`, { address }))
  }

  /**
   * The answering end of a request stream: frames are handled concurrently, each reply carries its request's id.
   * When the requester closes its side, the stream is closed once the replies in progress are sent.
   */
  private serve (stream: Stream, connection: Connection): void {
    const peerId = connection.remotePeer.toString()
    const socketAddress = multiaddrToAddress(connection.remoteAddr)
    const decoder = new FrameDecoder(this.cfg.maxFrameBytes)
    let inFlight = 0
    let remoteEnded = false
    const maybeClose = (): void => {
      if (remoteEnded && inFlight === 0 && stream.writeStatus === 'writable') {
        stream.close().catch(() => { stream.abort(new Error('close failed')) })
      }
    }
    stream.addEventListener('message', (evt) => {
      const data = evt.data instanceof Uint8Array ? evt.data : evt.data.subarray()
      let bodies: Buffer[]
      try {
        bodies = decoder.push(data)
      } catch (err) {
        this.log.debug({ peerId, socketAddress, err }, 'undecodable cluster stream; resetting it')
        stream.abort(err instanceof Error ? err : new Error(String(err)))
        return
      }
      for (const body of bodies) {
        inFlight++
        void this.answer(stream, body, peerId, socketAddress).finally(() => { inFlight--; maybeClose() })
      }
    })
    stream.addEventListener('remoteCloseWrite', () => { remoteEnded = true; maybeClose() })
  }

  private async answer (stream: Stream, body: Uint8Array, peerId: string, socketAddress: string | undefined): Promise<void> {
    let replyVersion = this.cfg.minVersion
    let id: number | undefined
    const send = (env: Envelope): void => {
      if (stream.writeStatus !== 'writable') return // the requester went away; nobody waits for this reply
      let frame: Uint8Array
      try {
        frame = encodeFrame(id !== undefined ? { ...env, i: id } : env, this.cfg.maxFrameBytes)
      } catch (err) {
        this.log.error({ peerId, err }, 'cannot encode the reply')
        frame = encodeFrame({ v: replyVersion, c: this.cfg.clusterName, k: 'err', ...(id !== undefined ? { i: id } : {}), e: { code: 'invalid', message: `reply could not be encoded: ${(err as Error).message}` } }, this.cfg.maxFrameBytes)
      }
      stream.send(frame)
    }
    const fail = (code: 'denied' | 'invalid', message: string, versions?: [number, number]): void => {
      send({ v: replyVersion, c: this.cfg.clusterName, k: 'err', e: versions !== undefined ? { code, message, versions } : { code, message } })
    }
    try {
      let env: Envelope
      try {
        env = decodeEnvelope(body)
      } catch (err) {
        this.log.debug({ peerId, socketAddress, err }, 'malformed cluster frame')
        fail('invalid', (err as Error).message)
        return
      }
      id = env.i
      // Answer in the requester's version when we speak it, else in our oldest (the frozen outer fields stay readable).
      if (env.v >= this.cfg.minVersion && env.v <= this.cfg.version) replyVersion = env.v
      if (env.c !== this.cfg.clusterName) {
        this.logRefusal(socketAddress ?? peerId, { peerId, clusterName: env.c }, 'refused a request from another cluster')
        fail('denied', `this member belongs to cluster ${JSON.stringify(this.cfg.clusterName)}`)
        return
      }
      if (env.v < this.cfg.minVersion || env.v > this.cfg.version) {
        this.logRefusal(socketAddress ?? peerId, { peerId, version: env.v }, 'refused a request in an unsupported protocol version')
        fail('invalid', `protocol version ${env.v} not supported`, [this.cfg.minVersion, this.cfg.version])
        return
      }
      if (env.k !== 'req') { fail('invalid', `expected a request, got ${env.k}`); return }
      let remoteAddress = socketAddress ?? ''
      if (env.f !== undefined) {
        try {
          addressToMultiaddr(env.f)
        } catch {
          fail('invalid', 'malformed sender address')
          return
        }
        remoteAddress = env.f
        this.learn(env.f, peerId)
      }
      const handler = this.handler
      if (handler === undefined) { fail('invalid', 'this member does not handle cluster requests yet'); return }
      let result: unknown
      try {
        result = await handler({ peerId, remoteAddress, ...(socketAddress !== undefined ? { socketAddress } : {}), version: env.v }, env.p)
      } catch (err) {
        this.log.debug({ peerId, err }, 'cluster request handler failed')
        fail('invalid', `handler failed: ${(err as Error)?.message ?? String(err)}`)
        return
      }
      send({ v: replyVersion, c: this.cfg.clusterName, k: 'rep', f: this.address, p: result })
    } catch (err) {
      if (!this.stopController.signal.aborted) this.log.debug({ peerId, err }, 'cannot answer a cluster request')
    }
  }

  /**
   * Logs inbound raw connections that close before completing the secure handshake: that is how a refusal looks.
   * A connection that closes without having sent a single byte tested no secret: a dial its peer abandoned (queued
   * while this member was paused, say) or a port check; it is logged at debug level only.
   */
  private watchHandshake (maConn: MultiaddrConnection): void {
    maConn.addEventListener('close', () => {
      if (this.secured.has(maConn) || this.reported.has(maConn) || this.status !== 'started') return
      const from = multiaddrToAddress(maConn.remoteAddr) ?? maConn.remoteAddr.toString()
      // The TCP transport's connection exposes its socket; other transports are judged by the refusal rule.
      if ((maConn as { socket?: { bytesRead?: number } }).socket?.bytesRead === 0) {
        this.log.debug({ remoteAddress: from }, 'an inbound connection closed before sending anything')
        return
      }
      this.logRefusal(from.replace(/:\d+$/, ''), { remoteAddress: from },
        'refused a connection that failed the cluster handshake (wrong or missing VECTIS_CLUSTER_SECRET, or not a cluster member)')
    }, { once: true })
  }

  private logRefusal (key: string, fields: Record<string, unknown>, msg: string): void {
    const now = this.clock.now()
    const last = this.refusalLoggedAt.get(key)
    if (last !== undefined && now - last.at < REFUSAL_LOG_INTERVAL_MS) {
      last.suppressed++
      return
    }
    if (this.refusalLoggedAt.size > 1000) this.refusalLoggedAt.clear()
    this.refusalLoggedAt.set(key, { at: now, suppressed: 0 })
    this.log.warn({ ...fields, suppressedSinceLast: last?.suppressed ?? 0 }, msg)
  }

  private emitDisconnect (peer: PeerId): void {
    // Our own stop closes every connection: those are not failures of the peers.
    if (this.status !== 'started') return
    const id = peer.toString()
    if (this.recycling.delete(id)) {
      this.log.debug({ peerId: id }, 'closed a stuck connection to the peer (not reported as a disconnect)')
      return
    }
    this.log.debug({ peerId: id }, 'peer disconnected')
    for (const l of this.disconnectListeners) {
      try {
        l(id)
      } catch (err) {
        this.log.error({ err }, 'disconnect listener failed')
      }
    }
  }
}

function quietLog (): Libp2pLogger {
  const log = ((): void => {}) as unknown as Libp2pLogger
  log.error = () => {}
  log.trace = () => {}
  log.enabled = false
  log.newScope = () => log
  return log
}
const QUIET = quietLog()
const quietLogger: ComponentLogger = { forComponent: () => QUIET }

function resolveInit (init: Libp2pTransportInit): Resolved {
  const bad = (field: string, why: string): never => { throw new ClusterConfigError(`cluster transport option ${field}: ${why}`) }
  if (typeof init.dataDir !== 'string' || init.dataDir === '') bad('dataDir', 'required')
  if (!isIPv4(init.advertiseHost) && !isIPv6(init.advertiseHost)) bad('advertiseHost', `${JSON.stringify(init.advertiseHost)} is not an IP address`)
  const bindHost = init.bindHost ?? '0.0.0.0'
  if (!isIPv4(bindHost) && !isIPv6(bindHost)) bad('bindHost', `${JSON.stringify(bindHost)} is not an IP address`)
  const port = init.port ?? DEFAULT_CLUSTER_PORT
  if (!Number.isInteger(port) || port < 0 || port > 65535) bad('port', `${port} is not a TCP port`)
  const positive = (field: string, v: number | undefined, dflt: number): number => {
    const x = v ?? dflt
    if (!Number.isFinite(x) || x <= 0) bad(field, `${x} must be a positive number`)
    return x
  }
  const version = init.version ?? PROTOCOL_VERSION
  const minVersion = init.minVersion ?? Math.min(MIN_PROTOCOL_VERSION, version)
  if (!Number.isInteger(version) || !Number.isInteger(minVersion) || minVersion < 1 || minVersion > version) {
    bad('version', `[${minVersion}, ${version}] is not a valid version range`)
  }
  const clusterName = init.clusterName ?? DEFAULT_CLUSTER_NAME
  if (clusterName === '') bad('clusterName', 'must not be empty')
  if (init.secret !== undefined && init.secret === '') bad('secret', 'must not be empty when set')
  return {
    dataDir: init.dataDir,
    advertiseHost: init.advertiseHost,
    bindHost,
    port,
    clusterName,
    secret: init.secret,
    dialTimeoutMs: positive('dialTimeoutMs', init.dialTimeoutMs, DEFAULT_DIAL_TIMEOUT_MS),
    requestTimeoutMs: positive('requestTimeoutMs', init.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS),
    maxFrameBytes: positive('maxFrameBytes', init.maxFrameBytes, DEFAULT_MAX_FRAME_BYTES),
    recycleAfterTimeouts: Math.floor(positive('recycleAfterTimeouts', init.recycleAfterTimeouts, 2)),
    version,
    minVersion
  }
}
