/**
 * The one place that builds the parts and connects them. Start order: data directories, health, HTTP (probes
 * answer from the first second), cluster; stop runs the reverse. Later parts (store, Kubernetes labels, PeSIT
 * servers) slot into `parts` at their place in that order.
 *
 * Start-up time is mostly module loading, so what only some configurations use is imported when needed: libp2p
 * (clustered members; from construction on, while the earlier parts start: `cluster/deferred-transport.ts`) and the
 * Kubernetes client (once the cluster has started: `k8s/deferred-parts.ts`, which says what that keeps).
 */
import { join } from 'node:path'
import type { IncomingMessage } from 'node:http'
import type { WebSocket } from 'ws'
import { monotonicClock } from '../common/clock.js'
import type { Logger } from '../common/logger.js'
import type { VectisConfig } from './config.js'
import { Lifecycle, type NamedPart, type Startable } from '../common/lifecycle.js'
import { Metrics } from './metrics.js'
import { Health } from './health.js'
import { HttpServer, HttpError, sendUnlessStalled, type Reply } from './http-server.js'
import { checkTlsFiles, ensureWritableDir, writeDemoSample } from './data-dirs.js'
import { StandaloneCluster } from '../cluster/standalone.js'
import { MembershipCluster } from '../cluster/cluster-service.js'
import { DeferredTransport } from '../cluster/deferred-transport.js'
import { JournalReplicator, type ReplicationJournal } from '../cluster/journal-replication.js'
import { ProgressRelay } from '../cluster/progress-relay.js'
import { QueueRunner, type QueueJournal } from '../transfer/queue-runner.js'
import { ScheduleRunner } from '../transfer/schedule-runner.js'
import { TransferQueueApi } from './transfer-queue-api.js'
import type { LeaderForwarding } from './leader-forwarding.js'
import type { Journal } from '../store/journal.js'
import { Discovery } from '../cluster/discovery.js'
import { K8sDeferred } from '../k8s/deferred-parts.js'
import { configuredDirectories } from '../transfer/config-types.js'
import { PesitServer } from '../transfer/pesit-server.js'
import { PesitLeaderBinding } from '../transfer/pesit-leader-binding.js'
import { pesitMetricsFromProm } from '../transfer/pesit-prom-metrics.js'
import { NodeDurableFs } from '../store/durable-fs.js'
import { journalPortFromStore } from '../transfer/journal-adapter.js'
import type { ClusterEvents, ClusterService } from '../cluster/cluster-api.js'
import { LeadershipTransferError } from '../cluster/errors.js'
import { Store } from '../store/store.js'
import { Backups } from '../store/backups.js'
import { TransfersQueryError } from '../store/errors.js'
import { BackupApi } from './backup-api.js'
import { registerConsole } from './console-assets.js'
import { ProgressCollector, TransferFeed } from './transfer-feed.js'
import type { TransferRecord } from '../store/journal-records.js'
import type { MemberClusterStatus, ServerStatus } from './status.js'

/** Unsent transfer events past which an events stream's client is taken as not reading and closed. */
const MAX_STREAM_BUFFER_BYTES = 1024 * 1024

export class Daemon implements Startable {
  readonly metrics: Metrics
  readonly health = new Health()
  readonly http: HttpServer
  readonly cluster: ClusterService
  readonly store: Store
  readonly pesit: PesitServer
  /** The Kubernetes parts (label controller, pod watch), loaded only when the Kubernetes part is on. */
  readonly k8s: K8sDeferred | undefined
  /** The journal on every member (a cluster member only; a standalone one has no one to share it with). */
  readonly replication: JournalReplicator | undefined
  readonly backups: BackupApi
  private transport: DeferredTransport | undefined
  private readonly lifecycle: Lifecycle
  private readonly log: Logger
  private readonly unsubscribe: Array<() => void> = []
  /** Rows replication applied here (a standby's view of the leader's transfers), for the transfer feed. */
  private readonly appliedListeners = new Set<(row: TransferRecord) => void>()
  /** Transfer rows as they change here, for `GET /api/cluster/events?include=transfers` (throttled per transfer). */
  private readonly transferFeed: TransferFeed
  /** The PeSIT sessions' live progress, to the feed here and, on the leader, to the other members. */
  private readonly progress: ProgressCollector

  constructor (components: { logger: Logger }, readonly config: VectisConfig) {
    this.log = components.logger.child({ component: 'daemon' })
    this.metrics = new Metrics()
    this.http = new HttpServer({ logger: components.logger }, {
      host: config.bindHost, port: config.httpPort, user: config.apiUser, password: config.apiPassword,
      ...(config.httpTls !== undefined ? { tls: config.httpTls } : {})
    })
    this.store = new Store({ logger: components.logger }, { dataDir: config.dataDir, retentionDays: config.journalRetentionDays })
    this.cluster = config.clusterEnabled
      ? this.buildCluster(components.logger)
      : new StandaloneCluster({ logger: components.logger }, {
        clusterName: config.clusterName,
        nodeName: config.podName,
        address: config.podIp,
        // Every start is a new leadership: a new epoch, higher than any this member has seen, persisted first.
        nextEpoch: (leader) => this.store.clusterState.raiseEpoch(leader)
      })
    const leadership = this.cluster.leadership
    // The store opens its database in start(): the journal is read lazily. A restart continues its interrupted row.
    const journal = journalPortFromStore(() => this.store.journal, {
      member: config.podName,
      epoch: () => leadership.currentEpoch()?.number ?? 0,
      ...(config.replication === 'sync' ? { replicated: async (seq: number) => { await this.replication?.awaitReplicated(seq) } } : {})
    })
    const progressRelay = this.transport === undefined ? undefined : new ProgressRelay({ logger: components.logger, transport: this.transport, leadership }, { clusterName: config.clusterName, nodeName: config.podName })
    this.progress = new ProgressCollector((items) => {
      this.transferFeed.progress(items)
      progressRelay?.publish(items)
    })
    this.pesit = new PesitServer({
      logger: components.logger,
      leadership,
      fs: new NodeDurableFs(),
      journal,
      metrics: pesitMetricsFromProm(this.metrics),
      progress: this.progress
    }, { config: config.pesit, host: config.bindHost, faults: config.faults })
    if (this.cluster instanceof MembershipCluster) this.cluster.registerHandoverHooks(this.pesit.handoverHooks())
    const membership = this.cluster instanceof MembershipCluster ? this.cluster : undefined
    this.replication = membership === undefined || this.transport === undefined
      ? undefined
      : new JournalReplicator({ logger: components.logger, journal: this.lazyJournal(), transport: this.transport, cluster: membership, leadership },
        { clusterName: config.clusterName, nodeName: config.podName, mode: config.replication })
    const replication = this.replication
    // Loaded once the cluster has started, not before it (see k8s/deferred-parts.ts for what that keeps and what not).
    const k8s = this.k8s = !config.k8sEnabled
      ? undefined
      : new K8sDeferred({
        logger: components.logger,
        leadership,
        metrics: { labelErrorsTotal: this.metrics.k8sLabelErrors, labelsInSync: this.metrics.k8sLabelsInSync },
        // The Kubernetes API's word that a member's process is gone is a verified death (the fast failover path).
        verifiedDead: membership === undefined ? undefined : (name, incarnation) => { membership.verifiedDead(name, incarnation) },
        incarnation: membership === undefined ? undefined : () => membership.incarnation,
        // A newer leader fenced this pod: whatever our lease says, this leadership stops serving PeSIT.
        fenced: (e) => { binding.standDown(e.epoch, `pod fenced by epoch ${e.fencedEpoch}`) }
      }, { config })
    // Only the leader runs the servers, and only once its pod carries the label (when Kubernetes is on).
    const binding = new PesitLeaderBinding({ logger: components.logger, leadership, servers: this.pesit }, {
      beforeStart: async (signal) => {
        // A new leader serves once its journal holds what the others have (VECTIS_REPLICATION=sync) and its pod
        // carries the label.
        await this.replication?.leaderReady()
        if (k8s !== undefined) await k8s.waitLabelsReady(signal)
      },
      // A takeover (not a cold start): from the old leader's last sign to serving.
      onServing: (e, sinceElectedMs) => {
        if (e.previousLeaderSilentMs !== undefined) this.metrics.clusterTakeover.observe((e.previousLeaderSilentMs + sinceElectedMs) / 1000)
      }
    })
    this.transferFeed = new TransferFeed({
      subscribe: (listener) => {
        const offApplied = ((l) => { this.appliedListeners.add(l); return () => { this.appliedListeners.delete(l) } })(listener)
        const offAppended = this.store.started
          ? this.store.journal.onAppended((e) => { if (e.kind === 'transfer') listener(e.data) })
          : () => {}
        return () => { offApplied(); offAppended() }
      },
      lookup: (id) => this.store.started ? this.store.journal.get(id) : undefined
    })
    this.registerRoutes()
    this.wireMetrics()
    const transport = this.transport
    const forwarding: LeaderForwarding | undefined = membership === undefined || transport === undefined
      ? undefined
      : {
          leaderAddress: () => membership.leaderAddress(),
          request: async (address, payload, opts) => await transport.request(address, payload, opts),
          serve: (name, handler) => { membership.serve(name, handler) }
        }
    this.backups = new BackupApi({
      logger: components.logger,
      http: this.http,
      store: this.store,
      backups: new Backups({ logger: components.logger, clock: monotonicClock },
        { dir: join(config.sharedDir, 'backups'), member: config.podName, keep: config.backupKeep, scratchDir: config.dataDir }),
      leadership,
      leaderReady: async () => { await this.replication?.leaderReady() },
      ...(forwarding !== undefined ? { forwarding } : {}),
      onBackup: (ok) => {
        this.metrics.backups.inc({ result: ok ? 'ok' : 'failed' })
        if (ok) this.metrics.backupLastSuccess.set(Date.now() / 1000)
      }
    }, { clusterName: config.clusterName, ...(config.backupSchedule !== undefined ? { schedule: config.backupSchedule } : {}) })
    const partners = new Map(config.pesit.partners.map((p) => [p.id, p]))
    const files = new Map(config.pesit.files.map((f) => [f.id, f]))
    const queueRunner = new QueueRunner({
      logger: components.logger,
      leadership,
      leaderReady: async () => { await this.replication?.leaderReady() },
      journal: () => queueJournal(this.store.journal),
      partners,
      files,
      fs: new NodeDurableFs(),
      progress: this.progress,
      durable: async (seq) => { await this.replication?.awaitMajority(seq) },
      onAttempt: (direction, outcome) => { this.metrics.queueAttempts.inc({ direction, outcome }) }
    }, { member: config.podName })
    const queueApi = new TransferQueueApi({
      logger: components.logger,
      http: this.http,
      leadership,
      journal: () => this.store.journal,
      durable: async (seq, timeoutMs) => { await this.replication?.awaitMajority(seq, timeoutMs) },
      leaderReady: async () => { await this.replication?.leaderReady() },
      ...(forwarding !== undefined ? { forwarding } : {}),
      queued: () => { queueRunner.wake() },
      cancelled: (id) => { queueRunner.cancelled(id) }
    }, { clusterName: config.clusterName, member: config.podName, sharedDir: config.sharedDir, partners, files })
    const schedules = new ScheduleRunner({
      logger: components.logger,
      leadership,
      leaderReady: async () => { await this.replication?.leaderReady() },
      journal: () => this.store.journal.queue,
      queued: () => { queueRunner.wake() }
    }, { member: config.podName, schedules: config.pesit.schedules, files, partners })
    this.metrics.onCollect(() => { if (this.store.started) this.metrics.queueDepth.set(this.store.journal.queue.depth()) })

    const dirs: Startable = {
      start: async () => {
        ensureWritableDir('VECTIS_DATA_DIR', config.dataDir)
        ensureWritableDir('VECTIS_SHARED_DIR', config.sharedDir)
        for (const d of configuredDirectories(config.pesit)) ensureWritableDir(d.key, d.directory)
        // Every member checks the TLS files at start: a standby must not learn of a bad key when it takes over.
        config.pesit.servers.forEach((s, i) => { if (s.tls !== undefined) checkTlsFiles(`servers[${i}].tls`, s.tls) })
        if (config.httpTls !== undefined) checkTlsFiles('VECTIS_HTTP_TLS_CERT_FILE', config.httpTls)
        if (config.demo !== undefined) writeDemoSample(config.demo)
      },
      stop: async () => {}
    }
    const parts: NamedPart[] = [
      { name: 'data-dirs', part: dirs },
      { name: 'store', part: this.store },
      { name: 'health', part: this.health },
      { name: 'http', part: this.http },
      { name: 'journal-events', part: this.journalEvents() },
      // Listeners of leadership events subscribe before the cluster starts; at stop, the cluster goes first, so a
      // leader hands over (its PeSIT hooks run inside) before the servers and labels are torn down. Replication
      // comes before the PeSIT servers: a new leader settles its log before it writes to it.
      ...(replication === undefined ? [] : [{ name: 'journal-replication', part: { start: async () => { replication.start() }, stop: async () => { replication.stop() } } }]),
      ...(progressRelay === undefined ? [] : [{ name: 'transfer-progress', part: this.progressPart(progressRelay) }]),
      { name: 'pesit', part: binding },
      { name: 'backups', part: this.backups },
      // After the PeSIT servers: a new leader requeues what its predecessor left running once its journal is settled.
      { name: 'transfer-queue', part: queueRunner },
      { name: 'transfer-schedules', part: schedules },
      { name: 'transfer-queue-api', part: queueApi },
      ...(k8s === undefined ? [] : [{ name: 'k8s-labels', part: k8s.labelsPart }]),
      ...(k8s?.podWatchPart === undefined ? [] : [{ name: 'k8s-pod-watch', part: k8s.podWatchPart }]),
      { name: 'cluster', part: this.cluster },
      // Loads the two above, which start in the background: the daemon has started only once they run (or fails).
      ...(k8s === undefined ? [] : [{ name: 'k8s-loaded', part: k8s.loadedPart }])
    ]
    this.lifecycle = new Lifecycle(parts, this.log)
    this.health.register('http', () => this.http.port === undefined ? 'not listening' : undefined)
    const cluster = this.cluster
    if (cluster instanceof MembershipCluster) this.health.register('cluster', () => cluster.failure()?.message)
  }

  get state (): string { return this.lifecycle.state }

  private buildCluster (logger: Logger): MembershipCluster {
    const c = this.config
    // libp2p is loaded from now on, while the earlier parts start; the cluster part waits for it (a standalone daemon
    // never loads it). Its failure is reported by the transport's start, not as an unhandled rejection.
    const libp2p = import('../cluster/transport.js')
    libp2p.catch(() => {})
    const transport = this.transport = new DeferredTransport(async () => {
      const { Libp2pTransport } = await libp2p
      return new Libp2pTransport({ logger }, {
        dataDir: c.dataDir,
        advertiseHost: c.podIp,
        bindHost: c.bindHost,
        port: c.clusterPort,
        clusterName: c.clusterName,
        secret: c.clusterSecret
      })
    })
    const discovery = new Discovery({ logger }, {
      dnsName: c.discoveryDns,
      srv: c.discoveryDnsSrv,
      port: c.clusterPort,
      dnsServers: c.dnsServers,
      seeds: c.seeds,
      selfAddresses: [`${c.podIp}:${c.clusterPort}`]
    })
    const store = this.store
    return new MembershipCluster({
      logger,
      transport,
      discovery: {
        start: async () => { await discovery.start() },
        stop: async () => { await discovery.stop() },
        onPeers: (listener) => discovery.events.on('peers:changed', (e) => { listener(e.peers) }),
        setJoined: (joined) => { discovery.setJoined(joined) }
      },
      state: {
        load: () => store.clusterState.membershipState(),
        save: (s) => { store.clusterState.saveMembershipState(s, s.highestEpoch, s.maxCounter) }
      }
    }, {
      clusterName: c.clusterName,
      nodeName: c.podName,
      advertiseHost: c.podIp,
      clusterPort: c.clusterPort,
      clusterSize: c.clusterSize,
      quorum: c.quorum,
      heartbeatMs: c.heartbeatMs,
      failureTimeoutMs: c.failureTimeoutMs,
      forceNewCluster: c.forceNewCluster,
      handoverDrainMs: c.handoverDrainMs
    })
  }

  async start (): Promise<void> { await this.lifecycle.start() }

  async stop (): Promise<void> {
    await this.lifecycle.stop()
    this.progress.stop()
    for (const u of this.unsubscribe.splice(0)) u()
  }

  /**
   * The cluster's status with the journal's (this member's position and lag, and each member's last known) and, per
   * member, the silence this member's failure detector measured (null where it measures none: itself, and on a
   * standby the members other than its coordinator) and whether its pod carries the leader label as this member's
   * pod watch last saw it (null without one).
   */
  clusterStatus (): MemberClusterStatus {
    const s = this.cluster.status()
    const { seq, lagEntries, members } = this.journalState()
    const ages = this.cluster.heartbeatAgesMs()
    return {
      ...s,
      members: s.members.map((m) => ({
        ...m,
        journalSeq: m.name === s.nodeName ? seq : (members[m.name] ?? null),
        heartbeatAgeMs: ages[m.name] ?? null,
        labelled: this.k8s?.leaderLabelled(m.name) ?? null
      })),
      journal: { seq, lagEntries }
    }
  }

  /**
   * This member's position in the leader's journal and its lag, and the other members' positions it knows (the
   * leader: from their acknowledgements); zeros before the store opened. A standalone member: its own journal.
   */
  private journalState (): { seq: number, lagEntries: number, members: Record<string, number> } {
    if (!this.store.started) return { seq: 0, lagEntries: 0, members: {} }
    return this.replication?.state() ?? { seq: this.store.journal.position(), lagEntries: 0, members: {} }
  }

  servers (): ServerStatus[] {
    return this.pesit.serversStatus().map((s) => ({ id: s.id, port: s.port, tls: s.tls, running: s.running, connections: s.connections }))
  }

  /**
   * Cluster events go to the journal (the history operators read after an incident), and journal writes about
   * transfers are refused once this member's lease is gone.
   */
  private journalEvents (): Startable {
    const offs: Array<() => void> = []
    return {
      start: async () => {
        const journal = this.store.journal
        const member = this.config.podName
        // A new leader writes once it may (VECTIS_REPLICATION=sync: after it took what the members hold past its
        // position); before that, an append would take a sequence number one of those entries holds.
        journal.setLeaderCheck(() => this.cluster.leadership.isLeader() && (this.replication?.writable() ?? true))
        const epochNow = (): number => this.cluster.leadership.currentEpoch()?.number ?? 0
        offs.push(
          this.cluster.events.on('view:installed', (v) => {
            journal.appendEvent({ type: 'view:installed', epoch: epochNow(), member, viewId: v.viewId, members: v.members.map((m) => m.name) })
          }),
          this.cluster.events.on('leader:elected', (e) => {
            journal.appendEvent({ type: 'leader:elected', epoch: e.epoch.number, member, leader: e.epoch.leader })
          }),
          this.cluster.events.on('leader:demoted', (e) => {
            journal.appendEvent({ type: 'leader:demoted', epoch: e.epoch.number, member, leader: e.epoch.leader, reason: e.reason })
          }),
          this.cluster.events.on('member:suspected', (m) => {
            journal.appendEvent({ type: 'member:suspected', epoch: epochNow(), member: m.name })
          })
        )
      },
      stop: async () => {
        for (const off of offs.splice(0)) off()
        if (this.store.started) this.store.journal.setLeaderCheck(undefined)
      }
    }
  }

  /** The leader's live progress from the cluster, into this member's feed. */
  private progressPart (relay: ProgressRelay): { start: () => Promise<void>, stop: () => Promise<void> } {
    let off: (() => void) | undefined
    return {
      start: async () => {
        relay.start()
        off = relay.onProgress((items) => { this.transferFeed.progress(items) })
      },
      stop: async () => { off?.() }
    }
  }

  /** The store's journal, opened in the store's start(): each call goes to it then. */
  private lazyJournal (): ReplicationJournal {
    const j = (): ReplicationJournal => this.store.journal
    return {
      position: () => j().position(),
      changesSince: (seq, limit) => j().changesSince(seq, limit),
      applyRun: (run) => {
        const r = j().applyRun(run)
        if (this.appliedListeners.size > 0 && r.applied > 0) {
          const ids = new Set(run.entries.flatMap((e) => e.kind === 'transfer' ? [e.data.id] : []))
          for (const id of ids) {
            const row = this.store.journal.get(id)
            if (row === undefined) continue
            // The run is committed: a listener's failure (the console's feed) must not reach replication.
            for (const l of this.appliedListeners) {
              try { l(row) } catch (err) { this.log.warn({ err, transfer: id }, 'a listener of replicated transfer rows failed') }
            }
          }
        }
        return r
      },
      alignTo: (head) => j().alignTo(head),
      truncateAfterPosition: (epoch) => j().truncateAfterPosition(epoch),
      prunedThrough: () => j().prunedThrough(),
      onAppended: (l) => j().onAppended(l)
    }
  }

  private wireMetrics (): void {
    const m = this.metrics
    const c = this.cluster
    // Gauges are read from the status at every scrape; only the view-change counter needs the event.
    this.unsubscribe.push(c.events.on('view:installed', () => { m.clusterViewChanges.inc() }))
    this.unsubscribe.push(c.events.on('peer:incompatible', () => { m.clusterIncompatiblePeers.inc() }))
    m.onCollect(() => {
      const s = c.status()
      m.clusterMembers.set(s.memberCount)
      m.clusterIsLeader.set(c.leadership.isLeader() ? 1 : 0)
      m.clusterQuorum.set(s.quorum.ok ? 1 : 0)
      m.clusterEpoch.set(s.epoch)
      m.clusterLeaseRemaining.set(c.leadership.leaseRemainingMs() / 1000)
      m.clusterHeartbeatAgeMax.set(c.heartbeatAgeMaxSeconds())
      const j = this.journalState()
      m.journalSeq.set(j.seq)
      m.journalLag.set(j.lagEntries)
    })
    // A leader change is counted when this member learns of a leader other than the last one it knew (its own
    // election included), whichever event taught it.
    let lastLeader: string | null = null
    const noteLeader = (): void => {
      const leader = c.status().leader
      if (leader !== null && leader !== lastLeader) m.clusterLeaderChanges.inc()
      if (leader !== null) lastLeader = leader
    }
    for (const k of ['view:installed', 'leader:elected', 'leader:demoted'] as const) this.unsubscribe.push(c.events.on(k, noteLeader))
    m.onCollect(noteLeader)
  }

  private registerRoutes (): void {
    const h = this.http
    h.route('GET', '/healthz', () => {
      const r = this.health.report()
      return { status: r.ok ? 200 : 503, json: r.ok ? { status: 'ok' } : { status: 'unhealthy', problems: r.problems } }
    }, { auth: false })
    h.route('GET', '/readyz', () => {
      const r = this.cluster.readiness()
      return r.ready ? { json: { status: 'ready' } } : { status: 503, json: { status: 'not ready', reason: r.reason } }
    }, { auth: false })
    h.route('GET', '/metrics', async () => {
      const { contentType, body } = await this.metrics.render()
      return { headers: { 'content-type': contentType }, raw: body }
    }, { auth: false })
    h.route('GET', '/api/cluster/status', () => ({ json: { ...this.clusterStatus(), servers: this.servers() } }), { auth: true })
    h.route('GET', '/api/transfers', (req) => {
      try {
        return { json: this.store.listTransfers(req.query) }
      } catch (err) {
        if (err instanceof TransfersQueryError) throw new HttpError(400, err.message)
        throw err
      }
    }, { auth: true })
    h.route('GET', '/api/transfers/{id}', (req) => {
      const t = this.store.journal.get(req.params.id!)
      if (t === undefined) throw new HttpError(404, `no transfer ${req.params.id!} in this member's journal`)
      return { json: t }
    }, { auth: true })
    h.route('POST', '/api/cluster/leadership/transfer', async (req): Promise<Reply> => {
      let to: string | undefined
      if (req.body !== undefined) {
        if (typeof req.body !== 'object' || req.body === null || Array.isArray(req.body)) throw new HttpError(400, 'expected a JSON object {"to": "<member name>"}')
        const b = req.body as Record<string, unknown>
        const extra = Object.keys(b).filter((k) => k !== 'to')
        if (extra.length > 0) throw new HttpError(400, `unknown field ${extra[0]}; expected {"to": "<member name>"}`)
        if (b.to !== undefined && (typeof b.to !== 'string' || b.to === '')) throw new HttpError(400, '"to" must be a non-empty member name')
        to = b.to
      }
      try {
        return { json: await this.cluster.transferLeadership(to) }
      } catch (err) {
        if (err instanceof LeadershipTransferError) throw new HttpError(409, err.message)
        throw err
      }
    }, { auth: true })
    h.route('GET', '/api/cluster/events', () => {
      throw new HttpError(426, 'this endpoint is a WebSocket: send an Upgrade request', { upgrade: 'websocket' })
    }, { auth: true })
    h.websocket('/api/cluster/events', (ws, req) => { this.streamEvents(ws, req) }, { auth: true })
    registerConsole(h)
  }

  /**
   * docs/contract.md §3.8 events: `{type, at, epoch, viewId, members, leader}`, the current state first; with
   * `?include=transfers` also `{type: "transfer", at, transfer}` as transfer rows change here (opt-in: clients that
   * did not ask, such as `vectis status --watch`, never see that type).
   */
  private streamEvents (ws: WebSocket, req: IncomingMessage): void {
    const include = new URL(req.url ?? '/', 'http://localhost').searchParams.getAll('include').flatMap((v) => v.split(','))
    const send = (type: string): void => {
      if (ws.readyState !== ws.OPEN) return
      const s = this.cluster.status()
      ws.send(JSON.stringify({ type, at: new Date().toISOString(), epoch: s.epoch, viewId: s.viewId, members: s.members, leader: s.leader }))
    }
    send('state')
    const kinds: Array<keyof ClusterEvents> = ['view:installed', 'leader:elected', 'leader:demoted', 'member:suspected']
    const offs = kinds.map((k) => this.cluster.events.on(k, () => { send(k) }))
    if (include.includes('transfers')) {
      offs.push(this.transferFeed.subscribe((transfer) => {
        // The console reconnects and reads the rows in progress again.
        sendUnlessStalled(ws, JSON.stringify({ type: 'transfer', at: new Date().toISOString(), transfer }), MAX_STREAM_BUFFER_BYTES)
      }))
    }
    ws.on('close', () => { for (const off of offs) off() })
  }
}

/** The journal and its queue as the queue's runner sees them. */
function queueJournal (j: Journal): QueueJournal {
  return {
    due: (now, limit, skip) => j.queue.due(now, limit, skip),
    nextDueAt: (skip) => j.queue.nextDueAt(skip),
    running: () => j.queue.running(),
    get: (id) => j.get(id),
    start: (id, a) => j.queue.start(id, a),
    retryLater: (id, why) => j.queue.retryLater(id, why),
    unconfirmed: (id, d) => j.queue.unconfirmed(id, d),
    recordSyncPoint: (id, u) => j.recordSyncPoint(id, u),
    agreed: (id, n) => j.queue.agreed(id, n),
    forgetRestart: (id) => j.queue.forgetRestart(id),
    complete: (id, r) => j.complete(id, r),
    fail: (id, d) => j.fail(id, d)
  }
}
