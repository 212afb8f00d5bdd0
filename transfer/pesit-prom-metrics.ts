/**
 * Adapts the daemon's prom-client metrics (docs/contract.md §4: `vectis_pesit_servers_running`,
 * `vectis_pesit_connections_active`, `vectis_transfers_total{direction,status}`,
 * `vectis_transfer_bytes_total{direction}`, `vectis_pesit_peer_deviations_total{kind}`,
 * `vectis_transfer_duration_seconds{direction,status}`, `vectis_transfer_failures_total{direction,diagnostic}`) to the
 * narrow `PesitMetrics` callbacks. Takes the metric objects, not a registry, so each name is registered once, by
 * their owner.
 */
import type { AttemptEnd, PeerDeviation, PesitMetrics, TransferDirection, TransferOutcome } from './ports.js'

interface GaugeLike { inc(): void, dec(): void }
interface LabelledCounterLike<L extends string> { inc(labels: Partial<Record<L, string>>, value?: number): void }
interface LabelledHistogramLike<L extends string> { observe(labels: Partial<Record<L, string>>, value: number): void }

export interface PesitPromObjects {
  /** `vectis_pesit_servers_running`; omit when the owner sets it from the servers' status instead */
  pesitServersRunning?: GaugeLike
  pesitConnectionsActive: GaugeLike
  transfers: LabelledCounterLike<'direction' | 'status'>
  transferBytes: LabelledCounterLike<'direction'>
  peerDeviations: LabelledCounterLike<'kind'>
  transferDuration?: LabelledHistogramLike<'direction' | 'status'>
  transferFailures?: LabelledCounterLike<'direction' | 'diagnostic'>
}

export function pesitMetricsFromProm (m: PesitPromObjects): PesitMetrics {
  return {
    serverRunning: (_id: string, running: boolean) => { if (running) m.pesitServersRunning?.inc(); else m.pesitServersRunning?.dec() },
    connectionOpened: () => { m.pesitConnectionsActive.inc() },
    connectionClosed: () => { m.pesitConnectionsActive.dec() },
    transferEnded: (direction: TransferDirection, status: TransferOutcome, end?: AttemptEnd) => {
      m.transfers.inc({ direction, status })
      if (end === undefined) return
      m.transferDuration?.observe({ direction, status }, end.durationSeconds)
      if (status !== 'completed') m.transferFailures?.inc({ direction, diagnostic: end.diagnostic ?? 'none' })
    },
    transferBytes: (direction: TransferDirection, n: number) => { m.transferBytes.inc({ direction }, n) },
    peerDeviation: (kind: PeerDeviation) => { m.peerDeviations.inc({ kind }) }
  }
}
