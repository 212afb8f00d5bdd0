import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { Writable } from 'node:stream'
import { startHarness, type Harness } from '../helpers/pesit-harness.js'
import { patternBytes } from '../helpers/pesit-vectors.js'
import { captureIo } from '../helpers/cli-io.js'
import { makePki, opensslMissing, type TestPki } from '../helpers/certs.js'
import { captureClientHello } from '../helpers/pesit-fuzz.js'
import { connect as netConnect } from 'node:net'
import { createLogger } from '../../common/logger.js'
import { runSend } from '../../cli/send.js'
import { runReceive } from '../../cli/receive.js'
import { pullFile } from '../../transfer/pull.js'
import { tlsConnector } from '../../transfer/requester-session.js'

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const skip = opensslMissing()

/** The serial number of the certificate a TLS server presents now. */
async function presentedSerial (port: number, ca: string): Promise<string> {
  const ca_ = await readFile(ca)
  return await new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca: ca_ }, () => { resolve(s.getPeerCertificate().serialNumber); s.destroy() })
    s.once('error', reject)
  })
}

describe('PeSIT over TLS', { skip }, () => {
  let pki: TestPki
  let work: string
  let h: Harness
  let live: Harness | undefined
  const logs: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _e, cb) { for (const l of chunk.toString().split('\n')) if (l !== '') logs.push(JSON.parse(l) as Record<string, unknown>); cb() } })

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'vectis-tls-'))
    pki = makePki(join(work, 'pki'))
    h = await startHarness({ logger: createLogger({ level: 'info', destination: sink }), tls: { certFile: pki.server.cert, keyFile: pki.server.key, clientAuth: 'none', minVersion: 'TLSv1.2' } })
    await mkdir(join(h.base, 'outbox'), { recursive: true })
  })
  after(async () => {
    await h.stop()
    await live?.stop()
    await rm(work, { recursive: true, force: true })
  })

  const base = (port: number, extra: string[] = []): string[] => ['--host', '127.0.0.1', '--port', String(port), '--partner', 'CXCLIENT',
    '--password', 'test123', '--server', 'PESITSRV', '--state-dir', join(work, 'state'), ...extra]

  for (const size of [0, 1, 1 << 20]) {
    it(`push and pull of ${size} B over TLS, verified against the CA: SHA-256 equal`, async () => {
      const src = patternBytes(size, size + 1)
      const path = join(work, `push-${size}.bin`)
      await writeFile(path, src)
      const io = captureIo()
      assert.equal(await runSend([...base(h.tlsPort, ['--tls', '--ca', pki.ca, '--file', 'TESTFILE', '--transfer-id', String(100 + size % 997)]), path], io), 0, io.err())
      assert.equal(sha(await readFile(join(h.dir, `CXCLIENT_TESTFILE_${100 + size % 997}`))), sha(src))
      await writeFile(join(h.base, 'outbox', `pull-${size}.bin`), src)
      const dest = join(work, `got-${size}.bin`)
      const io2 = captureIo()
      assert.equal(await runReceive([...base(h.tlsPort, ['--tls', '--ca', pki.ca, '--file', 'OUTBOX', '--name', `pull-${size}.bin`]), dest], io2), 0, io2.err())
      assert.equal(sha(await readFile(dest)), sha(src))
    })
  }

  it('an untrusted server certificate is refused, with a clear error on both sides', async () => {
    const path = join(work, 'u.bin')
    await writeFile(path, 'x')
    const io = captureIo()
    assert.equal(await runSend([...base(h.tlsPort, ['--tls', '--file', 'TESTFILE']), path], io), 1)
    assert.match(io.err(), /certificate is not trusted .*--ca FILE/)
    const io2 = captureIo()
    assert.equal(await runSend([...base(h.tlsPort, ['--tls', '--ca', pki.rogueCa, '--file', 'TESTFILE']), path], io2), 1)
    assert.match(io2.err(), /not trusted/)
    await waitFor(() => logs.some((l) => l.msg === 'TLS handshake failed' && /does it trust this server's certificate/.test(String(l.reason))))
    // Plain PeSIT to the TLS port, and TLS to the plain port, fail cleanly too.
    const io3 = captureIo()
    assert.equal(await runSend([...base(h.tlsPort, ['--file', 'TESTFILE']), path], io3), 1)
    const io4 = captureIo()
    assert.equal(await runSend([...base(h.port, ['--tls', '--ca', pki.ca, '--file', 'TESTFILE']), path], io4), 1)
    assert.match(io4.err(), /TLS connection to 127\.0\.0\.1:\d+ failed/)
  })

  it('clientAuth required: no client certificate is refused with a clear error on both sides; a trusted one is served', async (t) => {
    const strict = await startHarness({
      logger: createLogger({ level: 'info', destination: sink }),
      tls: { certFile: pki.server.cert, keyFile: pki.server.key, caFile: pki.ca, clientAuth: 'required', minVersion: 'TLSv1.2' }
    })
    t.after(async () => { await strict.stop() })
    const path = join(work, 'ca.bin')
    const src = patternBytes(70_000, 9)
    await writeFile(path, src)
    const io = captureIo()
    assert.equal(await runSend([...base(strict.tlsPort, ['--tls', '--ca', pki.ca, '--file', 'TESTFILE']), path], io), 1)
    assert.match(io.err(), /requires a client certificate .*--cert FILE --key FILE/)
    await waitFor(() => logs.some((l) => l.msg === 'TLS handshake failed' && /peer did not return a certificate/i.test(String(l.reason))))
    const io2 = captureIo()
    assert.equal(await runSend([...base(strict.tlsPort, ['--tls', '--ca', pki.ca, '--cert', pki.rogueServer.cert, '--key', pki.rogueServer.key, '--file', 'TESTFILE']), path], io2), 1)
    assert.match(io2.err(), /does not trust the one sent/)
    await waitFor(() => logs.some((l) => l.msg === 'TLS connection closed before its handshake completed (client certificate not trusted, or the client gave up)'))
    const io3 = captureIo()
    assert.equal(await runSend([...base(strict.tlsPort, ['--tls', '--ca', pki.ca, '--cert', pki.client.cert, '--key', pki.client.key, '--file', 'TESTFILE', '--transfer-id', '4040']), path], io3), 0, io3.err())
    assert.equal(sha(await readFile(join(strict.dir, 'CXCLIENT_TESTFILE_4040'))), sha(src))
  })

  it('a partner bound to its client certificate (tlsClientCn) is served only over TLS with that certificate', async (t) => {
    const bound = await startHarness({
      partners: [{ id: 'CXBOUND', password: 'b0und', access: 'both', tlsClientCn: 'CXCLIENT' }],
      tls: { certFile: pki.server.cert, keyFile: pki.server.key, caFile: pki.ca, clientAuth: 'optional', minVersion: 'TLSv1.2' }
    })
    t.after(async () => { await bound.stop() })
    const path = join(work, 'bound.bin')
    await writeFile(path, 'bound to a certificate')
    const as = (port: number, extra: string[]): string[] => ['--host', '127.0.0.1', '--port', String(port), '--partner', 'CXBOUND', '--password', 'b0und',
      '--server', 'PESITSRV', '--state-dir', join(work, 'state-bound'), '--file', 'TESTFILE', ...extra, path]
    const plain = captureIo()
    assert.equal(await runSend(as(bound.port, []), plain), 1)
    assert.match(plain.err(), /D3-304/)
    const noCert = captureIo()
    assert.equal(await runSend(as(bound.tlsPort, ['--tls', '--ca', pki.ca]), noCert), 1)
    assert.match(noCert.err(), /D3-304/)
    const withCert = captureIo()
    assert.equal(await runSend(as(bound.tlsPort, ['--tls', '--ca', pki.ca, '--cert', pki.client.cert, '--key', pki.client.key, '--transfer-id', '5150']), withCert), 0, withCert.err())
    assert.equal(await readFile(join(bound.dir, 'CXBOUND_TESTFILE_5150'), 'utf8'), 'bound to a certificate')
  })

  it('a handshake that stalls (a ClientHello cut short) is closed after the handshake timeout', async (t) => {
    const slow = await startHarness({ init: { timeouts: { connectMs: 300 } }, tls: { certFile: pki.server.cert, keyFile: pki.server.key, clientAuth: 'none', minVersion: 'TLSv1.2' } })
    t.after(async () => { await slow.stop() })
    const hello = await captureClientHello()
    const s = netConnect(slow.tlsPort, '127.0.0.1')
    s.on('error', () => {})
    s.on('data', () => {})
    await new Promise((resolve) => s.once('connect', resolve))
    s.write(hello.subarray(0, 40))
    const closed = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => { resolve(false) }, 5000)
      s.once('close', () => { clearTimeout(timer); resolve(true) })
    })
    s.destroy()
    assert.ok(closed, 'the server closed the stalled handshake')
  })

  it('a certificate rotated by a Secret-style ..data symlink swap is used by the next connection; a live transfer completes', async () => {
    // The layout kubelet gives a mounted Secret: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/
    const mount = join(work, 'secret')
    const gen = async (name: string, pair: { cert: string, key: string }): Promise<void> => {
      await mkdir(join(mount, name), { recursive: true })
      await copyFile(pair.cert, join(mount, name, 'tls.crt'))
      await copyFile(pair.key, join(mount, name, 'tls.key'))
    }
    await gen('..2026_12_07_01', pki.server)
    await symlink('..2026_12_07_01', join(mount, '..data'))
    await symlink('..data/tls.crt', join(mount, 'tls.crt'))
    await symlink('..data/tls.key', join(mount, 'tls.key'))
    live = await startHarness({ tls: { certFile: join(mount, 'tls.crt'), keyFile: join(mount, 'tls.key'), clientAuth: 'none', minVersion: 'TLSv1.2' } })
    const before = await presentedSerial(live.tlsPort, pki.ca)
    // A pull that runs across the rotation: it waits, mid-transfer, until the new certificate is seen.
    const src = patternBytes(8 << 20, 21)
    await mkdir(join(live.base, 'outbox'), { recursive: true })
    await writeFile(join(live.base, 'outbox', 'long.bin'), src)
    const next = pki.issue('server-2', 'vectis-test-server-2')
    let rotated = false
    const connectTls = tlsConnector({ host: '127.0.0.1', port: live.tlsPort }, { ca: await readFile(pki.ca) })
    const r = await pullFile({
      host: '127.0.0.1', port: live.tlsPort, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'OUTBOX', name: 'long.bin',
      destination: join(work, 'long.bin'), syncIntervalKb: 256, syncWindow: 1, connect: connectTls,
      onCheckpoint: async (c) => {
        if (c.syncPoint !== 2 || rotated) return
        rotated = true
        await gen('..2026_12_07_02', next)
        await symlink('..2026_12_07_02', join(mount, '..data_tmp'))
        await rename(join(mount, '..data_tmp'), join(mount, '..data')) // the atomic swap
        await waitFor(async () => (await presentedSerial(live!.tlsPort, pki.ca)) !== before, 10_000)
      }
    })
    assert.ok(rotated)
    assert.equal(r.sha256, sha(src), 'the transfer that started with the old certificate completed')
    assert.notEqual(await presentedSerial(live.tlsPort, pki.ca), before)
  })
})

async function waitFor (cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
