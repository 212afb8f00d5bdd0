/**
 * The PeSIT servers of the configuration (docs/contract.md §5.2): one TCP listener per configured server, one
 * ServerSession per connection. Only a leader runs them: the daemon starts this part after `leader:elected` and
 * stops it on `leader:demoted` and at shutdown; on top of that every accepted connection checks the lease
 * synchronously (a connection reaching a member that is no longer leader is dropped before a byte is read).
 *
 * `stop()` closes the listeners and ends live sessions with ABORT; `stop({ handover: true })` lets each live
 * transfer reach its next sync point and interrupts it there with IDT (restartable), aborting what is still
 * running at the deadline. Partial files and checkpoints are always kept.
 *
 * NOT guaranteed: that a connection accepted just before the lease expired is not served; the lease checks
 * before ACK(SYN), the rename and ACK(TRANS.END) are what keep a deposed leader from acknowledging data.
 */
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net'
import { createServer as createTlsServer, TLSSocket, type Server as TlsServer } from 'node:tls'
import { join } from 'node:path'
import type { Logger } from '../common/logger.js'
import type { Startable } from '../common/lifecycle.js'
import { readTlsFilesSync, shortTlsReason, TlsFileWatcher, type TlsMaterial } from '../common/tls-files.js'
import type { HandoverHooks, Leadership } from '../cluster/leadership-api.js'
import type { DurableFs } from '../store/durable-fs.js'
import type { Framing } from './codec.js'
import { configuredDirectories, validatePesitConfig, type PesitConfig, type PesitServerConfig, type ServerTlsConfig } from './config-types.js'
import { DIAG } from './diagnostics.js'
import { FpduChannel } from './fpdu-channel.js'
import type { PesitMetrics, TransferJournalPort, TransferProgressPort } from './ports.js'
import { DEFAULT_MAX_SYNC_WINDOW, DEFAULT_SESSION_TIMEOUTS, ServerSession, type SessionTimeouts } from './server-session.js'
import { COMPLETION_RECORD_DAYS, parseEpochName, readCheckpoint } from './receive-store.js'
import type { FaultPoint } from './fault-injection.js'

/** The temporary name DurableFs.writeFileAtomic gives a checkpoint (`.ckpt`) or a send restart state (`.send`). */
const STALE_TEMPORARY = /^\.\.vectis-.*\.(ckpt|send)\.[0-9a-f]{12}\.tmp$/
const CHECKPOINT_FILE = /^\.vectis-.*\.ckpt$/

export interface PesitServerComponents {
  logger: Logger
  /** `currentEpoch`, when given, names the partial files of each leadership (see receive-store.ts) */
  leadership: Pick<Leadership, 'isLeader'> & Partial<Pick<Leadership, 'currentEpoch'>>
  fs: DurableFs
  journal: TransferJournalPort
  metrics?: PesitMetrics
  progress?: TransferProgressPort
}

export interface PesitServerInit {
  config: PesitConfig
  /** address the listeners bind (VECTIS_BIND_HOST) */
  host?: string
  timeouts?: Partial<SessionTimeouts>
  /** largest PI 7 window agreed to */
  maxSyncWindow?: number
  /** the framing of every listener (tests of partners without the entity prefix); the prefix by default */
  framing?: Framing
  /** how long `stop({ handover: true })` waits for transfers to reach a sync point before aborting them */
  handoverDeadlineMs?: number
  /**
   * Where a connection is forwarded during a hand-over drain; by default the successor's address and the same
   * port (members run the same configuration).
   */
  forwardTarget?: (serverId: string, successorAddress: string, port: number) => { host: string, port: number }
  /** fault-injection points enabled (VECTIS_FAULT_INJECTION): tests only */
  faults?: readonly FaultPoint[]
}

export interface PesitServerStatus {
  id: string
  port: number
  /** PeSIT over TLS on this listener */
  tls: boolean
  running: boolean
  connections: number
}

export interface StopOptions {
  handover?: boolean
  deadlineMs?: number
}

interface Listener {
  config: PesitServerConfig
  server: Server
  port: number
  sessions: Set<ServerSession>
  sockets: Set<Socket>
  /** connections accepted after stopAccepting(), waiting for the drain to forward them */
  held: Set<Socket>
  nextConnectionId: number
  /**
   * a TLS listener: the TLS server that does its handshakes (its context replaced when the files change), the
   * file watcher, and the connections whose handshake has not completed
   */
  tls?: { server: TlsServer, watcher: TlsFileWatcher, pending: Map<string, Socket> }
}

/** The subject CN of a client certificate the TLS listener verified (none for plain TCP or an unverified one). */
function clientCertificate (socket: Socket): { clientCertificateCn?: string } {
  if (!(socket instanceof TLSSocket) || !socket.authorized) return {}
  const cn = socket.getPeerCertificate().subject?.CN
  return typeof cn === 'string' ? { clientCertificateCn: cn } : {}
}

/** Listeners are keyed by server id and kind: one plain and one TLS listener may serve the same id. */
function listenerKey (id: string, tls: boolean): string {
  return tls ? `${id}/tls` : id
}

export class PesitServer implements Startable {
  private readonly log: Logger
  private readonly listeners = new Map<string, Listener>()
  /** transfers in progress, across listeners (the same partial file whichever listener serves it) */
  private readonly activeTransfers = new Set<string>()
  private readonly timeouts: SessionTimeouts
  private status: 'stopped' | 'starting' | 'running' | 'stopping' = 'stopped'
  private readonly partners
  private readonly files
  /** files being sent, across listeners (the same server id may listen plain and over TLS) */
  private readonly activeSources = new Set<string>()
  private readonly faults: ReadonlySet<FaultPoint>

  constructor (private readonly components: PesitServerComponents, private readonly init: PesitServerInit) {
    validatePesitConfig(init.config)
    this.log = components.logger.child({ component: 'transfer:pesit-server' })
    this.faults = new Set(init.faults ?? [])
    this.timeouts = { ...DEFAULT_SESSION_TIMEOUTS, ...init.timeouts }
    this.partners = new Map(init.config.partners.map((p) => [p.id, p]))
    this.files = new Map(init.config.files.map((f) => [f.id, f]))
  }

  get isRunning (): boolean { return this.status === 'running' }

  /** One row per configured server (for `GET /api/cluster/status`). */
  serversStatus (): PesitServerStatus[] {
    return this.init.config.servers.map((s) => {
      const l = this.listeners.get(listenerKey(s.id, s.tls !== undefined))
      return { id: s.id, port: l?.port ?? s.port, tls: s.tls !== undefined, running: l !== undefined && this.status === 'running', connections: l?.sockets.size ?? 0 }
    })
  }

  /** The port a server listens on (useful with port 0 in tests): its plain listener, or its TLS one. */
  portOf (serverId: string, opts: { tls?: boolean } = {}): number | undefined {
    return this.listeners.get(listenerKey(serverId, opts.tls === true))?.port
  }

  async start (): Promise<void> {
    if (this.status !== 'stopped') return
    this.status = 'starting'
    try {
      await this.removeStaleTemporaries()
      const orphans = await this.components.journal.interruptOrphans()
      if (orphans > 0) this.log.info({ orphans }, 'transfers left in progress by a member that no longer runs them are marked interrupted')
      for (const cfg of this.init.config.servers) await this.listen(cfg)
    } catch (err) {
      await this.closeListeners()
      this.status = 'stopped'
      throw err
    }
    this.status = 'running'
  }

  /**
   * Temporary files of checkpoint and restart-state writes (`..vectis-….ckpt.<hex>.tmp`) left by a member killed
   * in the middle of one: nothing of this server writes yet, and a deposed member's write that loses its temporary
   * only fails (it may not write any more anyway). Also the files earlier leaderships wrote for a transfer already
   * delivered, and completion records older than COMPLETION_RECORD_DAYS.
   */
  private async removeStaleTemporaries (): Promise<void> {
    const fs = this.components.fs
    let removed = 0
    let records = 0
    let orphans = 0
    const before = Date.now() - COMPLETION_RECORD_DAYS * 24 * 3600 * 1000
    for (const { directory } of configuredDirectories(this.init.config)) {
      const names = await fs.readdir(directory).catch(() => [] as string[])
      // The newest leadership's checkpoint of each transfer, from one listing of the directory.
      const newest = new Map<string, { name: string, epoch: number }>()
      for (const name of names) {
        if (STALE_TEMPORARY.test(name)) {
          await fs.unlink(join(directory, name))
          removed++
          continue
        }
        const c = CHECKPOINT_FILE.test(name) ? parseEpochName(name, '.ckpt') : undefined
        if (c !== undefined && (newest.get(c.stem)?.epoch ?? -2) < c.epoch) newest.set(c.stem, { name, epoch: c.epoch })
      }
      for (const [stem, c] of newest) {
        const path = join(directory, c.name)
        const completed = (await readCheckpoint(fs, path))?.completed
        if (completed === undefined) continue
        // A delivered transfer (not merely recorded complete: its leader may have died before the delivery, which
        // a replay then finishes from its partial file): what other leaderships wrote for it, an old leader paused
        // past its lease check included, are orphans (receive-store.ts).
        if (await fs.exists(join(directory, completed.finalName))) {
          for (const name of names) {
            const f = parseEpochName(name, '.part') ?? parseEpochName(name, '.ckpt')
            if (f?.stem !== stem || f.epoch === c.epoch) continue
            await fs.unlink(join(directory, name))
            orphans++
          }
        }
        // Completion records past their time: a requester restarts a transfer within minutes, not days.
        if (((await fs.stat(path))?.mtimeMs ?? Infinity) >= before) continue
        await fs.unlink(path)
        records++
      }
    }
    if (removed > 0) this.log.info({ removed }, 'removed temporary files left by an interrupted checkpoint write')
    if (orphans > 0) this.log.info({ removed: orphans }, 'removed files earlier leaderships wrote for transfers already delivered')
    if (records > 0) this.log.info({ removed: records, days: COMPLETION_RECORD_DAYS }, 'removed completion records of files delivered long ago')
  }

  private async listen (cfg: PesitServerConfig): Promise<void> {
    const l: Listener = {
      config: cfg, server: createServer({ noDelay: true, pauseOnConnect: true }), port: cfg.port, sessions: new Set(), sockets: new Set(), held: new Set(),
      nextConnectionId: 1
    }
    if (cfg.tls !== undefined) {
      const t = cfg.tls
      // Read now: a missing or mismatched file fails the start, with its name.
      const server = this.tlsServer(l, t, readTlsFilesSync(t))
      const watcher = new TlsFileWatcher(t, (m) => { server.setSecureContext({ ...m, minVersion: t.minVersion }) }, this.log.child({ server: cfg.id }))
      l.tls = { server, watcher, pending: new Map() }
      await watcher.start()
    }
    l.server.on('connection', (socket) => { this.accept(l, socket) })
    l.server.on('error', (err) => { this.log.error({ err, server: cfg.id }, 'listener error') })
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => { reject(err) }
      l.server.once('error', onError)
      l.server.listen({ port: cfg.port, host: this.init.host }, () => {
        l.server.off('error', onError)
        resolve()
      })
    })
    const addr = l.server.address()
    if (addr !== null && typeof addr === 'object') l.port = addr.port
    this.listeners.set(listenerKey(cfg.id, cfg.tls !== undefined), l)
    this.components.metrics?.serverRunning?.(cfg.id, true)
    this.log.info({ server: cfg.id, port: l.port, tls: cfg.tls !== undefined ? { clientAuth: cfg.tls.clientAuth, minVersion: cfg.tls.minVersion } : undefined }, 'PeSIT server listening')
  }

  private accept (l: Listener, socket: Socket): void {
    socket.on('error', () => {}) // reported through the channel or the forwarder; never an uncaught 'error'
    if (this.forwardTo !== undefined) return this.forward(l, socket, this.forwardTo)
    if (this.holding) {
      // Hand-over in progress: neither refused nor served; forwarded once the successor is known.
      l.held.add(socket)
      socket.once('close', () => { l.held.delete(socket) })
      return
    }
    // The lease is checked before anything is read: a member that is not leader serves nothing.
    if (this.status !== 'running' || !this.components.leadership.isLeader()) {
      this.log.warn({ server: l.config.id, remote: socket.remoteAddress }, 'connection dropped: not leader')
      socket.destroy()
      return
    }
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`
    socket.setNoDelay(true)
    if (l.tls === undefined) {
      socket.resume()
      this.serve(l, socket, remote)
      return
    }
    // TLS is set up here, after the lease check and the hand-over's hold, so that a drain forwards the raw
    // connection and the successor does the handshake. The listener's TLS server (never listening itself) takes it.
    l.sockets.add(socket)
    l.tls.pending.set(remote, socket)
    socket.once('close', () => {
      l.sockets.delete(socket)
      // Node closes a verified-but-untrusted client certificate's connection without an error event.
      if (l.tls!.pending.delete(remote)) this.log.warn({ server: l.config.id, remote }, 'TLS connection closed before its handshake completed (client certificate not trusted, or the client gave up)')
    })
    l.tls.server.emit('connection', socket)
  }

  /** A TLS listener's server: handshakes (with the client-certificate policy), errors logged, sessions served. */
  private tlsServer (l: Listener, t: ServerTlsConfig, material: TlsMaterial): TlsServer {
    const server = createTlsServer({
      ...material, minVersion: t.minVersion, requestCert: t.clientAuth !== 'none', rejectUnauthorized: t.clientAuth === 'required',
      handshakeTimeout: this.timeouts.connectMs
    }, (secure) => {
      const remote = `${secure.remoteAddress ?? '?'}:${secure.remotePort ?? '?'}`
      const raw = l.tls!.pending.get(remote)
      l.tls!.pending.delete(remote)
      if (raw !== undefined) l.sockets.delete(raw) // counted from here on as the TLS socket
      // A hand-over that began during the handshake: the partner reconnects to the successor.
      if (this.status !== 'running' || this.holding || this.forwardTo !== undefined || !this.components.leadership.isLeader()) {
        secure.destroy()
        return
      }
      this.serve(l, secure, remote)
    })
    server.on('tlsClientError', (err, secure) => {
      const remote = `${secure.remoteAddress ?? '?'}:${secure.remotePort ?? '?'}`
      l.tls!.pending.delete(remote)
      const reason = (err as NodeJS.ErrnoException).code === 'ECONNRESET'
        ? 'the client closed the connection during the handshake (does it trust this server\'s certificate?)'
        : shortTlsReason(err)
      this.log.warn({ server: l.config.id, remote, reason }, 'TLS handshake failed')
      // Node reports a handshake timeout here without closing the connection (found by the fuzzer).
      secure.destroy()
    })
    return server
  }

  /** Runs one session over `socket` (plain TCP, or TLS once the handshake is done). */
  private serve (l: Listener, socket: Socket, remote: string): void {
    socket.on('error', () => {})
    const y = l.nextConnectionId
    l.nextConnectionId = l.nextConnectionId >= 255 ? 1 : l.nextConnectionId + 1
    const overLimit = l.sockets.size >= l.config.maxConnections
    l.sockets.add(socket)
    this.components.metrics?.connectionOpened?.(l.config.id)
    const channel = new FpduChannel(socket, { maxEntitySize: l.config.maxEntitySize, framing: this.init.framing ?? 'prefixed', writeTimeoutMs: this.timeouts.readMs })
    const session = new ServerSession(channel, {
      server: l.config,
      partners: this.partners,
      files: this.files,
      fs: this.components.fs,
      journal: this.components.journal,
      leadership: this.components.leadership,
      logger: this.log.child({ server: l.config.id }),
      metrics: this.components.metrics ?? {},
      ...(this.components.progress !== undefined ? { progress: this.components.progress } : {}),
      activeTransfers: this.activeTransfers,
      activeSources: this.activeSources,
      faults: this.faults,
      epoch: () => this.components.leadership.currentEpoch?.()?.number ?? 0,
      timeouts: this.timeouts,
      maxSyncWindow: this.init.maxSyncWindow ?? DEFAULT_MAX_SYNC_WINDOW,
      ...(overLimit ? { refuseWith: DIAG.REMOTE_CONGESTED } : {}),
      ...clientCertificate(socket)
    }, y, remote)
    l.sessions.add(session)
    void session.run().finally(() => {
      l.sessions.delete(session)
      l.sockets.delete(socket)
      socket.destroy()
      this.components.metrics?.connectionClosed?.(l.config.id)
    })
  }

  /**
   * Stops accepting and ends the sessions: ABORT now, or with `handover` IDT at each transfer's next sync point
   * (ABORT for those still running at the deadline).
   */
  async stop (opts: StopOptions = {}): Promise<void> {
    // During a hand-over drain the listeners keep forwarding until the drain ends, whoever asks to stop
    // (the demotion usually arrives while the drain runs).
    if (this.drainEnd !== undefined) await this.drainEnd
    if (this.stopping !== undefined) return await this.stopping
    if (this.status === 'stopped') return
    this.status = 'stopping'
    this.stopping = this.closeListeners(opts).finally(() => {
      this.status = 'stopped'
      this.stopping = undefined
    })
    await this.stopping
  }

  private stopping: Promise<void> | undefined
  private drainEnd: Promise<void> | undefined

  private holding = false

  /** True from `stopAccepting` of a hand-over until it ends: the hand-over, not the leader binding, stops the servers. */
  handingOver (): boolean { return this.holding }
  private forwardTo: string | undefined

  /**
   * The hooks of a graceful hand-over (cluster/leadership-api.ts): stop taking sessions (new connections are
   * held), interrupt transfers at their next sync point with IDT, then forward held and new connections at TCP
   * level to the successor for the drain period, and stop.
   */
  handoverHooks (): HandoverHooks {
    return {
      stopAccepting: async () => { this.holding = true },
      cancel: async () => {
        // The hand-over did not happen: held connections are closed (the partner retries) and, if this member no
        // longer leads, the servers stop here, since the leader binding left them to the hand-over.
        this.holding = false
        for (const l of this.listeners.values()) for (const s of [...l.held]) { l.held.delete(s); s.destroy() }
        if (!this.components.leadership.isLeader()) await this.stop()
      },
      interrupt: async (deadlineMs: number) => { await this.interruptSessions(deadlineMs) },
      drain: async (successorAddress: string, drainMs: number) => {
        this.forwardTo = successorAddress
        for (const l of this.listeners.values()) {
          for (const s of [...l.held]) {
            l.held.delete(s)
            this.forward(l, s, successorAddress)
          }
        }
        this.drainEnd = new Promise((resolve) => setTimeout(resolve, drainMs))
        await this.drainEnd
        this.drainEnd = undefined
        await this.stop()
      }
    }
  }

  private async interruptSessions (deadlineMs: number): Promise<void> {
    for (const l of this.listeners.values()) for (const s of l.sessions) s.requestStop('handover')
    await this.waitSessions(Date.now() + deadlineMs)
    for (const l of this.listeners.values()) for (const s of l.sessions) s.requestStop('abort')
  }

  private forward (l: Listener, socket: Socket, successor: string): void {
    const target = this.init.forwardTarget?.(l.config.id, successor, l.config.port) ?? { host: successor, port: l.config.port }
    const upstream = netConnect({ host: target.host, port: target.port, noDelay: true })
    upstream.on('error', () => { socket.destroy() })
    socket.on('error', () => { upstream.destroy() })
    socket.on('close', () => { upstream.destroy() })
    upstream.on('close', () => { socket.destroy() })
    l.sockets.add(socket)
    socket.once('close', () => { l.sockets.delete(socket) })
    upstream.once('connect', () => {
      socket.pipe(upstream)
      upstream.pipe(socket)
      socket.resume()
    })
    this.log.info({ server: l.config.id, remote: socket.remoteAddress, to: `${target.host}:${target.port}` }, 'hand-over drain: connection forwarded')
  }

  private async closeListeners (opts: StopOptions = {}): Promise<void> {
    const closing = [...this.listeners.values()].map(async (l) => {
      await new Promise<void>((resolve) => { l.server.close(() => { resolve() }) })
    })
    const all = [...this.listeners.values()].flatMap((l) => [...l.sessions])
    for (const s of all) s.requestStop(opts.handover === true ? 'handover' : 'abort')
    if (opts.handover === true) {
      const deadline = Date.now() + (opts.deadlineMs ?? this.init.handoverDeadlineMs ?? 5000)
      await this.waitSessions(deadline)
      for (const l of this.listeners.values()) for (const s of l.sessions) s.requestStop('abort')
    }
    await this.waitSessions(Date.now() + this.timeouts.closeGraceMs + 2000)
    for (const l of this.listeners.values()) {
      for (const sock of l.sockets) sock.destroy()
      for (const sock of l.held) sock.destroy()
    }
    this.holding = false
    this.forwardTo = undefined
    await Promise.all(closing)
    for (const l of this.listeners.values()) {
      l.tls?.watcher.stop()
      this.components.metrics?.serverRunning?.(l.config.id, false)
      this.log.info({ server: l.config.id }, 'PeSIT server stopped')
    }
    this.listeners.clear()
  }

  private async waitSessions (deadline: number): Promise<void> {
    for (let i = 0; i < 100_000; i++) {
      const live = [...this.listeners.values()].reduce((a, l) => a + l.sessions.size, 0)
      if (live === 0 || Date.now() >= deadline) return
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
}
