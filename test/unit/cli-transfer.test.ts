import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { HttpError, HttpServer } from '../../daemon/http-server.js'
import { silentLogger } from '../../common/logger.js'
import { UsageError } from '../../cli/args.js'
import { runTransfer, type TransferRow } from '../../cli/transfer.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

function row (over: Partial<TransferRow> & Record<string, unknown>): TransferRow & Record<string, unknown> {
  return {
    id: '4-17', transferId: 9417, server: 'PARTSRV', partner: 'ACME', virtualFile: 'PAYMENTS', direction: 'send',
    status: 'queued', bytes: 0, syncPoint: 0, syncOffset: 0, sha256: null, filePath: '/srv/shared/out/a.bin', source: null,
    diagnostic: null, member: 'm0', epoch: 4, createdAt: '2026-01-01T10:00:00.123Z', updatedAt: '2026-01-01T10:00:00.123Z',
    finishedAt: null, seq: 12, initiator: 'cluster', request: { priority: 1 }, attempts: 0, nextAttemptAt: '2026-01-01T10:00:00.123Z',
    ...over
  }
}

interface Seen { method: string, path: string, query: string, body: unknown }

/**
 * A member with fake routes: POST answers 202 with an id chosen by the file (`REFUSED` → a transfer that fails),
 * 400 for partner `NOPE`, 501 for a fetch (as this version's server); each GET of a row walks its script, a 404
 * first (a member that has not applied the row yet), then one step per poll, staying on the last.
 */
async function fakeMember (t: TestContext): Promise<{ url: string, seen: Seen[] }> {
  const seen: Seen[] = []
  const scripts: Record<string, Array<TransferRow | 404>> = {
    '4-17': [404, row({}), row({ status: 'in-progress', attempts: 1, nextAttemptAt: null, bytes: 4096 }),
      row({ status: 'completed', attempts: 1, nextAttemptAt: null, bytes: 1048576, sha256: 'ab'.repeat(32) })],
    '4-18': [row({ id: '4-18', status: 'in-progress', attempts: 1, nextAttemptAt: null }),
      row({ id: '4-18', status: 'failed', attempts: 1, nextAttemptAt: null, diagnostic: 'D3-304 partner refused the connection: authentication' })],
    '4-19': [row({ id: '4-19' })]
  }
  const server = new HttpServer({ logger: silentLogger() }, { host: '127.0.0.1', port: 0, user: 'u', password: 'p' })
  const note = (req: { method: string, path: string, query: URLSearchParams, body: unknown }): void => {
    seen.push({ method: req.method, path: req.path, query: req.query.toString(), body: req.body })
  }
  server.route('POST', '/api/transfers', (req) => {
    note({ method: 'POST', path: '/api/transfers', query: req.query, body: req.body })
    const b = req.body as Record<string, unknown>
    if (b.partner === 'NOPE') return { status: 400, json: { error: 'partner "NOPE" is not configured' } }
    if (b.direction === 'fetch') return { status: 501, json: { error: 'fetching (direction "fetch") is not available yet in this version; sends are' } }
    return { status: 202, json: { id: b.file === 'REFUSED' ? '4-18' : b.file === 'SLOW' ? '4-19' : '4-17' } }
  }, { auth: true })
  server.route('GET', '/api/transfers', (req) => {
    note({ method: 'GET', path: '/api/transfers', query: req.query, body: req.body })
    return {
      json: {
        transfers: [
          row({ id: '4-18', status: 'failed', attempts: 3, nextAttemptAt: null, diagnostic: `D3-304 partner refused the connection: authentication failed ${'x'.repeat(80)}` }),
          row({ id: '3-2', initiator: 'partner', direction: 'receive', partner: 'CXCLIENT', status: 'completed', bytes: 1048576, request: null, nextAttemptAt: null, createdAt: '2025-12-31T09:00:00.000Z' })
        ],
        next: '3-2'
      }
    }
  }, { auth: true })
  server.route('GET', '/api/transfers/{id}', (req) => {
    const id = req.params.id!
    note({ method: 'GET', path: `/api/transfers/${id}`, query: req.query, body: req.body })
    const script = scripts[id]
    if (script === undefined) throw new HttpError(404, `no transfer ${id} in this member's journal`)
    const step = script.length > 1 ? script.shift()! : script[0]!
    if (step === 404) throw new HttpError(404, `no transfer ${id} in this member's journal`)
    return { json: step }
  }, { auth: true })
  server.route('DELETE', '/api/transfers/{id}', (req) => {
    const id = req.params.id!
    note({ method: 'DELETE', path: `/api/transfers/${id}`, query: req.query, body: req.body })
    if (id === '3-2') return { status: 409, json: { error: 'transfer 3-2 was started by partner CXCLIENT: only transfers the cluster initiates can be cancelled' } }
    return { json: row({ id, status: 'cancelled', diagnostic: 'cancelled through the API', nextAttemptAt: null }) }
  }, { auth: true })
  await server.start()
  t.after(async () => { await server.stop() })
  return { url: `http://127.0.0.1:${server.port!}`, seen }
}

/** runTransfer with its stdout and stderr collected. */
async function run (t: TestContext, url: string, argv: string[]): Promise<{ code: number, out: string, err: string }> {
  let out = ''
  const stderr = t.mock.method(process.stderr, 'write', () => true)
  try {
    const code = await runTransfer([...argv, '--url', url, '--user', 'u', '--password', 'p'], (s) => { out += s })
    return { code, out, err: stderr.mock.calls.map((c) => String(c.arguments[0])).join('') }
  } finally {
    stderr.mock.restore()
  }
}

void test('vectis transfer send: POSTs the send as given (a relative PATH untouched) and prints the id alone', async (t) => {
  const { url, seen } = await fakeMember(t)
  const r = await run(t, url, ['send', '--partner', 'ACME', '--file', 'PAYMENTS', '--priority', '0', '--not-before', '2026-12-24T08:00:00Z', 'out/a.bin'])
  assert.deepEqual(r, { code: 0, out: '4-17\n', err: '' })
  assert.deepEqual(seen, [{ method: 'POST', path: '/api/transfers', query: '', body: { direction: 'send', partner: 'ACME', file: 'PAYMENTS', path: 'out/a.bin', priority: 0, notBefore: '2026-12-24T08:00:00Z' } }])
  // Without the optional fields, none is sent: the server's defaults apply.
  seen.length = 0
  assert.equal((await run(t, url, ['send', '--partner=ACME', '--file=PAYMENTS', '/srv/shared/out/a.bin'])).code, 0)
  assert.deepEqual(seen[0]!.body, { direction: 'send', partner: 'ACME', file: 'PAYMENTS', path: '/srv/shared/out/a.bin' })
})

void test('vectis transfer send --wait: follows the row until it is completed (exit 0), through a 404 of a member not yet holding it', async (t) => {
  const { url, seen } = await fakeMember(t)
  const started = Date.now()
  const r = await run(t, url, ['send', '--partner', 'ACME', '--file', 'PAYMENTS', '--wait', 'a.bin'])
  assert.equal(r.code, 0)
  assert.equal(r.out, '4-17\n', 'stdout carries the id only')
  assert.deepEqual(r.err.split('\n'), ['4-17 queued, next attempt at 2026-01-01T10:00:00.123Z', '4-17 in progress, attempt 1',
    `4-17 completed: 1048576 bytes, sha256 ${'ab'.repeat(32)}, 1 attempt`, ''])
  assert.deepEqual(seen.map((s) => `${s.method} ${s.path}`), ['POST /api/transfers', ...Array<string>(4).fill('GET /api/transfers/4-17')])
  // Three waits of the poll interval between the four looks.
  assert.ok(Date.now() - started >= 1400, `polled every 500 ms (${Date.now() - started} ms)`)
})

void test('vectis transfer send --wait: a failed transfer exits 1 with its diagnostic; a deadline names the last status', async (t) => {
  const { url } = await fakeMember(t)
  const failed = await run(t, url, ['send', '--partner', 'ACME', '--file', 'REFUSED', '--wait', '--timeout-ms', '60000', 'a.bin'])
  assert.equal(failed.code, 1)
  assert.equal(failed.out, '4-18\n')
  assert.match(failed.err, /^4-18 in progress, attempt 1\n4-18 failed after 1 attempt: D3-304 partner refused the connection: authentication\n$/)
  const slow = await run(t, url, ['send', '--partner', 'ACME', '--file', 'SLOW', '--wait', '--timeout-ms', '700', 'a.bin'])
  assert.equal(slow.code, 1)
  assert.match(slow.err, /vectis transfer: 4-19 did not end within 700 ms \(last seen: 4-19 queued, next attempt at [^)]+\); it goes on/)
})

void test('vectis transfer fetch: POSTs direction fetch with into and remoteName, and reports the server\'s 501', async (t) => {
  const { url, seen } = await fakeMember(t)
  await assert.rejects(run(t, url, ['fetch', '--partner', 'ACME', '--file', 'REPORTS', '--into', 'INBOX', '--name', 'day.csv', '--priority', '2', '--not-before', '2026-12-24T08:00:00+01:00']),
    (err: Error) => err.name === 'ApiError' && err.message === 'HTTP 501: fetching (direction "fetch") is not available yet in this version; sends are')
  assert.deepEqual(seen, [{ method: 'POST', path: '/api/transfers', query: '', body: { direction: 'fetch', partner: 'ACME', file: 'REPORTS', into: 'INBOX', remoteName: 'day.csv', priority: 2, notBefore: '2026-12-24T08:00:00+01:00' } }])
  seen.length = 0
  await assert.rejects(run(t, url, ['fetch', '--partner', 'ACME', '--file', 'REPORTS', '--into', 'INBOX']), /HTTP 501/)
  assert.deepEqual(seen[0]!.body, { direction: 'fetch', partner: 'ACME', file: 'REPORTS', into: 'INBOX' })
})

void test('vectis transfer list: the query as given, a table with the diagnostic clipped, the next page; --json as answered', async (t) => {
  const { url, seen } = await fakeMember(t)
  const r = await run(t, url, ['list', '--status', 'failed', '--partner', 'ACME', '--limit', '2'])
  assert.equal(r.code, 0)
  assert.deepEqual(seen.map((s) => `${s.method} ${s.path}?${s.query}`), ['GET /api/transfers?limit=2&status=failed&partner=ACME'])
  const lines = r.out.split('\n')
  assert.match(lines[0]!, /^ID +CREATED +DIRECTION +INITIATOR +PARTNER +FILE +STATUS +BYTES +ATTEMPTS +DIAGNOSTIC$/)
  assert.match(lines[1]!, /^4-18 +2026-01-01T10:00:00Z +send +cluster +ACME +PAYMENTS +failed +0 +3 +D3-304 partner refused the connection: authentication faile…$/)
  assert.match(lines[2]!, /^3-2 +2025-12-31T09:00:00Z +receive +partner +CXCLIENT +PAYMENTS +completed +1048576 +0 +-$/)
  assert.equal(lines[3], '(more: add --before 3-2)')
  assert.equal(lines.length, 5)
  const json = await run(t, url, ['list', '--json'])
  assert.equal(json.code, 0)
  const body = JSON.parse(json.out) as { transfers: TransferRow[], next: string }
  assert.equal(body.next, '3-2')
  assert.equal(body.transfers[0]!.diagnostic!.length, 'D3-304 partner refused the connection: authentication failed '.length + 80, 'not clipped')
  assert.equal(seen[1]!.query, '')
})

void test('vectis transfer cancel: DELETEs the row and prints its new status; a 409 is the server\'s reason', async (t) => {
  const { url, seen } = await fakeMember(t)
  assert.deepEqual(await run(t, url, ['cancel', '4-19']), { code: 0, out: '4-19 cancelled\n', err: '' })
  assert.deepEqual(seen, [{ method: 'DELETE', path: '/api/transfers/4-19', query: '', body: undefined }])
  await assert.rejects(run(t, url, ['cancel', '3-2']), /^ApiError: HTTP 409: transfer 3-2 was started by partner CXCLIENT/)
})

void test('vectis transfer: usage errors are found before any request', async (t) => {
  const { url, seen } = await fakeMember(t)
  const usage = async (argv: string[], why: RegExp): Promise<void> => {
    await assert.rejects(run(t, url, argv), (err: Error) => err instanceof UsageError && why.test(err.message), argv.join(' '))
  }
  await usage([], /^usage: vectis transfer send/)
  await usage(['move'], /^unknown action "move"/)
  await usage(['send', '--file', 'F', 'a.bin'], /^send needs --partner/)
  await usage(['send', '--partner', 'P', 'a.bin'], /^send needs --file/)
  await usage(['send', '--partner', 'P', '--file', 'F'], /^send needs the PATH/)
  await usage(['send', '--partner', 'P', '--file', 'F', 'a', 'b'], /^unexpected argument b/)
  await usage(['send', '--partner', 'P', '--file', 'F', '--priority', '3', 'a'], /^--priority expects an integer from 0 to 2, got 3/)
  await usage(['send', '--partner', 'P', '--file', 'F', '--timeout-ms', '10', 'a'], /^--timeout-ms is the limit of --wait/)
  await usage(['send', '--partner', 'P', '--file', 'F', '--into', 'X', 'a'], /^unknown option --into/)
  await usage(['fetch', '--partner', 'P', '--file', 'F'], /^fetch needs --into/)
  await usage(['fetch', '--partner', 'P', '--file', 'F', '--into', 'I', 'a.bin'], /^unexpected argument a\.bin/)
  await usage(['list', '--limit', '0'], /^--limit expects an integer from 1 to 1000/)
  await usage(['list', '--wait'], /^unknown option --wait/)
  await usage(['list', 'x'], /^list takes no argument/)
  await usage(['cancel'], /^cancel needs the transfer's ID/)
  await usage(['cancel', 'a', 'b'], /^unexpected argument b/)
  assert.deepEqual(seen, [])
  const help = await run(t, url, ['send', '--help'])
  assert.equal(help.code, 0)
  assert.match(help.out, /relative to the members'\n? +VECTIS_SHARED_DIR/)
})

/** The real `vectis` program: its exit codes and the messages on stderr. */
async function vectis (argv: string[], env: Record<string, string>): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'cli/vectis.ts', ...argv], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString('utf8') })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString('utf8') })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  return { code, stdout, stderr }
}

void test('vectis transfer through the program: exit 0 with the id, 1 with the server\'s 400, 2 for bad usage (env credentials)', async (t) => {
  const { url, seen } = await fakeMember(t)
  const env = { VECTIS_URL: url, VECTIS_API_USER: 'u', VECTIS_API_PASSWORD: 'p' }
  const [ok, bad, usage] = await Promise.all([
    vectis(['transfer', 'send', '--partner', 'ACME', '--file', 'PAYMENTS', 'a.bin'], env),
    vectis(['transfer', 'send', '--partner', 'NOPE', '--file', 'PAYMENTS', 'a.bin'], env),
    vectis(['transfer', 'send', '--partner', 'ACME', '--file', 'PAYMENTS', '--priority', 'urgent', 'a.bin'], env)
  ])
  assert.deepEqual(ok, { code: 0, stdout: '4-17\n', stderr: '' })
  assert.deepEqual(bad, { code: 1, stdout: '', stderr: 'vectis transfer: HTTP 400: partner "NOPE" is not configured\n' })
  assert.equal(usage.code, 2)
  assert.match(usage.stderr, /^vectis transfer: --priority expects an integer from 0 to 2, got urgent\n$/)
  assert.equal(seen.length, 2)
})
