import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { CLOSE_NOT_READING, HttpServer, HttpError, sendUnlessStalled } from '../../daemon/http-server.js'
import { waitFor } from '../helpers/wait.js'
import { silentLogger } from '../../common/logger.js'
import { makePki, opensslMissing } from '../helpers/certs.js'
import { apiRequest, apiTarget } from '../../cli/api-client.js'

describe('HttpServer', () => {
  const server = new HttpServer({ logger: silentLogger() }, { host: '127.0.0.1', port: 0, user: 'u', password: 'p', maxBodyBytes: 100 })
  let base = ''
  const auth = { authorization: `Basic ${Buffer.from('u:p').toString('base64')}` }
  const json = { 'content-type': 'application/json' }
  /** `/flood`: 64 KiB messages as fast as the socket takes them, until sendUnlessStalled refuses one (or 4,000: 250 MiB). */
  const FLOOD_LIMIT = 1024 * 1024
  const flood = { sent: 0, stopped: false }

  before(async () => {
    let ready = false
    server.route('GET', '/readyz', () => ready ? { json: { status: 'ready' } } : { status: 503, json: { status: 'not ready', reason: 'no view yet' } }, { auth: false })
    server.route('POST', '/echo', (req) => { ready = true; return { json: { got: req.body ?? null } } }, { auth: true })
    server.route('GET', '/boom', () => { throw new Error('secret internals') }, { auth: false })
    server.route('GET', '/teapot', () => { throw new HttpError(418, 'short and stout') }, { auth: false })
    server.route('GET', '/things/{id}', (req) => ({ json: req.params }), { auth: false })
    server.route('POST', '/things/{id}/{verb}', (req) => ({ json: req.params }), { auth: false })
    server.route('GET', '/things/special', () => ({ json: { exact: true } }), { auth: false })
    server.websocket('/events', (ws) => { ws.send('hello') }, { auth: true })
    server.websocket('/flood', (ws) => {
      const chunk = 'x'.repeat(64 * 1024)
      const pump = (): void => {
        for (let i = 0; i < 16; i++) {
          if (flood.sent >= 4000 || !sendUnlessStalled(ws, chunk, FLOOD_LIMIT)) { flood.stopped = true; return }
          flood.sent++
        }
        setImmediate(pump)
      }
      pump()
    }, { auth: true })
    await server.start()
    base = `http://127.0.0.1:${server.port}`
  })
  after(async () => { await server.stop() })

  it('answers 503 with a JSON reason, then 200', async () => {
    const r = await fetch(`${base}/readyz`)
    assert.equal(r.status, 503)
    assert.deepEqual(await r.json(), { status: 'not ready', reason: 'no view yet' })
    await fetch(`${base}/echo`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' } })
    assert.equal((await fetch(`${base}/readyz`)).status, 200)
  })

  it('parses JSON bodies; 400 malformed, 413 too large, 415 not JSON', async () => {
    const ok = await fetch(`${base}/echo`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{"a":1}' })
    assert.deepEqual(await ok.json(), { got: { a: 1 } })
    const bad = await fetch(`${base}/echo`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{a:1}' })
    assert.equal(bad.status, 400)
    const big = await fetch(`${base}/echo`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ a: 'x'.repeat(200) }) })
    assert.equal(big.status, 413)
    const text = await fetch(`${base}/echo`, { method: 'POST', headers: { ...auth, 'content-type': 'text/plain' }, body: 'hi' })
    assert.equal(text.status, 415)
    for (const r of [bad, big, text]) assert.equal(typeof ((await r.json()) as { error: unknown }).error, 'string')
  })

  it('checks credentials before the method, and 405 lists the allowed methods', async () => {
    assert.equal((await fetch(`${base}/echo`)).status, 401)
    const r = await fetch(`${base}/echo`, { headers: auth })
    assert.equal(r.status, 405)
    assert.equal(r.headers.get('allow'), 'POST')
  })

  it('a handler error is a JSON 500 that does not leak the message; HttpError keeps its status', async () => {
    const r = await fetch(`${base}/boom`)
    assert.equal(r.status, 500)
    assert.deepEqual(await r.json(), { error: 'internal error' })
    const t = await fetch(`${base}/teapot`)
    assert.equal(t.status, 418)
    assert.deepEqual(await t.json(), { error: 'short and stout' })
  })

  it('path parameters: one decoded segment each; exact paths first; anything else 404 or 405', async () => {
    assert.deepEqual(await (await fetch(`${base}/things/3-17%40b`)).json(), { id: '3-17@b' })
    assert.deepEqual(await (await fetch(`${base}/things/special`)).json(), { exact: true })
    assert.deepEqual(await (await fetch(`${base}/things/x/restore`, { method: 'POST', headers: json })).json(), { id: 'x', verb: 'restore' })
    for (const path of ['/things/', '/things/a/b/c', '/things/%E0%A4%A']) assert.equal((await fetch(`${base}${path}`)).status, 404, path)
    assert.equal((await fetch(`${base}/things/x/restore`)).status, 405)
  })

  it('a state-changing request needs content-type application/json, even with an empty body (415)', async () => {
    const cases: Array<[string, Record<string, string>, string | undefined]> = [
      ['no content type, no body', {}, undefined],
      ['a form, no body', { 'content-type': 'application/x-www-form-urlencoded' }, undefined],
      ['a form', { 'content-type': 'application/x-www-form-urlencoded' }, 'a=1'],
      ['multipart', { 'content-type': 'multipart/form-data; boundary=x' }, '--x--'],
      ['text', { 'content-type': 'text/plain' }, '{}'],
      ['a JSON look-alike', { 'content-type': 'application/json-patch+json' }, '{}']
    ]
    for (const [what, headers, body] of cases) {
      const r = await fetch(`${base}/echo`, { method: 'POST', headers: { ...auth, ...headers }, ...(body !== undefined ? { body } : {}) })
      assert.equal(r.status, 415, what)
      assert.match(((await r.json()) as { error: string }).error, /needs content-type application\/json, even with an empty body/, what)
    }
    assert.equal((await fetch(`${base}/things/x/restore`, { method: 'POST' })).status, 415, 'routes without credentials too')
    const typed = await fetch(`${base}/echo`, { method: 'POST', headers: { ...auth, 'content-type': 'Application/JSON; charset=utf-8' } })
    assert.deepEqual(await typed.json(), { got: null })
    // A GET changes nothing: no content type needed.
    assert.equal((await fetch(`${base}/readyz`)).status, 200)
  })

  it('a state-changing request from another origin is refused (403); same-origin and none pass', async () => {
    const host = new URL(base).host
    const post = async (headers: Record<string, string>): Promise<Response> =>
      await fetch(`${base}/echo`, { method: 'POST', headers: { ...auth, ...json, ...headers }, body: '{"a":2}' })
    const refused: Array<Record<string, string>> = [{ origin: 'https://evil.example' }, { origin: `http://${host}.evil.example` }, { origin: 'null' },
      { origin: `ftp://${host}` }, { origin: `http://${host.replace(/:\d+$/, ':1')}` },
      { 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }, { origin: `http://${host}`, 'sec-fetch-site': 'cross-site' }]
    for (const headers of refused) {
      const r = await post(headers)
      assert.equal(r.status, 403, JSON.stringify(headers))
      assert.match(((await r.json()) as { error: string }).error, /^cross-site request refused: /)
    }
    // https:// of this very host and port: a proxy terminating TLS in front of the member.
    const allowed: Array<Record<string, string>> = [{}, { origin: `http://${host}` }, { origin: `HTTP://${host.toUpperCase()}` }, { origin: `https://${host}` }, { 'sec-fetch-site': 'same-origin' },
      { 'sec-fetch-site': 'none' }, { origin: `http://${host}`, 'sec-fetch-site': 'same-origin' }]
    for (const headers of allowed) {
      const r = await post(headers)
      assert.equal(r.status, 200, JSON.stringify(headers))
      assert.deepEqual(await r.json(), { got: { a: 2 } })
    }
    // A GET from another site is answered (reading needs the credentials, and CORS keeps the answer from the page).
    assert.equal((await fetch(`${base}/readyz`, { headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' } })).status, 200)
  })

  it('the CLI types its state-changing requests JSON, with or without a body', async () => {
    const target = apiTarget({ url: base, user: 'u', password: 'p' })
    assert.deepEqual(await apiRequest(target, 'POST', '/echo'), { got: null })
    assert.deepEqual(await apiRequest(target, 'POST', '/echo', { b: 1 }), { got: { b: 1 } })
  })

  it('a WebSocket needs the credentials and, when it carries an Origin, this server\'s own (403 at the upgrade)', async () => {
    const host = new URL(base).host
    const open = async (headers: Record<string, string>): Promise<{ status: number, body: string }> => await new Promise((resolve) => {
      const ws = new WebSocket(`ws://${host}/events`, { headers })
      ws.on('unexpected-response', (_req, res) => {
        let body = ''
        res.setEncoding('utf8').on('data', (d: string) => { body += d }).on('end', () => { resolve({ status: res.statusCode ?? 0, body }); ws.terminate() })
      })
      ws.on('message', (m: Buffer) => { resolve({ status: 101, body: m.toString('utf8') }); ws.terminate() })
      ws.on('error', () => {})
    })
    assert.equal((await open({ origin: `http://${host}` })).status, 401, 'no credentials, even from its own page')
    const foreign = await open({ ...auth, origin: 'https://evil.example' })
    assert.equal(foreign.status, 403)
    assert.match((JSON.parse(foreign.body) as { error: string }).error, /^cross-site WebSocket refused: Origin https:\/\/evil\.example is not this server's \(127\.0\.0\.1:\d+\)$/)
    assert.equal((await open({ ...auth, origin: `ftp://${host}` })).status, 403, 'a scheme no page of this server has')
    assert.deepEqual(await open({ ...auth, origin: `https://${host}` }), { status: 101, body: 'hello' }, 'behind a proxy terminating TLS')
    assert.deepEqual(await open({ ...auth, origin: `http://${host}` }), { status: 101, body: 'hello' })
    assert.deepEqual(await open(auth), { status: 101, body: 'hello' }, 'no Origin: not a browser (the CLI)')
  })

  it('a stream whose client stops reading is closed (1013) once 1 MiB waits unsent, not buffered for without bound', async () => {
    const client = new WebSocket(`${base.replace('http', 'ws')}/flood`, { headers: auth })
    try {
      let received = 0
      const closed = new Promise<number>((resolve) => { client.on('close', (code) => { resolve(code) }) })
      client.on('message', () => { received++ })
      await new Promise<void>((resolve, reject) => { client.once('open', () => { client.pause(); resolve() }); client.once('error', reject) })
      await waitFor(() => flood.stopped, { timeoutMs: 20_000, what: 'the server to stop sending to a client that does not read' })
      assert.ok(flood.sent < 4000, `stopped by the check, after ${flood.sent} messages of 64 KiB`)
      client.resume()
      assert.equal(await closed, CLOSE_NOT_READING)
      assert.equal(received, flood.sent, 'every message sent before the close arrives, then the close')
    } finally {
      client.terminate()
    }
  })

  it('HEAD is answered like GET without a body', async () => {
    const r = await fetch(`${base}/readyz`, { method: 'HEAD' })
    assert.equal(r.status, 200)
    assert.equal(await r.text(), '')
  })
})

void it('over HTTPS, a same-origin Origin is https://<Host>; http://<Host> is another origin (a plain-HTTP member also takes https://<Host>: a proxy terminating TLS)', { skip: opensslMissing() }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vectis-http-origin-'))
  const pki = makePki(dir)
  const server = new HttpServer({ logger: silentLogger() }, {
    host: '127.0.0.1', port: 0, user: 'u', password: 'p', tls: { certFile: pki.server.cert, keyFile: pki.server.key }
  })
  server.route('POST', '/act', () => ({ json: { done: true } }), { auth: true })
  await server.start()
  try {
    const host = `127.0.0.1:${server.port!}`
    const post = async (origin: string): Promise<number> => await new Promise((resolve, reject) => {
      const req = request({
        host: '127.0.0.1', port: server.port, path: '/act', method: 'POST', ca: readFileSync(pki.ca),
        headers: { authorization: `Basic ${Buffer.from('u:p').toString('base64')}`, 'content-type': 'application/json', origin }
      }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
      req.on('error', reject)
      req.end()
    })
    assert.equal(await post(`https://${host}`), 200)
    assert.equal(await post(`http://${host}`), 403)
  } finally {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})
