import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Registry } from 'prom-client'
import { createPesitPromMetrics } from '../../transfer/pesit-prom-metrics.js'

describe('PeSIT metrics on prom-client', () => {
  it('exposes the SPEC names with their labels', async () => {
    const r = new Registry()
    const m = createPesitPromMetrics(r)
    m.serverRunning?.('PESITSRV', true)
    m.connectionOpened?.('PESITSRV')
    m.connectionOpened?.('PESITSRV')
    m.connectionClosed?.('PESITSRV')
    m.transferEnded?.('receive', 'completed')
    m.transferBytes?.('receive', 1024)
    const text = await r.metrics()
    assert.match(text, /^vectis_pesit_servers_running 1$/m)
    assert.match(text, /^vectis_pesit_connections_active 1$/m)
    assert.match(text, /^vectis_transfers_total\{direction="receive",status="completed"\} 1$/m)
    assert.match(text, /^vectis_transfers_total\{direction="send",status="failed"\} 0$/m)
    assert.match(text, /^vectis_transfer_bytes_total\{direction="receive"\} 1024$/m)
  })
})
