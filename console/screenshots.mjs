#!/usr/bin/env node
// `npm run docs:screenshots`: PNGs of the web console's views in docs/console/, for the README. Runs a 3-member dev
// cluster of the built package (dist/, `npm run build` first) on 127.0.84.x, pushes a file through the load
// balancer (slowed, so that it is seen in progress) and photographs the leader's console in Debian's headless
// chromium (puppeteer-core). Not part of `npm test`.
/* global document -- the functions given to page.waitForFunction run in the page */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import puppeteer from 'puppeteer-core'

const root = fileURLToPath(new URL('..', import.meta.url))
const out = join(root, 'docs', 'console')
const dist = (p) => join(root, 'dist', p)
if (!existsSync(dist('console/index.html')) || !existsSync(dist('dev-cluster/dev-cluster.js'))) {
  console.error('docs:screenshots: run `npm run build` first')
  process.exit(2)
}
const chromium = ['chromium', 'chromium-browser', 'google-chrome'].map((n) => spawnSync('which', [n], { encoding: 'utf8' }).stdout?.trim()).find((p) => p)
if (chromium === undefined) {
  console.error('docs:screenshots: no chromium on PATH (Debian: apt-get install chromium)')
  process.exit(2)
}
const { DevCluster } = await import(dist('dev-cluster/dev-cluster.js'))
const { silentLogger } = await import(dist('common/logger.js'))
const { pushFile } = await import(dist('transfer/push.js'))

const USER = 'vectis'
const PASSWORD = 'screenshots-password'
const CONFIG = [
  'servers:', '  - id: PESITSRV', '    port: 5000', '    syncIntervalKb: 64',
  'partners:', '  - id: CXCLIENT', '    password: shots123', '    access: both',
  'files:', '  - id: INBOX', '    directory: inbox', '    filenamePattern: "${partner}_${transferId}"', ''
].join('\n')

async function until (what, fn, timeoutMs = 60_000) {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > end) throw new Error(`docs:screenshots: timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** A TCP proxy that lets the client's bytes through at `bytesPerS`. */
async function slowProxy (port, bytesPerS) {
  const server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1')
    client.on('data', (chunk) => { client.pause(); upstream.write(chunk); setTimeout(() => { client.resume() }, Math.ceil(chunk.length * 1000 / bytesPerS)) })
    upstream.pipe(client)
    const end = () => { client.destroy(); upstream.destroy() }
    client.on('close', end).on('error', end)
    upstream.on('close', end).on('error', end)
  })
  await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  return { server, port: server.address().port }
}

const work = await mkdtemp(join(tmpdir(), 'vectis-screenshots-'))
await writeFile(join(work, 'vectis.yaml'), CONFIG)
const dc = new DevCluster({ logger: silentLogger() }, {
  nodes: 3, baseIp: '127.0.84.10', dataDir: join(work, 'cluster'), lbHost: '127.0.0.1', lbPort: 0, httpPort: 8080, clusterPort: 7800,
  configFile: join(work, 'vectis.yaml'), demoPesitPort: 5000, apiUser: USER, apiPassword: PASSWORD, demoPassword: 'unused12',
  clusterSecret: 'screenshots-cluster-secret-01234', logLevel: 'warn', restart: false, memberCommand: [process.execPath, dist('bin/vectisd.js')]
})
let browser
let proxy
try {
  await dc.start()
  const auth = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`
  const members = dc.snapshot()
  const leader = await until('one leader', async () => {
    const all = await Promise.all(members.map(async (m) => await fetch(`http://${m.ip}:8080/api/cluster/status`, { headers: { authorization: auth } }).then((r) => r.json(), () => undefined)))
    const l = all[0]?.leader
    return l && all.every((s) => s?.leader === l && s.members.length === 3) ? l : undefined
  })
  const ip = members.find((m) => m.name === leader).ip
  browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ['--no-sandbox', '--disable-gpu'], defaultViewport: { width: 1280, height: 900 } })
  const page = await browser.newPage()
  await page.authenticate({ username: USER, password: PASSWORD })
  await page.goto(`http://${ip}:8080/`, { waitUntil: 'domcontentloaded' })
  await page.waitForFunction(() => document.querySelectorAll('#members tbody tr').length === 3 && document.querySelector('.stream-live') !== null)
  mkdirSync(out, { recursive: true })
  const shot = async (selector, name) => {
    const el = await page.$(selector)
    await el.screenshot({ path: join(out, name) })
    console.log(`docs:screenshots: docs/console/${name}`)
  }

  // Two pushes: one done before, one seen in progress.
  proxy = await slowProxy(dc.lb.port, 1024 * 1024)
  const push = async (n, bytes, port) => {
    const source = join(work, `push-${n}.bin`)
    await writeFile(source, randomBytes(bytes))
    return await pushFile({ host: '127.0.0.1', port, partner: 'CXCLIENT', password: 'shots123', server: 'PESITSRV', file: 'INBOX', source, transferId: n, timeoutMs: 30_000, syncIntervalKb: 64 })
  }
  await push(1, 3 * 1024 * 1024, dc.lb.port)
  const running = push(2, 12 * 1024 * 1024, proxy.port)
  await page.waitForFunction(() => document.querySelector('#in-progress progress') !== null)
  await new Promise((resolve) => setTimeout(resolve, 3000))
  await shot('#transfers', 'transfers.png')
  await running
  await page.waitForFunction(() => [...document.querySelectorAll('#journal tbody tr')].filter((tr) => tr.getAttribute('data-status') === 'completed').length === 2)
  // The chart redraws every 5 s.
  await new Promise((resolve) => setTimeout(resolve, 5500))
  await shot('#servers', 'servers.png')
  await shot('#cluster', 'cluster.png')
  await page.click('#journal tbody tr button')
  await page.waitForSelector('.detail')
  await shot('#transfers', 'transfer-detail.png')
  const other = members.find((m) => m.name !== leader).name
  await page.select('#handover-to', other)
  await page.click('.handover button')
  await page.waitForSelector('dialog[open]')
  await page.screenshot({ path: join(out, 'handover.png') })
  console.log('docs:screenshots: docs/console/handover.png')
} finally {
  await browser?.close()
  proxy?.server.close()
  await dc.stop()
  await rm(work, { recursive: true, force: true })
}
