import { test } from 'node:test'
import assert from 'node:assert/strict'
import { HttpServer } from '../../daemon/http-server.js'
import { silentLogger } from '../../common/logger.js'
import { runStatus } from '../../cli/status.js'

const status = {
  clusterName: 'c', nodeName: 'm0', isLeader: true, leader: 'm0', epoch: 3, viewId: { coordinator: 'm0', id: 2 },
  members: [{ name: 'm0', address: '10.0.0.1', isLeader: true }]
}

void test('vectis status --watch follows the event stream of a member that refuses foreign origins (it sends none)', async (t) => {
  const server = new HttpServer({ logger: silentLogger() }, { host: '127.0.0.1', port: 0, user: 'u', password: 'p' })
  server.route('GET', '/api/cluster/status', () => ({ json: status }), { auth: true })
  server.websocket('/api/cluster/events', (ws) => {
    ws.send(JSON.stringify({ type: 'state', at: '2026-01-01T00:00:00.000Z', ...status }))
    ws.send(JSON.stringify({ type: 'leader:elected', at: '2026-01-01T00:00:01.000Z', ...status, epoch: 4 }))
    // The stream ends here, so that runStatus returns (it reports the closed stream with exit code 1).
    ws.close(1001)
  }, { auth: true })
  await server.start()
  t.after(async () => { await server.stop() })
  let out = ''
  const stderr = t.mock.method(process.stderr, 'write', () => true)
  const code = await runStatus(['--watch', '--url', `http://127.0.0.1:${server.port!}`, '--user', 'u', '--password', 'p'], (s) => { out += s })
  const errors = stderr.mock.calls.map((c) => String(c.arguments[0]))
  stderr.mock.restore()
  assert.deepEqual(errors, ['vectis status: event stream closed\n'])
  assert.equal(code, 1)
  assert.match(out, /^cluster c {2}view m0#2 {2}epoch 3 {2}leader m0/)
  assert.match(out, /\n2026-01-01T00:00:01\.000Z leader:elected\n/)
})
