// The web console's routes (daemon/console-assets.ts) on the API's HTTP server, without a browser: behind the
// credentials, with the Content-Security-Policy and nosniff, and a page with no inline script or style.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { HttpServer } from '../../daemon/http-server.js'
import { consoleDir, CONSOLE_CSP, registerConsole } from '../../daemon/console-assets.js'
import { silentLogger } from '../../common/logger.js'

void test('the console: 401 without credentials, the page with its CSP, assets cached, no inline script', async (t) => {
  const dir = consoleDir()
  assert.ok(dir !== undefined, 'dist/console/index.html is missing: run `npm run build` first')
  const server = new HttpServer({ logger: silentLogger() }, { host: '127.0.0.1', port: 0, user: 'u', password: 'p' })
  const { files } = registerConsole(server, dir)
  await server.start()
  t.after(async () => { await server.stop() })
  const base = `http://127.0.0.1:${server.port!}`
  const auth = { authorization: `Basic ${Buffer.from('u:p').toString('base64')}` }

  for (const headers of [{} as Record<string, string>, { authorization: `Basic ${Buffer.from('u:wrong').toString('base64')}` }]) {
    const r = await fetch(`${base}/`, { headers })
    assert.equal(r.status, 401)
    assert.equal(r.headers.get('www-authenticate'), 'Basic realm="vectis"')
    const body = await r.text()
    assert.doesNotMatch(body, /<html|<script/i, 'no page without the credentials')
  }
  const asset = files.find((f) => f.endsWith('.js'))!
  assert.equal((await fetch(`${base}/console/${asset}`)).status, 401, 'the assets need the credentials too')

  const page = await fetch(`${base}/`, { headers: auth })
  assert.equal(page.status, 200)
  assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8')
  assert.equal(page.headers.get('content-security-policy'), CONSOLE_CSP)
  const csp = Object.fromEntries(CONSOLE_CSP.split(';').map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k!, v.join(' ')]))
  assert.equal(csp['script-src'], "'self'", 'no inline or foreign script')
  assert.equal(csp['style-src'], "'self'", 'no inline or foreign style')
  assert.equal(csp['frame-ancestors'], "'none'")
  assert.equal(page.headers.get('x-content-type-options'), 'nosniff')
  assert.equal(page.headers.get('cache-control'), 'no-cache, private')
  const html = await page.text()
  // Every <script> has a src of this origin and no body; no inline handler or style attribute, no other origin.
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)]
  assert.ok(scripts.length > 0)
  for (const [, attrs, body] of scripts) {
    assert.match(attrs!, /\bsrc="\/console\/[^"]+\.js"/)
    assert.equal(body!.trim(), '')
  }
  assert.doesNotMatch(html, /\son[a-z]+=|<style|\sstyle=|https?:\/\//i)

  const js = await fetch(`${base}/console/${asset}`, { headers: auth })
  assert.equal(js.status, 200)
  assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8')
  assert.equal(js.headers.get('x-content-type-options'), 'nosniff')
  assert.match(js.headers.get('cache-control') ?? '', /immutable/)
  assert.equal((await fetch(`${base}/console/nothing.js`, { headers: auth })).status, 404)
  const head = await fetch(`${base}/`, { method: 'HEAD', headers: auth })
  assert.equal(head.status, 200)
})

void test('without a built console, GET / says how to build it (404)', async (t) => {
  const server = new HttpServer({ logger: silentLogger() }, { host: '127.0.0.1', port: 0, user: 'u', password: 'p' })
  registerConsole(server, null)
  await server.start()
  t.after(async () => { await server.stop() })
  const r = await fetch(`http://127.0.0.1:${server.port!}/`, { headers: { authorization: `Basic ${Buffer.from('u:p').toString('base64')}` } })
  assert.equal(r.status, 404)
  assert.match(((await r.json()) as { error: string }).error, /npm run build/)
})
