import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { pesitMetricsFromProm } from '../../transfer/pesit-prom-metrics.js'

describe('PeSIT metrics on prom-client', () => {
  it('drives the metrics of docs/contract.md §4 with their labels', async () => {
    const registers = [new Registry()]
    const m = pesitMetricsFromProm({
      pesitServersRunning: new Gauge({ name: 'vectis_pesit_servers_running', help: 'h', registers }),
      pesitConnectionsActive: new Gauge({ name: 'vectis_pesit_connections_active', help: 'h', registers }),
      transfers: new Counter({ name: 'vectis_transfers_total', help: 'h', labelNames: ['direction', 'status'] as const, registers }),
      transferBytes: new Counter({ name: 'vectis_transfer_bytes_total', help: 'h', labelNames: ['direction'] as const, registers }),
      peerDeviations: new Counter({ name: 'vectis_pesit_peer_deviations_total', help: 'h', labelNames: ['kind'] as const, registers }),
      transferDuration: new Histogram({ name: 'vectis_transfer_duration_seconds', help: 'h', labelNames: ['direction', 'status'] as const, buckets: [1, 10], registers }),
      transferFailures: new Counter({ name: 'vectis_transfer_failures_total', help: 'h', labelNames: ['direction', 'diagnostic'] as const, registers })
    })
    m.serverRunning?.('PESITSRV', true)
    m.connectionOpened?.('PESITSRV')
    m.connectionOpened?.('PESITSRV')
    m.connectionClosed?.('PESITSRV')
    m.transferEnded?.('receive', 'completed', { durationSeconds: 2.5 })
    m.transferEnded?.('send', 'interrupted', { durationSeconds: 0.5, diagnostic: 'D2-211' })
    m.transferBytes?.('receive', 1024)
    m.peerDeviation?.('idt-without-end-code')
    const text = await registers[0]!.metrics()
    assert.match(text, /^vectis_pesit_servers_running 1$/m)
    assert.match(text, /^vectis_pesit_connections_active 1$/m)
    assert.match(text, /^vectis_transfers_total\{direction="receive",status="completed"\} 1$/m)
    assert.match(text, /^vectis_transfer_bytes_total\{direction="receive"\} 1024$/m)
    assert.match(text, /^vectis_pesit_peer_deviations_total\{kind="idt-without-end-code"\} 1$/m)
    assert.match(text, /^vectis_transfer_duration_seconds_bucket\{le="1",direction="receive",status="completed"\} 0$/m)
    assert.match(text, /^vectis_transfer_duration_seconds_bucket\{le="10",direction="receive",status="completed"\} 1$/m)
    assert.match(text, /^vectis_transfer_duration_seconds_sum\{direction="send",status="interrupted"\} 0.5$/m)
    assert.match(text, /^vectis_transfer_failures_total\{direction="send",diagnostic="D2-211"\} 1$/m)
    assert.doesNotMatch(text, /vectis_transfer_failures_total\{direction="receive"/, 'a completed transfer is no failure')
  })
})
