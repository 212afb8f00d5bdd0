import { describe, it, after, before } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'node:http'
import WebSocket from 'ws'
import { DaemonProcess, freePort, tempDir, ROOT } from '../helpers/daemon-process.js'
import { parsePrometheusText } from '../helpers/prometheus-text.js'
import { waitFor } from '../helpers/wait.js'
import { captureIo } from '../helpers/cli-io.js'
import { runReceive } from '../../cli/receive.js'
import { runSend } from '../../cli/send.js'

interface Answer { status: number, headers: Record<string, string | string[] | undefined>, body: string }

async function http (port: number, method: string, path: string, opts: { auth?: string, body?: string, contentType?: string, headers?: Record<string, string> } = {}): Promise<Answer> {
  return await new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers }
    if (opts.auth !== undefined) headers.authorization = `Basic ${Buffer.from(opts.auth).toString('base64')}`
    if (opts.body !== undefined || opts.contentType !== undefined) headers['content-type'] = opts.contentType ?? 'application/json'
    const req = request({ host: '127.0.0.1', port, method, path, headers, timeout: 5000 }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => { body += d }).on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) })
    })
    req.on('error', reject)
    req.on('timeout', () => { req.destroy(new Error('timeout')) })
    req.end(opts.body)
  })
}

function noStackTrace (d: DaemonProcess): void {
  assert.ok(!/\n\s+at .+\(.+:\d+:\d+\)/.test(d.stdout + d.stderr), `a stack trace was printed:\n${d.stderr}\n${d.stdout}`)
}

describe('standalone vectisd with its embedded defaults', () => {
  let dir: { path: string, remove: () => Promise<void> }
  let d: DaemonProcess
  let port: number
  let auth: string

  before(async () => {
    dir = await tempDir()
    port = await freePort()
    // Only the HTTP port moves (tests run in parallel); everything else is the embedded default.
    d = new DaemonProcess({ VECTIS_HTTP_PORT: String(port), VECTIS_BIND_HOST: '127.0.0.1' }, { cwd: dir.path }).start()
    await d.waitLog((l) => l.msg === 'vectisd started')
    const pw = d.logs.find((l) => typeof l.generatedPassword === 'string')
    assert.ok(pw !== undefined, 'the generated password is logged')
    auth = `vectis:${String(pw.generatedPassword)}`
  })

  after(async () => {
    await d.kill()
    await dir.remove()
  })

  it('logs the generated password exactly once', () => {
    assert.equal(d.logs.filter((l) => 'generatedPassword' in l).length, 1)
  })

  it('/healthz and /readyz answer 200 without credentials', async () => {
    const h = await http(port, 'GET', '/healthz')
    assert.equal(h.status, 200)
    assert.deepEqual(JSON.parse(h.body), { status: 'ok' })
    assert.equal((await http(port, 'GET', '/readyz')).status, 200)
  })

  it('/api/cluster/status has the shape of docs/contract.md §3.5: one member, itself, leader, epoch 1', async () => {
    const r = await http(port, 'GET', '/api/cluster/status', { auth })
    assert.equal(r.status, 200)
    assert.match(String(r.headers['content-type']), /application\/json/)
    const s = JSON.parse(r.body) as Record<string, unknown>
    assert.equal(s.clusterName, 'vectis-cluster')
    assert.equal(typeof s.nodeName, 'string')
    assert.equal(s.isLeader, true)
    assert.equal(s.leader, s.nodeName)
    assert.equal(s.epoch, 1)
    assert.deepEqual(s.viewId, { coordinator: s.nodeName, id: 1 })
    assert.deepEqual(s.quorum, { required: 1, present: 1, ok: true })
    assert.equal(s.memberCount, 1)
    assert.deepEqual(s.members, [{ name: s.nodeName, address: (s.members as Array<{ address: string }>)[0]!.address, isLeader: true, journalSeq: 0, heartbeatAgeMs: null, labelled: null }])
    assert.deepEqual(s.journal, { seq: 0, lagEntries: 0 })
    // The embedded default: PESITSRV on 5000, running because this member leads (no other test binds 127.0.0.1:5000).
    assert.deepEqual(s.servers, [{ id: 'PESITSRV', port: 5000, tls: false, running: true, connections: 0 }])
  })

  it('a demo partner out of the box: logged once with ready commands that pull the sample and push a file', async () => {
    const lines = d.logs.filter((l) => typeof l.demoPassword === 'string')
    assert.equal(lines.length, 1)
    const demo = lines[0]!
    const args = (cmd: unknown, prefix: string): string[] => {
      const s = String(cmd)
      assert.ok(s.startsWith(prefix), s)
      return s.slice(prefix.length).split(' ')
    }
    const pull = args(demo.receive, 'vectis receive ')
    const dest = join(dir.path, 'hello.txt')
    const io = captureIo()
    assert.equal(await runReceive(['--state-dir', join(dir.path, 'state'), ...pull.slice(0, -1), dest], io), 0, io.err())
    assert.match(readFileSync(dest, 'utf8'), /^Hello from Vectis/)
    const src = join(dir.path, 'mine.bin')
    writeFileSync(src, 'my first push')
    const push = args(demo.send, 'vectis send ')
    const io2 = captureIo()
    assert.equal(await runSend(['--state-dir', join(dir.path, 'state'), ...push.slice(0, -1), src], io2), 0, io2.err())
    const id = /transfer id (\d+)/.exec(io2.out())![1]
    assert.equal(readFileSync(join(dir.path, 'data', 'shared', 'inbox', 'demo', `DEMO_DEMOFILE_${id}`), 'utf8'), 'my first push')
  })

  it('401 with WWW-Authenticate without or with wrong credentials, JSON body', async () => {
    for (const a of [undefined, 'vectis:wrong', 'other:x', 'garbage']) {
      const r = await http(port, 'GET', '/api/cluster/status', a === undefined ? {} : { auth: a })
      assert.equal(r.status, 401, `auth ${a}`)
      assert.equal(r.headers['www-authenticate'], 'Basic realm="vectis"')
      assert.equal(typeof (JSON.parse(r.body) as { error: unknown }).error, 'string')
    }
    const raw = await new Promise<number>((resolve, reject) => {
      request({ host: '127.0.0.1', port, path: '/api/cluster/status', headers: { authorization: 'Bearer x' } }, (res) => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject).end()
    })
    assert.equal(raw, 401)
  })

  it('404 for an unknown path, 405 for a wrong method, JSON errors', async () => {
    const nf = await http(port, 'GET', '/nope', { auth })
    assert.equal(nf.status, 404)
    assert.match((JSON.parse(nf.body) as { error: string }).error, /\/nope/)
    const na = await http(port, 'DELETE', '/api/cluster/status', { auth })
    assert.equal(na.status, 405)
    assert.equal(na.headers.allow, 'GET')
    assert.equal(typeof (JSON.parse(na.body) as { error: unknown }).error, 'string')
    assert.equal((await http(port, 'POST', '/healthz')).status, 405)
  })

  it('400 for a malformed body, 409 when there is nobody to hand over to', async () => {
    const bad = await http(port, 'POST', '/api/cluster/leadership/transfer', { auth, body: '{"to":' })
    assert.equal(bad.status, 400)
    assert.match((JSON.parse(bad.body) as { error: string }).error, /malformed JSON/)
    const wrongShape = await http(port, 'POST', '/api/cluster/leadership/transfer', { auth, body: '{"to": 3}' })
    assert.equal(wrongShape.status, 400)
    const nobody = await http(port, 'POST', '/api/cluster/leadership/transfer', { auth, body: '{}' })
    assert.equal(nobody.status, 409)
    assert.match((JSON.parse(nobody.body) as { error: string }).error, /no other member/)
  })

  it('a cross-site POST to the hand-over is refused before it acts: no JSON content type 415, another origin 403', async () => {
    const handover = '/api/cluster/leadership/transfer'
    const error = (a: Answer): string => (JSON.parse(a.body) as { error: string }).error
    // What a page of another site can send with the browser's cached credentials: a form, or an empty POST.
    const empty = await http(port, 'POST', handover, { auth })
    assert.equal(empty.status, 415)
    assert.match(error(empty), /needs content-type application\/json, even with an empty body; got none/)
    const form = await http(port, 'POST', handover, { auth, contentType: 'application/x-www-form-urlencoded', body: 'to=vectis-1' })
    assert.equal(form.status, 415)
    const emptyForm = await http(port, 'POST', handover, { auth, contentType: 'application/x-www-form-urlencoded' })
    assert.equal(emptyForm.status, 415)
    const foreign = await http(port, 'POST', handover, { auth, contentType: 'application/json', headers: { origin: 'https://evil.example' } })
    assert.equal(foreign.status, 403)
    assert.match(error(foreign), /Origin https:\/\/evil\.example is not this server's \(127\.0\.0\.1:\d+\)/)
    const crossSite = await http(port, 'POST', handover, { auth, contentType: 'application/json', headers: { 'sec-fetch-site': 'cross-site' } })
    assert.equal(crossSite.status, 403)
    assert.match(error(crossSite), /Sec-Fetch-Site is cross-site/)
    // The same request from the console's own page reaches the hand-over (which has nobody to hand over to here).
    const own = { origin: `http://127.0.0.1:${port}`, 'sec-fetch-site': 'same-origin' }
    const sameOrigin = await http(port, 'POST', handover, { auth, contentType: 'application/json', headers: own })
    assert.equal(sameOrigin.status, 409)
    assert.match(error(sameOrigin), /no other member/)
    // The same rules hold for the backups; a same-origin JSON POST takes one.
    assert.equal((await http(port, 'POST', '/api/backups', { auth })).status, 415)
    assert.equal((await http(port, 'POST', '/api/backups', { auth, contentType: 'application/json', headers: { origin: 'http://evil.example' } })).status, 403)
    const backup = await http(port, 'POST', '/api/backups', { auth, contentType: 'application/json', headers: own })
    assert.equal(backup.status, 201, backup.body)
    assert.equal(typeof (JSON.parse(backup.body) as { id: unknown }).id, 'string')
  })

  it('vectis backup (the CLI) creates and lists backups through those rules', () => {
    const env = { ...process.env, VECTIS_API_PASSWORD: auth.slice('vectis:'.length) }
    const cli = join(ROOT, 'dist', 'bin', 'vectis.js')
    const created = spawnSync(process.execPath, [cli, 'backup', 'create', '--url', `http://127.0.0.1:${port}`], { encoding: 'utf8', env })
    assert.equal(created.status, 0, created.stderr)
    const id = /^backup (\S+):/.exec(created.stdout)?.[1]
    assert.ok(id !== undefined, created.stdout)
    const listed = spawnSync(process.execPath, [cli, 'backup', 'list', '--url', `http://127.0.0.1:${port}`], { encoding: 'utf8', env })
    assert.equal(listed.status, 0, listed.stderr)
    assert.ok(listed.stdout.includes(id), listed.stdout)
  })

  it('/metrics parses as Prometheus text and reports vectis_cluster_is_leader 1', async () => {
    const r = await http(port, 'GET', '/metrics')
    assert.equal(r.status, 200)
    assert.match(String(r.headers['content-type']), /text\/plain/)
    const samples = parsePrometheusText(r.body)
    const v = (name: string): number | undefined => samples.find((s) => s.name === name)?.value
    assert.equal(v('vectis_cluster_is_leader'), 1)
    assert.equal(v('vectis_cluster_members'), 1)
    assert.equal(v('vectis_cluster_quorum'), 1)
    assert.equal(v('vectis_cluster_epoch'), 1)
    assert.ok(samples.some((s) => s.name === 'process_cpu_user_seconds_total'), 'default process metrics')
    for (const name of ['vectis_cluster_view_changes_total', 'vectis_cluster_leader_changes_total', 'vectis_cluster_heartbeat_age_max_seconds', 'vectis_k8s_labels_in_sync', 'vectis_pesit_servers_running', 'vectis_pesit_connections_active']) {
      assert.ok(samples.some((s) => s.name === name), name)
    }
  })

  it('/metrics passes promtool check metrics', async (t) => {
    const which = spawnSync('promtool', ['--version'])
    if (which.error !== undefined) {
      t.skip('promtool is not installed (Debian package prometheus; .ci/run installs it)')
      return
    }
    const r = await http(port, 'GET', '/metrics')
    const check = spawnSync('promtool', ['check', 'metrics'], { input: r.body, encoding: 'utf8' })
    // promtool exits 3 for lint remarks only (e.g. counters without _total); 1 means the text did not parse.
    assert.notEqual(check.status, 1, `promtool could not parse /metrics: ${check.stderr}`)
    // Lint remarks are tolerated only for prom-client's own default metrics (nodejs_active_handles_total is a
    // gauge named like a counter); every vectis_* metric must be lint-clean.
    const remarks = `${check.stdout}${check.stderr}`.split('\n').filter((l) => l.trim() !== '')
    const ours = remarks.filter((l) => !/^(nodejs|process)_/.test(l))
    assert.deepEqual(ours, [], `promtool lint remarks on our metrics: ${ours.join('; ')}`)
  })

  it('the events WebSocket sends the current state first, and needs credentials', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/api/cluster/events`, { headers: { authorization: `Basic ${Buffer.from(auth).toString('base64')}` } })
    try {
      const first = await new Promise<Record<string, unknown>>((resolve, reject) => {
        ws.once('message', (m: Buffer) => { resolve(JSON.parse(m.toString('utf8')) as Record<string, unknown>) })
        ws.once('error', reject)
      })
      assert.equal(first.type, 'state')
      assert.equal(first.epoch, 1)
      assert.equal(typeof first.at, 'string')
      assert.ok(Array.isArray(first.members))
      assert.equal(first.leader, (first.members as Array<{ name: string }>)[0]!.name)
    } finally {
      ws.terminate()
    }
    const anon = new WebSocket(`ws://127.0.0.1:${port}/api/cluster/events`)
    const status = await new Promise<number>((resolve) => {
      anon.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); anon.terminate() })
      anon.on('open', () => { resolve(101); anon.terminate() })
      anon.on('error', () => {})
    })
    assert.equal(status, 401)
    assert.equal((await http(port, 'GET', '/api/cluster/events', { auth })).status, 426)
  })

  it('the events WebSocket refuses a page of another origin (403) and takes one of its own', async () => {
    const headers = { authorization: `Basic ${Buffer.from(auth).toString('base64')}` }
    const first = async (origin: string): Promise<number | string> => await new Promise((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/api/cluster/events`, { headers: { ...headers, origin } })
      ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate() })
      ws.on('message', (m: Buffer) => { resolve((JSON.parse(m.toString('utf8')) as { type: string }).type); ws.terminate() })
      ws.on('error', () => {})
    })
    assert.equal(await first('https://evil.example'), 403)
    assert.equal(await first(`http://localhost:${port}`), 403, 'another host name is another origin')
    assert.equal(await first(`http://127.0.0.1:${port}`), 'state')
  })

  it('vectis status prints the member table; bad usage exits 2', () => {
    const cli = join(ROOT, 'dist', 'bin', 'vectis.js')
    const ok = spawnSync(process.execPath, [cli, 'status', '--url', `http://127.0.0.1:${port}`], { encoding: 'utf8', env: { ...process.env, VECTIS_API_PASSWORD: auth.slice('vectis:'.length) } })
    assert.equal(ok.status, 0, ok.stderr)
    assert.match(ok.stdout, /epoch 1 {2}leader \S+/)
    assert.match(ok.stdout, /^0 +\S+ +\S+ +leader \(coordinator\)$/m)
    const denied = spawnSync(process.execPath, [cli, 'status', '--url', `http://127.0.0.1:${port}`, '--password', 'wrong'], { encoding: 'utf8' })
    assert.equal(denied.status, 1)
    assert.match(denied.stderr, /401/)
    assert.equal(spawnSync(process.execPath, [cli, 'status', '--bogus'], { encoding: 'utf8' }).status, 2)
    assert.equal(spawnSync(process.execPath, [cli, 'nope'], { encoding: 'utf8' }).status, 2)
  })

  it('never logs credentials', async () => {
    await http(port, 'GET', '/api/cluster/status', { auth: 'vectis:some-wrong-password' })
    assert.ok(!d.stdout.includes('some-wrong-password'))
    assert.ok(!d.stdout.includes(Buffer.from('vectis:some-wrong-password').toString('base64')))
  })
})

describe('vectisd exit codes and signals', () => {
  it('a bad variable exits 2 with one line naming it', async () => {
    const d = new DaemonProcess({ VECTIS_HTTP_PORT: 'abc' }).start()
    const { code } = await d.waitExit()
    assert.equal(code, 2)
    assert.equal(d.stderr.trim().split('\n').length, 1)
    assert.match(d.stderr, /VECTIS_HTTP_PORT="abc": expected a TCP port from 1 to 65535/)
    noStackTrace(d)
  })

  it('a pod selector the label controller would refuse exits 2 at once, naming VECTIS_POD_SELECTOR', async () => {
    const d = new DaemonProcess({ VECTIS_POD_SELECTOR: 'app=vectis,vectis-leader=true' }).start()
    try {
      const { code } = await d.waitExit()
      assert.equal(code, 2)
      assert.equal(d.stderr.trim().split('\n').length, 1)
      assert.match(d.stderr, /VECTIS_POD_SELECTOR="app=vectis,vectis-leader=true": must not use the leader label/)
      noStackTrace(d)
    } finally {
      await d.kill() // a daemon that accepted the selector would run on
    }
  })

  it('an unreadable VECTIS_CONFIG and a bad YAML key exit 2', async () => {
    const dir = await tempDir()
    try {
      const missing = new DaemonProcess({ VECTIS_CONFIG: join(dir.path, 'missing.yaml') }).start()
      assert.equal((await missing.waitExit()).code, 2)
      assert.match(missing.stderr, /VECTIS_CONFIG=.*missing\.yaml.*readable YAML file/)
      writeFileSync(join(dir.path, 'bad.yaml'), 'servers:\n  - id: PESITSRV\n    port: fifty\n')
      const bad = new DaemonProcess({ VECTIS_CONFIG: join(dir.path, 'bad.yaml') }).start()
      assert.equal((await bad.waitExit()).code, 2)
      assert.match(bad.stderr, /servers\[0\]\.port="fifty": expected an integer from 1 to 65535/)
      // Refused by the PeSIT servers' own check too, which used to be the first to see it (exit 1, after start-up).
      writeFileSync(join(dir.path, 'blank.yaml'), 'partners:\n  - id: CX CLIENT\n    password: pw\n')
      const blank = new DaemonProcess({ VECTIS_CONFIG: join(dir.path, 'blank.yaml') }).start()
      assert.equal((await blank.waitExit()).code, 2)
      assert.match(blank.stderr, /partners\[0\]\.id="CX CLIENT": expected 1 to 24 printable ASCII characters without blanks/)
    } finally {
      await dir.remove()
    }
  })

  it('a KUBECONFIG that cannot be loaded exits 2 naming it, with no stack trace', async () => {
    // The Kubernetes client is loaded once the cluster has started; its configuration error still fails the start.
    const dir = await tempDir()
    try {
      const d = new DaemonProcess({
        KUBECONFIG: join(dir.path, 'missing-kubeconfig'), VECTIS_DATA_DIR: join(dir.path, 'data'),
        VECTIS_HTTP_PORT: String(await freePort()), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_API_PASSWORD: 'pw'
      }).start()
      assert.equal((await d.waitExit()).code, 2)
      assert.match(d.stderr, /^vectisd: configuration error: KUBECONFIG=".*missing-kubeconfig"/)
      noStackTrace(d)
      assert.equal(d.logs.some((l) => l.msg === 'vectisd started'), false)
    } finally {
      await dir.remove()
    }
  })

  it('an unwritable data directory exits 2 naming VECTIS_DATA_DIR', async () => {
    const dir = await tempDir()
    try {
      writeFileSync(join(dir.path, 'file'), '')
      const d = new DaemonProcess({ VECTIS_DATA_DIR: join(dir.path, 'file', 'data'), VECTIS_HTTP_PORT: String(await freePort()), VECTIS_BIND_HOST: '127.0.0.1' }).start()
      assert.equal((await d.waitExit()).code, 2)
      assert.match(d.stderr, /VECTIS_DATA_DIR=.*expected a writable directory/)
    } finally {
      await dir.remove()
    }
  })

  it('clustering with majority quorum and no VECTIS_CLUSTER_SIZE exits 2', async () => {
    const d = new DaemonProcess({ VECTIS_CLUSTER_ENABLED: 'true', VECTIS_SEEDS: '127.0.0.1:7800' }).start()
    assert.equal((await d.waitExit()).code, 2)
    assert.match(d.stderr, /VECTIS_CLUSTER_SIZE: required/)
  })

  it('a port in use exits 1 with a logged reason, not a stack trace on stderr', async () => {
    const { createServer } = await import('node:net')
    const blocker = createServer()
    const port = await freePort()
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve))
    const dir = await tempDir()
    try {
      const d = new DaemonProcess({ VECTIS_HTTP_PORT: String(port), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_DATA_DIR: join(dir.path, 'data') }).start()
      assert.equal((await d.waitExit()).code, 1)
      assert.ok(d.logs.some((l) => l.msg === 'start failed' && JSON.stringify(l.err).includes('EADDRINUSE')))
      assert.match(d.stderr, /^vectisd: start failed: .*EADDRINUSE.*\n$/)
      noStackTrace(d)
    } finally {
      blocker.close()
      await dir.remove()
    }
  })

  it('SIGTERM during start-up exits 0 without a stack trace', async () => {
    const dir = await tempDir()
    try {
      const d = new DaemonProcess({ VECTIS_HTTP_PORT: String(await freePort()), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_DATA_DIR: join(dir.path, 'data') }).start()
      await d.waitLog((l) => l.msg === 'vectisd starting')
      d.signal('SIGTERM')
      const { code } = await d.waitExit()
      assert.equal(code, 0)
      noStackTrace(d)
    } finally {
      await dir.remove()
    }
  })

  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    it(`${sig} under requests exits 0 without a stack trace`, async () => {
      const dir = await tempDir()
      const port = await freePort()
      const d = new DaemonProcess({ VECTIS_HTTP_PORT: String(port), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_DATA_DIR: join(dir.path, 'data'), VECTIS_API_PASSWORD: 'pw' }).start()
      try {
        await d.waitLog((l) => l.msg === 'vectisd started')
        let answered = 0
        let stop = false
        const load = Array.from({ length: 8 }, async () => {
          while (!stop) {
            try {
              await http(port, 'GET', '/api/cluster/status', { auth: 'vectis:pw' })
              answered++
            } catch { /* refused once the listener closes: expected */ }
          }
        })
        await waitFor(() => answered > 50, { what: 'requests answered' })
        d.signal(sig)
        const { code } = await d.waitExit()
        stop = true
        await Promise.all(load)
        assert.equal(code, 0)
        noStackTrace(d)
        assert.ok(d.logs.some((l) => l.msg === 'stopped'))
      } finally {
        await d.kill()
        await dir.remove()
      }
    })
  }
})

describe('standalone epochs and the journal', () => {
  it('a daemon restarted 5 times reports 5 different, rising epochs; /api/transfers answers', async () => {
    const dir = await tempDir()
    try {
      const epochs: number[] = []
      for (let i = 0; i < 5; i++) {
        const port = await freePort()
        const d = new DaemonProcess({ VECTIS_HTTP_PORT: String(port), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_DATA_DIR: join(dir.path, 'data'), VECTIS_API_PASSWORD: 'pw' }).start()
        try {
          await d.waitLog((l) => l.msg === 'vectisd started')
          const s = JSON.parse((await http(port, 'GET', '/api/cluster/status', { auth: 'vectis:pw' })).body) as { epoch: number }
          epochs.push(s.epoch)
          if (i === 0) {
            const t = await http(port, 'GET', '/api/transfers?limit=5', { auth: 'vectis:pw' })
            assert.equal(t.status, 200)
            assert.deepEqual(JSON.parse(t.body), { transfers: [], next: null })
            assert.equal((await http(port, 'GET', '/api/transfers?limit=5000', { auth: 'vectis:pw' })).status, 400)
            const cursor = await http(port, 'GET', '/api/transfers?before=9-9', { auth: 'vectis:pw' })
            assert.equal(cursor.status, 400)
            assert.match((JSON.parse(cursor.body) as { error: string }).error, /before: no transfer "9-9" in this member's journal/)
            assert.equal((await http(port, 'GET', '/api/transfers?stauts=x', { auth: 'vectis:pw' })).status, 400)
            assert.equal((await http(port, 'GET', '/api/transfers')).status, 401)
          }
          d.signal('SIGTERM')
          assert.equal((await d.waitExit()).code, 0)
        } finally {
          await d.kill()
        }
      }
      assert.equal(new Set(epochs).size, 5, `epochs ${epochs.join(',')}`)
      for (let i = 1; i < epochs.length; i++) assert.ok(epochs[i]! > epochs[i - 1]!, `epochs ${epochs.join(',')} must rise`)
    } finally {
      await dir.remove()
    }
  })

  it('a corrupt database stops the start with the path and the way out', async () => {
    const dir = await tempDir()
    try {
      const { mkdirSync } = await import('node:fs')
      mkdirSync(join(dir.path, 'data'))
      writeFileSync(join(dir.path, 'data', 'vectis.db'), Buffer.alloc(8192, 0x5a))
      const d = new DaemonProcess({ VECTIS_HTTP_PORT: String(await freePort()), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_DATA_DIR: join(dir.path, 'data') }).start()
      assert.equal((await d.waitExit()).code, 1)
      assert.match(d.stderr, /vectis\.db/)
      assert.match(d.stderr, /backup/i)
    } finally {
      await dir.remove()
    }
  })
})
