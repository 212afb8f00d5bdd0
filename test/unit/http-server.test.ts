import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { HttpServer, HttpError } from '../../daemon/http-server.js'
import { silentLogger } from '../../common/logger.js'

describe('HttpServer', () => {
  const server = new HttpServer({ logger: silentLogger() }, { host: '127.0.0.1', port: 0, user: 'u', password: 'p', maxBodyBytes: 100 })
  let base = ''
  const auth = { authorization: `Basic ${Buffer.from('u:p').toString('base64')}` }

  before(async () => {
    let ready = false
    server.route('GET', '/readyz', () => ready ? { json: { status: 'ready' } } : { status: 503, json: { status: 'not ready', reason: 'no view yet' } }, { auth: false })
    server.route('POST', '/echo', (req) => { ready = true; return { json: { got: req.body ?? null } } }, { auth: true })
    server.route('GET', '/boom', () => { throw new Error('secret internals') }, { auth: false })
    server.route('GET', '/teapot', () => { throw new HttpError(418, 'short and stout') }, { auth: false })
    server.route('GET', '/things/{id}', (req) => ({ json: req.params }), { auth: false })
    server.route('POST', '/things/{id}/{verb}', (req) => ({ json: req.params }), { auth: false })
    server.route('GET', '/things/special', () => ({ json: { exact: true } }), { auth: false })
    await server.start()
    base = `http://127.0.0.1:${server.port}`
  })
  after(async () => { await server.stop() })

  it('answers 503 with a JSON reason, then 200', async () => {
    const r = await fetch(`${base}/readyz`)
    assert.equal(r.status, 503)
    assert.deepEqual(await r.json(), { status: 'not ready', reason: 'no view yet' })
    await fetch(`${base}/echo`, { method: 'POST', headers: auth })
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
    assert.deepEqual(await (await fetch(`${base}/things/x/restore`, { method: 'POST' })).json(), { id: 'x', verb: 'restore' })
    for (const path of ['/things/', '/things/a/b/c', '/things/%E0%A4%A']) assert.equal((await fetch(`${base}${path}`)).status, 404, path)
    assert.equal((await fetch(`${base}/things/x/restore`)).status, 405)
  })

  it('HEAD is answered like GET without a body', async () => {
    const r = await fetch(`${base}/readyz`, { method: 'HEAD' })
    assert.equal(r.status, 200)
    assert.equal(await r.text(), '')
  })
})
