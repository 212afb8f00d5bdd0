import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'node:https'
import { DaemonProcess, freePort, freePorts, tempDir } from '../helpers/daemon-process.js'
import { makePki, opensslMissing, type TestPki } from '../helpers/certs.js'
import { captureIo } from '../helpers/cli-io.js'
import { patternBytes } from '../helpers/pesit-vectors.js'
import { runSend } from '../../cli/send.js'

async function httpsGet (port: number, path: string, ca: Buffer, auth?: string): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    const headers: Record<string, string> = auth === undefined ? {} : { authorization: `Basic ${Buffer.from(auth).toString('base64')}` }
    const req = request({ host: '127.0.0.1', port, path, ca, headers, timeout: 5000 }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => { body += d }).on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    req.on('error', reject)
    req.end()
  })
}

describe('vectisd with TLS: the API over HTTPS, a PeSIT TLS listener beside the plain one', { skip: opensslMissing() }, () => {
  let dir: { path: string, remove: () => Promise<void> }
  let pki: TestPki
  let d: DaemonProcess
  let http: number
  let plain: number
  let secure: number
  before(async () => {
    dir = await tempDir()
    pki = makePki(join(dir.path, 'pki'))
    ;[http, plain, secure] = await freePorts(3)
    await writeFile(join(dir.path, 'vectis.yaml'), `servers:
  - id: PESITSRV
    port: ${plain}
  - id: PESITSRV
    port: ${secure}
    tls: {certFile: ${pki.server.cert}, keyFile: ${pki.server.key}, caFile: ${pki.ca}, clientAuth: optional}
partners:
  - id: CXCLIENT
    password: test123
files:
  - id: TESTFILE
    directory: inbox
`)
    d = new DaemonProcess({
      VECTIS_HTTP_PORT: String(http), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_CONFIG: join(dir.path, 'vectis.yaml'),
      VECTIS_SHARED_DIR: join(dir.path, 'shared'), VECTIS_DATA_DIR: join(dir.path, 'data'), VECTIS_API_PASSWORD: 'pw',
      VECTIS_HTTP_TLS_CERT_FILE: pki.server.cert, VECTIS_HTTP_TLS_KEY_FILE: pki.server.key
    }, { cwd: dir.path }).start()
    await d.waitLog((l) => l.msg === 'vectisd started')
  })
  after(async () => {
    await d.kill()
    await dir.remove()
  })

  it('answers probes and the API over HTTPS, and lists both listeners of the server id', async () => {
    const ca = await readFile(pki.ca)
    assert.equal((await httpsGet(http, '/healthz', ca)).status, 200)
    const st = await httpsGet(http, '/api/cluster/status', ca, 'vectis:pw')
    assert.equal(st.status, 200)
    const servers = (JSON.parse(st.body) as { servers: Array<{ id: string, port: number, tls: boolean, running: boolean }> }).servers
    assert.deepEqual(servers, [{ id: 'PESITSRV', port: plain, tls: false, running: true, connections: 0 }, { id: 'PESITSRV', port: secure, tls: true, running: true, connections: 0 }])
  })

  it('takes a push over TLS and one in plain TCP for the same server id', async () => {
    const src = join(dir.path, 'src.bin')
    await writeFile(src, patternBytes(200_000, 5))
    for (const [port, extra, id] of [[secure, ['--tls', '--ca', pki.ca], '11'], [plain, [], '12']] as const) {
      const io = captureIo()
      const code = await runSend(['--host', '127.0.0.1', '--port', String(port), '--partner', 'CXCLIENT', '--password', 'test123', '--server', 'PESITSRV',
        '--file', 'TESTFILE', '--transfer-id', id, '--state-dir', join(dir.path, 'state'), ...extra, src], io)
      assert.equal(code, 0, io.err())
      assert.deepEqual(await readFile(join(dir.path, 'shared', 'inbox', `CXCLIENT_TESTFILE_${id}`)), await readFile(src))
    }
  })

  it('a key that does not match its certificate stops the start with exit 2, naming the setting', async () => {
    const bad = new DaemonProcess({
      VECTIS_HTTP_PORT: String(await freePort()), VECTIS_BIND_HOST: '127.0.0.1', VECTIS_DATA_DIR: join(dir.path, 'data2'),
      VECTIS_SHARED_DIR: join(dir.path, 'shared2'), VECTIS_HTTP_TLS_CERT_FILE: pki.server.cert, VECTIS_HTTP_TLS_KEY_FILE: pki.client.key
    }, { cwd: dir.path }).start()
    assert.equal((await bad.waitExit()).code, 2)
    assert.match(bad.stdout + bad.stderr, /VECTIS_HTTP_TLS_CERT_FILE.*matching key/)
  })
})
