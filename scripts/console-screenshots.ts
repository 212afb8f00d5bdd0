/**
 * `npm run docs:screenshots`: PNGs of the web console's views in docs/console/, for the README. Runs a 3-member dev
 * cluster of the built members (dist/, `npm run build` first) on 127.0.84.x, pushes two files through its load
 * balancer, whose rate is capped so that the second is seen in progress, and photographs the leader's console in
 * Debian's headless chromium (puppeteer-core). Not part of `npm test`.
 */
import '../common/polyfill.js'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import puppeteer, { type Browser } from 'puppeteer-core'
import { servingLeader } from '../bench/bench-util.js'
import { silentLogger } from '../common/logger.js'
import { DevCluster } from '../dev-cluster/dev-cluster.js'
import { pushFile } from '../transfer/push.js'
import { chromiumPath, type PageGlobals } from '../test/helpers/chromium.js'
import { ROOT, VECTISD } from '../test/helpers/daemon-process.js'
import { waitFor } from '../test/helpers/wait.js'

const OUT = join(ROOT, 'docs', 'console')
const USER = 'vectis'
const PASSWORD = 'screenshots-password'
const CONFIG = [
  'servers:', '  - id: PESITSRV', '    port: 5000', '    syncIntervalKb: 64',
  'partners:', '  - id: CXCLIENT', '    password: shots123', '    access: both',
  'files:', '  - id: INBOX', '    directory: inbox', '    filenamePattern: "${partner}_${transferId}"', ''
].join('\n')
/** The load balancer's cap: the second push (12 MiB) lasts about 12 s. */
const LB_BYTES_PER_S = 1024 * 1024
const SECOND_PUSH_BYTES = 12 * 1024 * 1024

if (!existsSync(join(ROOT, 'dist', 'console', 'index.html')) || !existsSync(VECTISD)) {
  console.error('docs:screenshots: run `npm run build` first')
  process.exit(2)
}
const executablePath = chromiumPath()
if (executablePath === undefined) {
  console.error('docs:screenshots: no chromium on PATH (Debian: apt-get install chromium)')
  process.exit(2)
}

const work = await mkdtemp(join(tmpdir(), 'vectis-screenshots-'))
await writeFile(join(work, 'vectis.yaml'), CONFIG)
const dc = new DevCluster({ logger: silentLogger() }, {
  nodes: 3, baseIp: '127.0.84.10', dataDir: join(work, 'cluster'), lbHost: '127.0.0.1', lbPort: 0, lbBytesPerSecond: LB_BYTES_PER_S,
  httpPort: 8080, clusterPort: 7800, configFile: join(work, 'vectis.yaml'), demoPesitPort: 5000, apiUser: USER, apiPassword: PASSWORD,
  demoPassword: 'unused12', clusterSecret: 'screenshots-cluster-secret-01234', logLevel: 'warn', restart: false, memberCommand: [process.execPath, VECTISD]
})
let browser: Browser | undefined
try {
  await dc.start()
  const members = dc.snapshot()
  const leader = members[await servingLeader(dc, 60_000)]!
  browser = await puppeteer.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-gpu'], defaultViewport: { width: 1280, height: 900 } })
  const page = await browser.newPage()
  await page.authenticate({ username: USER, password: PASSWORD })
  await page.goto(`http://${leader.ip}:8080/`, { waitUntil: 'domcontentloaded' })
  await page.waitForFunction(() => {
    const { document } = globalThis as unknown as PageGlobals
    return document.querySelectorAll('#members tbody tr').length === 3 && document.querySelector('.stream-live') !== null
  })
  mkdirSync(OUT, { recursive: true })
  const shot = async (selector: string, name: string): Promise<void> => {
    const el = await page.$(selector)
    if (el === null) throw new Error(`docs:screenshots: no ${selector} on the page`)
    await el.screenshot({ path: join(OUT, name) })
    console.log(`docs:screenshots: docs/console/${name}`)
  }

  // Two pushes: one done before, one seen in progress.
  const push = async (n: number, bytes: number): Promise<void> => {
    const source = join(work, `push-${n}.bin`)
    await writeFile(source, randomBytes(bytes))
    await pushFile({ host: '127.0.0.1', port: dc.lb.port!, partner: 'CXCLIENT', password: 'shots123', server: 'PESITSRV', file: 'INBOX', source, transferId: n, timeoutMs: 30_000, syncIntervalKb: 64 })
  }
  await push(1, 3 * 1024 * 1024)
  const running = push(2, SECOND_PUSH_BYTES)
  running.catch(() => {})
  // The photo shows the bar a quarter full or more.
  await waitFor(async () => await page.evaluate((bytes: number) => {
    const p = (globalThis as unknown as PageGlobals).document.querySelector('#in-progress tbody tr progress') as unknown as { value: number } | null
    return p !== null && p.value >= bytes / 4
  }, SECOND_PUSH_BYTES), { timeoutMs: 30_000, intervalMs: 100, what: 'the second push a quarter done on the console' })
  await shot('#transfers', 'transfers.png')
  await running
  await page.waitForFunction(() => [...(globalThis as unknown as PageGlobals).document.querySelectorAll('#journal tbody tr')].filter((tr) => tr.getAttribute('data-status') === 'completed').length === 2)
  // The chart redraws every 5 s (console/chart.tsx) and shows nothing of it in the page's DOM: waited for, not polled.
  await new Promise((resolve) => setTimeout(resolve, 5500))
  await shot('#servers', 'servers.png')
  await shot('#cluster', 'cluster.png')
  await page.click('#journal tbody tr button')
  await page.waitForSelector('.detail')
  await shot('#transfers', 'transfer-detail.png')
  await page.select('#handover-to', members.find((m) => m.name !== leader.name)!.name)
  await page.click('.handover button')
  await page.waitForSelector('dialog[open]')
  await page.screenshot({ path: join(OUT, 'handover.png') })
  console.log('docs:screenshots: docs/console/handover.png')
} finally {
  await browser?.close()
  await dc.stop()
  await rm(work, { recursive: true, force: true })
}
