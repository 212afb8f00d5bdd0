/**
 * 1 GiB through the command-line tools, both directions, plain and over TLS, with sync points every 1 MiB made
 * durable on the receiving side: the sizes partners exchange, end to end. Throughput is measured by
 * `npm run bench:transfer`, not here.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startHarness, type Harness } from '../helpers/pesit-harness.js'
import { sha256OfFile, writePatternFile } from '../helpers/big-files.js'
import { makePki, opensslMissing, type TestPki } from '../helpers/certs.js'
import { captureIo } from '../helpers/cli-io.js'
import { runSend } from '../../cli/send.js'
import { runReceive } from '../../cli/receive.js'

const GIB = 1 << 30

describe('1 GiB pushed and pulled with the CLI, plain and over TLS', { skip: opensslMissing() }, () => {
  let work: string
  let pki: TestPki
  let h: Harness
  let srcSha: string
  let src: string
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'vectis-large-'))
    pki = makePki(join(work, 'pki'))
    h = await startHarness({ baseDir: work, tls: { certFile: pki.server.cert, keyFile: pki.server.key, clientAuth: 'none', minVersion: 'TLSv1.2' } })
    await mkdir(join(work, 'outbox'), { recursive: true })
    // The pull's source, also the push's: 1 GiB of a cheap pseudo-random pattern, every MiB different.
    src = join(work, 'outbox', 'big.bin')
    srcSha = await writePatternFile(src, GIB >> 20, 1)
  })
  after(async () => {
    await h.stop()
    await rm(work, { recursive: true, force: true })
  })

  const args = (tls: boolean): string[] => ['--host', '127.0.0.1', '--port', String(tls ? h.tlsPort : h.port), '--partner', 'CXCLIENT', '--password', 'test123',
    '--server', 'PESITSRV', '--state-dir', join(work, 'state'), '--sync-kb', '1024', ...(tls ? ['--tls', '--ca', pki.ca] : [])]

  for (const tls of [false, true]) {
    it(`push of 1 GiB${tls ? ' over TLS' : ''} (4 KB articles, multi-article DTFs): SHA-256 equal`, async () => {
      const id = tls ? 902 : 901
      const io = captureIo()
      assert.equal(await runSend([...args(tls), '--file', 'TESTFILE', '--transfer-id', String(id), src], io), 0, io.err())
      const stored = join(h.dir, `CXCLIENT_TESTFILE_${id}`)
      assert.equal(await sha256OfFile(stored), srcSha)
      await unlink(stored)
    })

    it(`pull of 1 GiB${tls ? ' over TLS' : ''}: SHA-256 equal, as printed`, async () => {
      const dest = join(work, tls ? 'pulled-tls.bin' : 'pulled.bin')
      const io = captureIo()
      assert.equal(await runReceive([...args(tls), '--file', 'OUTBOX', '--name', 'big.bin', dest], io), 0, io.err())
      assert.match(io.out(), new RegExp(`received .*: ${GIB} bytes, .*sha256 ${srcSha}`))
      assert.equal(await sha256OfFile(dest), srcSha)
      await unlink(dest)
    })
  }
})
