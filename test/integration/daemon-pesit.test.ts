import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { DaemonProcess, freePorts, tempDir, ROOT } from '../helpers/daemon-process.js'
import { parsePrometheusText } from '../helpers/prometheus-text.js'
import WebSocket from 'ws'

const CLI = join(ROOT, 'dist', 'bin', 'vectis.js')

describe('standalone vectisd serving PeSIT', () => {
  it('receives a pushed file under its final name, journals it with its SHA-256, counts it', async () => {
    const dir = await tempDir()
    const [httpPort, pesitPort] = await freePorts(2)
    writeFileSync(join(dir.path, 'vectis.yaml'), `
servers:
  - id: PESITSRV
    port: ${pesitPort}
    syncIntervalKb: 64
partners:
  - id: CXCLIENT
    password: test123
    access: write
files:
  - id: PAYMENTS
    directory: inbox/payments
`)
    const d = new DaemonProcess({
      VECTIS_HTTP_PORT: String(httpPort), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_DATA_DIR: join(dir.path, 'data'),
      VECTIS_CONFIG: join(dir.path, 'vectis.yaml'), VECTIS_API_PASSWORD: 'pw'
    }).start()
    try {
      await d.waitLog((l) => l.msg === 'PeSIT servers started (leader)')
      // The event stream's transfer events are opt-in (?include=transfers, the web console's): a plain stream and
      // `vectis status --watch` (which asks for none) never see them.
      const streamAuth = { authorization: `Basic ${Buffer.from('vectis:pw').toString('base64')}` }
      const streams = { plain: [] as Array<{ type: string, transfer?: { status: string, bytes: number } }>, transfers: [] as Array<{ type: string, transfer?: { status: string, bytes: number } }> }
      const plain = new WebSocket(`ws://127.0.0.1:${httpPort}/api/cluster/events`, { headers: streamAuth })
      const withTransfers = new WebSocket(`ws://127.0.0.1:${httpPort}/api/cluster/events?include=transfers`, { headers: streamAuth })
      plain.on('message', (m: Buffer) => { streams.plain.push(JSON.parse(m.toString()) as { type: string }) })
      withTransfers.on('message', (m: Buffer) => { streams.transfers.push(JSON.parse(m.toString()) as { type: string }) })
      let watchOut = ''
      const watch = spawn(process.execPath, [CLI, 'status', '--watch', '--url', `http://127.0.0.1:${httpPort}`, '--user', 'vectis', '--password', 'pw'], { stdio: ['ignore', 'pipe', 'ignore'] })
      watch.stdout.on('data', (b: Buffer) => { watchOut += b.toString() })
      const closeStreams = (): void => { plain.terminate(); withTransfers.terminate(); watch.kill('SIGKILL') }
      try {
        for (const deadline = Date.now() + 10_000; !(streams.plain.length > 0 && streams.transfers.length > 0 && watchOut.includes('leader')); ) {
          if (Date.now() > deadline) throw new Error('the event streams did not start')
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
      } catch (err) {
        closeStreams()
        throw err
      }
      const payload = randomBytes(700 * 1024 + 17)
      writeFileSync(join(dir.path, 'payload.bin'), payload)
      const send = spawnSync(process.execPath, [CLI, 'send', '--host', '127.0.0.1', '--port', String(pesitPort), '--partner', 'CXCLIENT',
        '--password', 'test123', '--server', 'PESITSRV', '--file', 'PAYMENTS', '--quiet', '--state-dir', join(dir.path, 'send-state'),
        join(dir.path, 'payload.bin')], { encoding: 'utf8', timeout: 60_000 })
      assert.equal(send.status, 0, send.stderr)
      const inbox = join(dir.path, 'data', 'shared', 'inbox', 'payments')
      const files = readdirSync(inbox).filter((f) => !f.startsWith('.'))
      assert.equal(files.length, 1, `inbox holds ${readdirSync(inbox).join(', ')}`)
      assert.match(files[0]!, /^CXCLIENT_PAYMENTS_\d+$/)
      const sha = createHash('sha256').update(payload).digest('hex')
      assert.equal(createHash('sha256').update(readFileSync(join(inbox, files[0]!))).digest('hex'), sha)
      try {
        for (const deadline = Date.now() + 10_000; !streams.transfers.some((e) => e.transfer?.status === 'completed'); ) {
          if (Date.now() > deadline) throw new Error(`no completed transfer event on ?include=transfers: ${JSON.stringify(streams.transfers.map((e) => e.type))}`)
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
        const events = streams.transfers.filter((e) => e.type === 'transfer')
        assert.ok(events.some((e) => e.transfer?.status === 'in-progress'), 'the row in progress was streamed too')
        assert.equal(events.at(-1)!.transfer!.bytes, payload.length)
        assert.deepEqual(streams.plain.map((e) => e.type), ['state'], 'a plain stream gets no transfer events')
        assert.doesNotMatch(watchOut, /transfer/, 'vectis status --watch shows no transfer events')
        assert.match(watchOut, /leader/)
      } finally {
        closeStreams()
      }

      const auth = `Basic ${Buffer.from('vectis:pw').toString('base64')}`
      let rows: Array<Record<string, unknown>> = []
      const deadline = Date.now() + 10_000
      while (Date.now() < deadline) {
        const r = await fetch(`http://127.0.0.1:${httpPort}/api/transfers?status=completed`, { headers: { authorization: auth } })
        rows = ((await r.json()) as { transfers: Array<Record<string, unknown>> }).transfers
        if (rows.length > 0) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      assert.equal(rows.length, 1)
      assert.equal(rows[0]!.partner, 'CXCLIENT')
      assert.equal(rows[0]!.virtualFile, 'PAYMENTS')
      assert.equal(rows[0]!.bytes, payload.length)
      assert.equal(rows[0]!.sha256, sha)
      const page = async (q: string): Promise<unknown> => await (await fetch(`http://127.0.0.1:${httpPort}/api/transfers?${q}`, { headers: { authorization: auth } })).json()
      assert.deepEqual(await page('limit=1&partner=CXCLIENT'), { transfers: rows, next: null })
      assert.deepEqual(await page(`before=${String(rows[0]!.id)}`), { transfers: [], next: null })

      const status = await (await fetch(`http://127.0.0.1:${httpPort}/api/cluster/status`, { headers: { authorization: auth } })).json() as { servers: unknown }
      assert.deepEqual(status.servers, [{ id: 'PESITSRV', port: pesitPort, tls: false, running: true, connections: 0 }])
      const samples = parsePrometheusText(await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text())
      const v = (name: string, labels: Record<string, string> = {}): number | undefined =>
        samples.find((s) => s.name === name && Object.entries(labels).every(([k, x]) => s.labels[k] === x))?.value
      assert.equal(v('vectis_pesit_servers_running'), 1)
      assert.equal(v('vectis_transfers_total', { direction: 'receive', status: 'completed' }), 1)
      assert.equal(v('vectis_transfer_bytes_total', { direction: 'receive' }), payload.length)
      assert.equal(v('vectis_transfer_duration_seconds_count', { direction: 'receive', status: 'completed' }), 1)
      assert.ok((v('vectis_transfer_duration_seconds_sum', { direction: 'receive', status: 'completed' }) ?? 0) > 0)
      assert.equal(samples.filter((s) => s.name === 'vectis_transfer_failures_total').length, 0, 'no failure counted')

      d.signal('SIGTERM')
      assert.equal((await d.waitExit()).code, 0)
      assert.ok(d.logs.some((l) => l.msg === 'PeSIT servers stopped (no longer leader)'))
    } finally {
      await d.kill()
      await dir.remove()
    }
  })
})
