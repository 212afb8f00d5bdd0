/**
 * The web console in a real browser (issue 15): Debian's headless `chromium`, driven by puppeteer-core, against a
 * 3-member dev cluster on this file's own loopback range (127.0.83.x), the built members (dist/). The console of a
 * standby shows the three members and which one leads; a push through the load balancer (its rate capped, so that
 * it lasts a few seconds, and without sync points, so that every figure between its start and end is the
 * leader's live progress relayed over the cluster) shows in progress with a bar of the announced size whose value
 * grows, then its completed row, whose detail the keyboard opens; a hand-over made
 * by keyboard on the leader's console (its POST passes the cross-site checks) reaches the standby's page; kill -9 of
 * the new leader → the page shows the next one within 2 s of the election (its log), without a reload; a wrong password
 * gets 401 and no page; axe-core finds no serious or critical violation; the page breaks no rule of its CSP. Plain
 * event-stream clients (`vectis status --watch`, a WebSocket without `?include=transfers`) see no transfer events.
 * Prints the bundle size (gzipped) and the time to first render.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import WebSocket from 'ws'
import { silentLogger } from '../../common/logger.js'
import { DevCluster } from '../../dev-cluster/dev-cluster.js'
import { pushFile } from '../../transfer/push.js'
import { chromiumPath, type PageGlobals as ConsolePageGlobals } from '../helpers/chromium.js'
import { ROOT, VECTISD } from '../helpers/daemon-process.js'
import { waitFor } from '../helpers/wait-for.js'

const BASE_IP = '127.0.83.10'
const HTTP_PORT = 8080
const USER = 'vectis'
const PASSWORD = 'console-test-password'
const PARTNER_PASSWORD = 'console1'
const CONFIG = [
  'servers:', '  - id: PESITSRV', '    port: 5000', '    syncIntervalKb: 64',
  'partners:', '  - id: CXCLIENT', `    password: ${PARTNER_PASSWORD}`, '    access: both',
  'files:', '  - id: INBOX', '    directory: inbox', '    filenamePattern: "${partner}_${transferId}"', ''
].join('\n')
/** The pushed file, and how fast the load balancer lets it through: a transfer of about 4 s. */
const PUSH_BYTES = 8 * 1024 * 1024
const LB_BYTES_PER_S = 2 * 1024 * 1024

interface Status { leader: string | null, members: Array<{ name: string }> }

/** The page's globals, with what this test adds to them: its own mark, and axe-core. */
interface PageGlobals extends ConsolePageGlobals {
  notReloaded?: boolean
  axe: { run: (ctx: unknown) => Promise<{ violations: Array<{ id: string, impact: string | null, nodes: unknown[] }> }> }
}

void test('the web console in Chromium: members and leader, live progress, detail and hand-over by keyboard, a new leader without reload, 401, axe', { timeout: 240_000 }, async (t) => {
  const executablePath = chromiumPath()
  if (executablePath === undefined) {
    t.skip('no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)')
    return
  }
  if (!existsSync(VECTISD)) throw new Error(`${VECTISD} is missing: run npm run build first`)
  const consoleFiles = join(ROOT, 'dist', 'console')
  if (!existsSync(join(consoleFiles, 'index.html'))) throw new Error('dist/console is missing: run npm run build first')
  const bundleGz = readdirSync(consoleFiles).filter((f) => !f.endsWith('.map')).reduce((n, f) => n + gzipSync(readFileSync(join(consoleFiles, f)), { level: 9 }).length, 0)
  t.diagnostic(`console bundle: ${(bundleGz / 1024).toFixed(1)} KB gzipped in all (budget 150 KB)`)
  assert.ok(bundleGz <= 150 * 1024)

  const { default: puppeteer } = await import('puppeteer-core')
  const work = await mkdtemp(join(tmpdir(), 'vectis-console-'))
  await writeFile(join(work, 'vectis.yaml'), CONFIG)
  const dc = new DevCluster({ logger: silentLogger() }, {
    nodes: 3, baseIp: BASE_IP, dataDir: join(work, 'cluster'), lbHost: '127.0.0.1', lbPort: 0, lbBytesPerSecond: LB_BYTES_PER_S, httpPort: HTTP_PORT, clusterPort: 7800,
    configFile: join(work, 'vectis.yaml'), demoPesitPort: 5000, apiUser: USER, apiPassword: PASSWORD, demoPassword: 'unused12',
    clusterSecret: 'console-test-cluster-secret-0123', logLevel: 'info', restart: false, memberCommand: [process.execPath, VECTISD]
  })
  const cleanups: Array<() => Promise<void> | void> = []
  t.after(async () => {
    for (const c of cleanups.reverse()) {
      try { await c() } catch { /* the next one still runs */ }
    }
    await dc.stop()
    await rm(work, { recursive: true, force: true })
  })
  await dc.start()
  const members = dc.snapshot()
  const auth = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`
  const statusOf = async (ip: string): Promise<Status | undefined> => {
    try {
      const r = await fetch(`http://${ip}:${HTTP_PORT}/api/cluster/status`, { headers: { authorization: auth }, signal: AbortSignal.timeout(1000) })
      return r.ok ? await r.json() as Status : undefined
    } catch {
      return undefined
    }
  }
  const leader = await waitFor(async () => {
    const all = await Promise.all(members.map(async (m) => await statusOf(m.ip)))
    const l = all[0]?.leader
    return l != null && all.every((s) => s?.leader === l && s.members.length === 3) ? l : undefined
  }, { timeoutMs: 90_000, intervalMs: 250, what: 'three members agreeing on one leader' })
  const leaderIndex = members.findIndex((m) => m.name === leader)
  const standby = members.find((m) => m.name !== leader)!
  const url = `http://${standby.ip}:${HTTP_PORT}/`

  const browser = await puppeteer.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
  cleanups.push(async () => { await browser.close() })

  // A wrong password: 401, and no page.
  const intruder = await browser.createBrowserContext()
  const wrong = await intruder.newPage()
  await wrong.authenticate({ username: USER, password: 'not-the-password' })
  const refused = await wrong.goto(url, { waitUntil: 'domcontentloaded' })
  assert.equal(refused?.status(), 401)
  assert.equal(await wrong.$('#app'), null, 'no console without the credentials')
  await intruder.close()

  // The console of a standby: three members, and which one leads.
  const page = await browser.newPage()
  const cspViolations: string[] = []
  page.on('console', (m) => { if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text()) })
  page.on('pageerror', (err) => { cspViolations.push(`page error: ${String(err)}`) })
  await page.authenticate({ username: USER, password: PASSWORD })
  const answer = await page.goto(url, { waitUntil: 'domcontentloaded' })
  assert.equal(answer?.status(), 200)
  assert.match(answer.headers()['content-security-policy'] ?? '', /script-src 'self'/)
  await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.querySelectorAll('#members tbody tr').length === 3, { timeout: 15_000 })
  const firstRenderMs = await page.evaluate(() => Math.round((globalThis as unknown as PageGlobals).performance.now()))
  t.diagnostic(`console first render (navigation start → the three members shown): ${firstRenderMs} ms`)
  const roles = async (): Promise<Record<string, string>> => await page.evaluate(() =>
    Object.fromEntries([...(globalThis as unknown as PageGlobals).document.querySelectorAll('#members tbody tr')].map((tr) => [tr.getAttribute('data-member') ?? '', tr.querySelector('.role')?.textContent ?? ''])))
  const shown = await roles()
  assert.deepEqual(Object.keys(shown).sort(), members.map((m) => m.name).sort())
  assert.equal(shown[leader], 'leader')
  assert.deepEqual(Object.entries(shown).filter(([, r]) => r === 'leader').map(([n]) => n), [leader])
  assert.equal(await page.evaluate(() => (globalThis as unknown as PageGlobals).document.querySelector('#leader')?.textContent ?? null), leader)
  await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.querySelector('.stream-live') !== null, { timeout: 10_000 })

  // axe-core, evaluated through the DevTools protocol (the page's CSP forbids injected script tags, rightly).
  const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')
  await page.evaluate(axeSource)
  const violations = await page.evaluate(async () => {
    const g = globalThis as unknown as PageGlobals
    const r = await g.axe.run(g.document)
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }))
  })
  t.diagnostic(`axe-core: ${violations.length === 0 ? 'no violations' : violations.map((v) => `${v.id} (${v.impact ?? '?'}, ${v.nodes})`).join(', ')}`)
  assert.deepEqual(violations.filter((v) => v.impact === 'serious' || v.impact === 'critical'), [])

  // Plain stream clients: a WebSocket without ?include=transfers and `vectis status --watch` see no transfer events.
  const plain = new WebSocket(`ws://${standby.ip}:${HTTP_PORT}/api/cluster/events`, { headers: { authorization: auth } })
  const withTransfers = new WebSocket(`ws://${standby.ip}:${HTTP_PORT}/api/cluster/events?include=transfers`, { headers: { authorization: auth } })
  cleanups.push(() => { plain.terminate(); withTransfers.terminate() })
  const plainTypes: string[] = []
  const transferTypes: string[] = []
  plain.on('message', (d: Buffer) => { plainTypes.push((JSON.parse(d.toString()) as { type: string }).type) })
  withTransfers.on('message', (d: Buffer) => { transferTypes.push((JSON.parse(d.toString()) as { type: string }).type) })
  let watchOut = ''
  const watch = spawn(process.execPath, [join(ROOT, 'dist', 'bin', 'vectis.js'), 'status', '--watch', '--url', `http://${standby.ip}:${HTTP_PORT}`, '--user', USER, '--password', PASSWORD], { stdio: ['ignore', 'pipe', 'pipe'] })
  watch.stdout.on('data', (d: Buffer) => { watchOut += d.toString() })
  cleanups.push(() => { watch.kill('SIGKILL') })
  await waitFor(() => plainTypes.includes('state') && transferTypes.includes('state') && /leader/.test(watchOut), { timeoutMs: 10_000, what: 'the stream clients connected' })

  // A push through the load balancer, slowed down: in progress on the standby's console with its bytes growing, then completed.
  const source = join(work, 'push.bin')
  await writeFile(source, randomBytes(PUSH_BYTES))
  const pushed = pushFile({ host: '127.0.0.1', port: dc.lb.port!, partner: 'CXCLIENT', password: PARTNER_PASSWORD, server: 'PESITSRV', file: 'INBOX', source, transferId: 4242, timeoutMs: 30_000, syncIntervalKb: 0 })
  pushed.catch(() => {})
  const bar = new Set<number>()
  await waitFor(async () => {
    const v = await page.evaluate(() => {
      const p = (globalThis as unknown as PageGlobals).document.querySelector('#in-progress tbody tr progress') as unknown as { position: number, value: number, max: number } | null
      // An indeterminate bar (size unknown) has the position -1.
      return p === null || p.position < 0 ? null : { value: p.value, max: p.max }
    })
    if (v !== null) {
      assert.equal(v.max, PUSH_BYTES, 'the bar\'s size is the one the push announced (PI 42)')
      if (v.value > 0 && v.value < PUSH_BYTES) bar.add(v.value)
    }
    return bar.size >= 3
  }, { timeoutMs: 30_000, intervalMs: 40, what: 'a transfer in progress on the standby\'s console: its bar of the announced size, its value growing between the start and the end (no sync point: the live progress)' })
  const result = await pushed
  assert.equal(result.bytes, PUSH_BYTES)
  await page.waitForFunction((bytes: number) => [...(globalThis as unknown as PageGlobals).document.querySelectorAll('#journal tbody tr')].some((tr) =>
    tr.getAttribute('data-status') === 'completed' && (tr.textContent ?? '').includes('CXCLIENT') && (tr.textContent ?? '').includes(`${(bytes / 1024 / 1024).toFixed(1)} MiB`)), { timeout: 10_000 }, PUSH_BYTES)
  t.diagnostic(`transfer in progress: ${bar.size} distinct values of its bar seen by the standby's console during the push, without sync points`)
  assert.ok(transferTypes.includes('transfer'), 'a stream that asked for transfers got them')
  assert.ok(!plainTypes.includes('transfer'), 'a plain stream gets no transfer events')
  assert.doesNotMatch(watchOut, /Z transfer\n/, 'vectis status --watch shows no transfer events')

  // The keyboard opens a transfer's detail, and the focus goes to it.
  await page.focus('#journal tbody tr button')
  await page.keyboard.press('Enter')
  await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.activeElement?.id === 'detail-h', { timeout: 5000 })
  assert.match(await page.evaluate(() => (globalThis as unknown as PageGlobals).document.querySelector('.detail')?.textContent ?? ''), /completed[\s\S]*CXCLIENT/)

  // The hand-over from the leader's console, by keyboard, to the third member: the console's POST passes the
  // cross-site checks (JSON, same origin); the standby's page follows.
  await page.evaluate(() => { (globalThis as unknown as PageGlobals).notReloaded = true })
  const third = members.find((m) => m.name !== leader && m.name !== standby.name)!
  const leaderPage = await browser.newPage()
  await leaderPage.authenticate({ username: USER, password: PASSWORD })
  await leaderPage.goto(`http://${members[leaderIndex]!.ip}:${HTTP_PORT}/`, { waitUntil: 'domcontentloaded' })
  await leaderPage.waitForSelector('#handover-to', { timeout: 15_000 })
  await leaderPage.select('#handover-to', third.name)
  await leaderPage.focus('.handover button')
  await leaderPage.keyboard.press('Enter')
  await leaderPage.waitForSelector('dialog[open]', { timeout: 5000 })
  // The dialog opens on Cancel; Shift+Tab reaches its Hand over button.
  await leaderPage.keyboard.down('Shift')
  await leaderPage.keyboard.press('Tab')
  await leaderPage.keyboard.up('Shift')
  await leaderPage.keyboard.press('Enter')
  await leaderPage.waitForFunction(() => /handed over/.test((globalThis as unknown as PageGlobals).document.querySelector('.handover [role=status]')?.textContent ?? ''), { timeout: 15_000 })
  await leaderPage.close()
  await waitFor(async () => await page.evaluate(() => (globalThis as unknown as PageGlobals).document.querySelector('#leader')?.textContent ?? null) === third.name,
    { timeoutMs: 10_000, intervalMs: 50, what: `the standby's console showing ${third.name} as leader after the hand-over` })

  // kill -9 of the leader: the page shows the new leader within 2 s of the election, without a reload.
  const killedAt = Date.now()
  assert.ok(dc.kill(third.index), 'the leader was killed')
  let shownAt = 0
  const newLeader = await waitFor(async () => {
    const l = await page.evaluate(() => (globalThis as unknown as PageGlobals).document.querySelector('#leader')?.textContent ?? null)
    if (l === null || l === third.name || !members.some((m) => m.name === l)) return undefined
    shownAt = Date.now()
    return l
  }, { timeoutMs: 60_000, intervalMs: 25, what: 'the console showing a new leader' })
  assert.equal(await page.evaluate(() => (globalThis as unknown as PageGlobals).notReloaded), true, 'the page was not reloaded')
  assert.equal((await roles())[newLeader], 'leader')
  const newLeaderLog = (await readFile(members.find((m) => m.name === newLeader)!.logFile, 'utf8')).split('\n')
    .flatMap((l) => { try { return [JSON.parse(l) as { msg?: string, time?: string }] } catch { return [] } })
    .filter((l) => l.msg === 'leader elected: this member leads' && l.time !== undefined && Date.parse(l.time) >= killedAt)
  assert.ok(newLeaderLog.length > 0, `${newLeader} logged its election`)
  const electedAt = Date.parse(newLeaderLog[0]!.time!)
  const delay = shownAt - electedAt
  t.diagnostic(`new leader ${newLeader}: elected ${electedAt - killedAt} ms after the kill, shown by the console ${delay} ms after the election`)
  assert.ok(delay <= 2000, `the console showed the new leader ${delay} ms after the election`)
  await waitFor(() => /leader:elected|view:installed/.test(watchOut) ? true : undefined, { timeoutMs: 10_000, what: 'vectis status --watch following the failover' })
  assert.deepEqual(cspViolations, [], 'no CSP violation or page error')
})
