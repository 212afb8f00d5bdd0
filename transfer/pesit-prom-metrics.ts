/**
 * Adapts the daemon's prom-client metrics (docs/contract.md §4: `vectis_pesit_servers_running`,
 * `vectis_pesit_connections_active`, `vectis_transfers_total{direction,status}`,
 * `vectis_transfer_bytes_total{direction}`, `vectis_pesit_peer_deviations_total{kind}`) to the narrow `PesitMetrics` callbacks. Takes the metric objects, not
 * a registry, so each name is registered once, by their owner.
 */
import type { PeerDeviation, PesitMetrics, TransferDirection, TransferOutcome } from './ports.js'

interface GaugeLike { inc(): void, dec(): void }
interface LabelledCounterLike<L extends string> { inc(labels: Partial<Record<L, string>>, value?: number): void }

export interface PesitPromObjects {
  /** `vectis_pesit_servers_running`; omit when the owner sets it from the servers' status instead */
  pesitServersRunning?: GaugeLike
  pesitConnectionsActive: GaugeLike
  transfers: LabelledCounterLike<'direction' | 'status'>
  transferBytes: LabelledCounterLike<'direction'>
  peerDeviations: LabelledCounterLike<'kind'>
}

export function pesitMetricsFromProm (m: PesitPromObjects): PesitMetrics {
  return {
    serverRunning: (_id: string, running: boolean) => { if (running) m.pesitServersRunning?.inc(); else m.pesitServersRunning?.dec() },
    connectionOpened: () => { m.pesitConnectionsActive.inc() },
    connectionClosed: () => { m.pesitConnectionsActive.dec() },
    transferEnded: (direction: TransferDirection, status: TransferOutcome) => { m.transfers.inc({ direction, status }) },
    transferBytes: (direction: TransferDirection, n: number) => { m.transferBytes.inc({ direction }, n) },
    peerDeviation: (kind: PeerDeviation) => { m.peerDeviations.inc({ kind }) }
  }
}
