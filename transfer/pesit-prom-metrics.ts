/**
 * The PeSIT metrics of SPEC §4 on a prom-client registry the daemon owns: `vectis_pesit_servers_running`,
 * `vectis_pesit_connections_active`, `vectis_transfers_total{direction,status}`,
 * `vectis_transfer_bytes_total{direction}`, adapted to the narrow `PesitMetrics` callbacks.
 */
import { Counter, Gauge, type Registry } from 'prom-client'
import type { PesitMetrics, TransferDirection, TransferStatus } from './ports.js'

export function createPesitPromMetrics (registry: Registry): PesitMetrics {
  const servers = new Gauge({ name: 'vectis_pesit_servers_running', help: 'PeSIT servers listening on this member (leader only)', registers: [registry] })
  const connections = new Gauge({ name: 'vectis_pesit_connections_active', help: 'Open PeSIT connections', registers: [registry] })
  const transfers = new Counter({ name: 'vectis_transfers_total', help: 'Transfers ended, by direction and status', labelNames: ['direction', 'status'] as const, registers: [registry] })
  const bytes = new Counter({ name: 'vectis_transfer_bytes_total', help: 'File bytes stored (receive) or sent (send)', labelNames: ['direction'] as const, registers: [registry] })
  // Start every series at 0 so rates and absence alerts work from the first scrape.
  for (const d of ['receive', 'send'] as const) {
    bytes.inc({ direction: d }, 0)
    for (const s of ['completed', 'failed', 'interrupted'] as const) transfers.inc({ direction: d, status: s }, 0)
  }
  return {
    serverRunning: (_id: string, running: boolean) => { if (running) servers.inc(); else servers.dec() },
    connectionOpened: () => { connections.inc() },
    connectionClosed: () => { connections.dec() },
    transferEnded: (direction: TransferDirection, status: TransferStatus) => { transfers.inc({ direction, status }) },
    transferBytes: (direction: TransferDirection, n: number) => { bytes.inc({ direction }, n) }
  }
}
