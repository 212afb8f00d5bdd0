import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startHarness, type Harness } from '../helpers/pesit-harness.js'
import { patternBytes } from '../helpers/pesit-vectors.js'
import { captureIo } from '../helpers/cli-io.js'
import { runSend } from '../../cli/send.js'
import { pushFile } from '../../transfer/push.js'

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

describe('vectis send → PeSIT server', () => {
  let h: Harness
  let work: string
  let n = 0
  before(async () => {
    h = await startHarness()
    work = await mkdtemp(join(tmpdir(), 'vectis-send-'))
  })
  after(async () => {
    await h.stop()
    await rm(work, { recursive: true, force: true })
  })

  async function send (size: number, extra: string[] = [], seed = 1): Promise<{ code: number, stored?: Buffer, src: Buffer, err: string, out: string }> {
    const src = patternBytes(size, seed + n)
    const path = join(work, `src-${++n}.bin`)
    await writeFile(path, src)
    const io = captureIo()
    const code = await runSend(['--host', '127.0.0.1', '--port', String(h.port), '--partner', 'CXCLIENT', '--password', 'test123',
      '--server', 'PESITSRV', '--file', 'TESTFILE', '--state-dir', join(work, 'state'), ...extra, path], io)
    const id = /transfer id (\d+)/.exec(io.out())?.[1]
    const stored = id === undefined ? undefined : await readFile(join(h.dir, `CXCLIENT_TESTFILE_${id}`))
    return { code, stored, src, err: io.err(), out: io.out() }
  }

  const cases: Array<[string, number, string[]]> = [
    ['0 B with sync points', 0, []],
    ['1 B', 1, []],
    ['1 B without sync points', 1, ['--sync-kb', '0']],
    ['1 MiB with sync points every 32 KB, window 2', 1 << 20, ['--sync-kb', '32', '--window', '2']],
    ['1 MiB without sync points', 1 << 20, ['--sync-kb', '0']],
    ['1 MiB, window 0 (unconfirmed sync points)', 1 << 20, ['--sync-kb', '64', '--window', '0']],
    ['1 MiB multi-article, 100-byte articles (255 per DTF)', 1 << 20, ['--article-size', '100']],
    ['1 MiB + 3 B, articles segmented (20000-byte articles, 4096-byte entities)', (1 << 20) + 3, ['--article-size', '20000', '--entity-size', '4096', '--sync-kb', '64']],
    ['odd size, one-article DTFs (article = entity - 8)', 300_001, ['--article-size', '4088', '--entity-size', '4096', '--sync-kb', '16']]
  ]
  for (const [name, size, extra] of cases) {
    it(`${name}: SHA-256 equal`, async () => {
      const r = await send(size, extra)
      assert.equal(r.code, 0, r.err)
      assert.ok(r.stored !== undefined, 'one final file')
      assert.equal(r.stored.length, size)
      assert.equal(sha(r.stored), sha(r.src))
      assert.match(r.out, new RegExp(`sent .*: ${size} bytes`))
    })
  }

  it('64 MiB with 1 MiB sync points: SHA-256 equal, no partial files left', async () => {
    const r = await send(64 << 20, ['--sync-kb', '1024', '--article-size', '8192'])
    assert.equal(r.code, 0, r.err)
    assert.equal(sha(r.stored!), sha(r.src))
    // No partial file left; each delivery leaves its completion record (hidden, swept after some days).
    assert.deepEqual((await readdir(h.dir)).filter((f) => f.startsWith('.') && !f.endsWith('.ckpt')), [])
    assert.equal((await readdir(h.dir)).filter((f) => f.endsWith('.ckpt')).length, (await readdir(h.dir)).filter((f) => !f.startsWith('.')).length)
  })

  it('concurrent pushes all complete', async () => {
    const rs = await Promise.all(Array.from({ length: 8 }, async (_, i) => await send(200_000 + i, ['--sync-kb', '16'], 100 + i)))
    for (const r of rs) {
      assert.equal(r.code, 0, r.err)
      assert.equal(sha(r.stored!), sha(r.src))
    }
  })

  it('refusals: exit 1 with the diagnostic; bad usage: exit 2', async () => {
    const path = join(work, 'small.bin')
    await writeFile(path, 'hello')
    const base = ['--host', '127.0.0.1', '--port', String(h.port), '--server', 'PESITSRV', '--state-dir', join(work, 'state')]
    let io = captureIo()
    assert.equal(await runSend([...base, '--partner', 'CXCLIENT', '--password', 'wrong', '--file', 'TESTFILE', path], io), 1)
    assert.match(io.err(), /D3-304/)
    io = captureIo()
    assert.equal(await runSend([...base, '--partner', 'NOBODY', '--password', 'x', '--file', 'TESTFILE', path], io), 1)
    assert.match(io.err(), /D3-304/)
    io = captureIo()
    assert.equal(await runSend([...base, '--partner', 'CXCLIENT', '--password', 'test123', '--file', 'NOSUCH', path], io), 1)
    assert.match(io.err(), /D2-205/)
    io = captureIo()
    assert.equal(await runSend([...base, '--partner', 'CXCLIENT', '--password', 'test123', '--file', 'OUTBOX', path], io), 1)
    assert.match(io.err(), /D2-226/)
    io = captureIo()
    assert.equal(await runSend([...base, '--partner', 'READER', '--password', 'r', '--file', 'TESTFILE', path], io), 1)
    assert.match(io.err(), /D3-304/)
    io = captureIo()
    assert.equal(await runSend(['--host', '127.0.0.1', '--port', String(h.port), '--partner', 'CXCLIENT', '--password', 'test123', '--server', 'OTHER', '--file', 'TESTFILE', '--state-dir', join(work, 'state'), path], io), 1)
    assert.match(io.err(), /D3-301/)
    io = captureIo()
    assert.equal(await runSend(['--port', '1', path], io), 2)
    assert.match(io.err(), /--host is required/)
    io = captureIo()
    assert.equal(await runSend([...base, '--partner', 'CXCLIENT', '--password', 'test123', '--file', 'TESTFILE', '--sync-kb', 'many', path], io), 2)
    io = captureIo()
    assert.equal(await runSend([...base, '--partner', 'CXCLIENT', '--password', 'test123', '--file', 'TESTFILE', '--bogus', path], io), 2)
    io = captureIo()
    assert.equal(await runSend([...base, '--partner', 'CXCLIENT', '--password', 'test123', '--file', 'TESTFILE', join(work, 'missing')], io), 1)
    assert.match(io.err(), /cannot read/)
    io = captureIo()
    const fresh = join(work, 'never-sent.bin')
    await writeFile(fresh, 'x')
    assert.equal(await runSend([...base, '--partner', 'CXCLIENT', '--password', 'test123', '--file', 'TESTFILE', '--restart', fresh], io), 1)
    assert.match(io.err(), /no interrupted transfer/)
  })

  it('the same transfer id pushed twice: second CREATE refused with D2-204 (file exists)', async () => {
    const path = join(work, 'twice.bin')
    await writeFile(path, patternBytes(5000))
    const o = { host: '127.0.0.1', port: h.port, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'TESTFILE', source: path, transferId: 4242 }
    await pushFile(o)
    await assert.rejects(pushFile(o), /D2-204/)
  })

  it('progress is drawn on a terminal, not otherwise', async () => {
    const path = join(work, 'tty.bin')
    await writeFile(path, patternBytes(3 << 20, 8))
    const io = captureIo()
    ;(io.stderr as { isTTY?: boolean }).isTTY = true
    const code = await runSend(['--host', '127.0.0.1', '--port', String(h.port), '--partner', 'CXCLIENT', '--password', 'test123',
      '--server', 'PESITSRV', '--file', 'TESTFILE', '--state-dir', join(work, 'state'), '--sync-kb', '256', path], io)
    assert.equal(code, 0, io.err())
    assert.match(io.err(), /\r100% 3\.0\/3\.0 MiB .* sync \d+ acked/)
    const quiet = captureIo()
    ;(quiet.stderr as { isTTY?: boolean }).isTTY = true
    assert.equal(await runSend(['--host', '127.0.0.1', '--port', String(h.port), '--partner', 'CXCLIENT', '--password', 'test123',
      '--server', 'PESITSRV', '--file', 'TESTFILE', '--state-dir', join(work, 'state'), '--quiet', path], quiet), 0)
    assert.equal(quiet.err(), '')
  })

  it('pre-connection message, then the push', async () => {
    const r = await send(10_000, ['--preconnection'])
    assert.equal(r.code, 0, r.err)
    assert.equal(sha(r.stored!), sha(r.src))
  })

  it('metrics and journal followed every push', () => {
    assert.equal(h.metrics.servers, 1)
    assert.equal(h.metrics.connections, 0)
    assert.ok((h.metrics.transfers.get('receive:completed') ?? 0) >= 14)
    const completed = h.journal.ended.filter((e) => e.status === 'completed')
    assert.equal(h.metrics.bytes >= completed.reduce((a, e) => a + e.bytes, 0), true)
  })
})
