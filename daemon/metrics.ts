/**
 * The Prometheus registry of one daemon (no global default registry, so tests can run several daemons in one
 * process). Names are those of docs/contract.md §4. Cluster gauges carry no per-member labels, so
 * `sum(vectis_cluster_is_leader)` over all pods counts leaders.
 */
import { Registry, Gauge, Counter, Histogram, collectDefaultMetrics } from 'prom-client'
import { PEER_DEVIATIONS, TRANSFER_OUTCOMES } from '../transfer/ports.js'
import { QUEUE_OUTCOMES } from '../transfer/queue-runner.js'

export class Metrics {
  readonly registry = new Registry()

  readonly clusterMembers = new Gauge({ name: 'vectis_cluster_members', help: 'Members in the view this member has installed', registers: [this.registry] })
  readonly clusterIsLeader = new Gauge({ name: 'vectis_cluster_is_leader', help: '1 while this member holds a valid leader lease, else 0', registers: [this.registry] })
  readonly clusterQuorum = new Gauge({ name: 'vectis_cluster_quorum', help: '1 when this member is in a primary view (quorum present), else 0', registers: [this.registry] })
  readonly clusterEpoch = new Gauge({ name: 'vectis_cluster_epoch', help: 'Highest leadership epoch this member knows', registers: [this.registry] })
  readonly clusterLeaderChanges = new Counter({ name: 'vectis_cluster_leader_changes_total', help: 'Leader changes observed by this member', registers: [this.registry] })
  readonly clusterViewChanges = new Counter({ name: 'vectis_cluster_view_changes_total', help: 'Views installed by this member', registers: [this.registry] })
  readonly clusterLeaseRemaining = new Gauge({ name: 'vectis_cluster_lease_remaining_seconds', help: 'Seconds left on the leader lease (0 when not leader)', registers: [this.registry] })
  readonly clusterIncompatiblePeers = new Counter({ name: 'vectis_cluster_incompatible_peers_total', help: 'Peers whose cluster protocol version this member does not understand (each counted once; their messages are refused)', registers: [this.registry] })
  readonly clusterTakeover = new Histogram({
    name: 'vectis_cluster_takeover_seconds',
    help: 'On a new leader: from the last sign of life of the leader it followed to its PeSIT servers serving',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30],
    registers: [this.registry]
  })

  readonly clusterHeartbeatAgeMax = new Gauge({ name: 'vectis_cluster_heartbeat_age_max_seconds', help: 'Longest time since a heartbeat from any other member of the view', registers: [this.registry] })
  readonly k8sLabelErrors = new Counter({ name: 'vectis_k8s_label_errors_total', help: 'Failed Kubernetes label or annotation writes', registers: [this.registry] })
  readonly k8sLabelsInSync = new Gauge({ name: 'vectis_k8s_labels_in_sync', help: '1 when the pod labels match this member\'s role, else 0', registers: [this.registry] })
  readonly pesitServersRunning = new Gauge({ name: 'vectis_pesit_servers_running', help: 'PeSIT servers listening on this member', registers: [this.registry] })
  readonly pesitConnectionsActive = new Gauge({ name: 'vectis_pesit_connections_active', help: 'Open PeSIT connections', registers: [this.registry] })
  readonly transfers = new Counter({ name: 'vectis_transfers_total', help: 'Finished transfers', labelNames: ['direction', 'status'] as const, registers: [this.registry] })
  readonly transferDuration = new Histogram({
    name: 'vectis_transfer_duration_seconds',
    help: 'Duration of transfer attempts on this member, from CREATE or SELECT to their end',
    labelNames: ['direction', 'status'] as const,
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600],
    registers: [this.registry]
  })

  readonly transferFailures = new Counter({ name: 'vectis_transfer_failures_total', help: 'Transfer attempts that did not complete (failed or interrupted), by PeSIT diagnostic', labelNames: ['direction', 'diagnostic'] as const, registers: [this.registry] })
  readonly transferBytes = new Counter({ name: 'vectis_transfer_bytes_total', help: 'File bytes transferred', labelNames: ['direction'] as const, registers: [this.registry] })
  readonly journalSeq = new Gauge({ name: 'vectis_journal_seq', help: 'This member\'s position in the leader\'s journal log (the leader: the end of its own)', registers: [this.registry] })
  readonly journalLag = new Gauge({ name: 'vectis_journal_replication_lag_entries', help: 'Entries between this member\'s position and the leader\'s last known head (0 on the leader)', registers: [this.registry] })
  readonly backups = new Counter({ name: 'vectis_backups_total', help: 'Journal backups this member took (requested or scheduled), by result', labelNames: ['result'] as const, registers: [this.registry] })
  readonly backupLastSuccess = new Gauge({ name: 'vectis_backup_last_success_timestamp_seconds', help: 'Unix time of the last verified backup this member took (0: none since start)', registers: [this.registry] })
  readonly queueDepth = new Gauge({ name: 'vectis_transfer_queue_depth', help: 'Transfers the cluster initiates that are queued or running (every member reads its replica of the journal)', registers: [this.registry] })
  readonly queueAttempts = new Counter({ name: 'vectis_transfer_queue_attempts_total', help: 'Attempts of queued transfers run by this member, by direction and outcome (retry: back in the queue)', labelNames: ['direction', 'outcome'] as const, registers: [this.registry] })
  readonly peerDeviations = new Counter({ name: 'vectis_pesit_peer_deviations_total', help: 'Departures of PeSIT peers from the protocol that were tolerated', labelNames: ['kind'] as const, registers: [this.registry] })

  /** Hooks run before every scrape, to refresh values computed on demand (lease remaining, heartbeat age). */
  private readonly collectors: Array<() => void> = []

  constructor (init: { defaultMetrics?: boolean } = {}) {
    if (init.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry })
    this.k8sLabelsInSync.set(1)
    // Every series exists from the first scrape, so rates and absence alerts work at once.
    for (const direction of ['receive', 'send'] as const) {
      this.transferBytes.inc({ direction }, 0)
      for (const status of TRANSFER_OUTCOMES) this.transfers.inc({ direction, status }, 0)
      for (const outcome of QUEUE_OUTCOMES) this.queueAttempts.inc({ direction, outcome }, 0)
    }
    for (const kind of PEER_DEVIATIONS) this.peerDeviations.inc({ kind }, 0)
    for (const result of ['ok', 'failed'] as const) this.backups.inc({ result }, 0)
  }

  onCollect (fn: () => void): void { this.collectors.push(fn) }

  async render (): Promise<{ contentType: string, body: string }> {
    for (const c of this.collectors) c()
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }
}
