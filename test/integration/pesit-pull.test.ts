import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startHarness, type Harness } from '../helpers/pesit-harness.js'
import { patternBytes } from '../helpers/pesit-vectors.js'
import { captureIo } from '../helpers/cli-io.js'
import { runReceive } from '../../cli/receive.js'
import { runSend } from '../../cli/send.js'
import { pullFile } from '../../transfer/pull.js'

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

describe('vectis receive ← PeSIT server (the send direction)', () => {
  let h: Harness
  let work: string
  let outbox: string
  let n = 0
  before(async () => {
    h = await startHarness({
      partners: [
        { id: 'CXCLIENT', password: 'test123', access: 'both' }, { id: 'READER', password: 'r', access: 'read' },
        { id: 'WRITER', password: 'w', access: 'write' }, { id: 'BANK1', password: 'b1', access: 'read' }, { id: 'BANK2', password: 'b2', access: 'read' }
      ],
      files: (base) => [
        { id: 'MINE', direction: 'send', directory: join(base, 'out', '${partner}'), filenamePattern: '${file}' },
        { id: 'EXCHANGE', direction: 'both', directory: join(base, 'exchange', '${partner}'), filenamePattern: 'from-${partner}-${transferId}.bin' },
        { id: 'DELETED', direction: 'send', directory: join(base, 'del'), filenamePattern: '${file}', afterSend: { action: 'delete' } },
        { id: 'MOVED', direction: 'send', directory: join(base, 'mv'), filenamePattern: '${file}', afterSend: { action: 'move', directory: join(base, 'sent', '${partner}') } }
      ]
    })
    work = await mkdtemp(join(tmpdir(), 'vectis-receive-'))
    outbox = join(h.base, 'outbox')
    await mkdir(outbox, { recursive: true })
  })
  after(async () => {
    await h.stop()
    await rm(work, { recursive: true, force: true })
  })

  const base = (partner = 'CXCLIENT', password = 'test123'): string[] =>
    ['--host', '127.0.0.1', '--port', String(h.port), '--partner', partner, '--password', password, '--server', 'PESITSRV', '--state-dir', join(work, 'state')]

  async function receive (args: string[], dest?: string): Promise<{ code: number, err: string, out: string, dest: string }> {
    const d = dest ?? join(work, `got-${++n}.bin`)
    const io = captureIo()
    const code = await runReceive([...args, d], io)
    return { code, err: io.err(), out: io.out(), dest: d }
  }

  /** Puts `size` bytes under `name` in `dir`, older than anything written before (so it is offered first) or not. */
  async function offer (dir: string, name: string, size: number, seed = 1): Promise<Buffer> {
    const b = patternBytes(size, seed)
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, name), b)
    return b
  }

  const cases: Array<[string, number, string[]]> = [
    ['0 B', 0, []],
    ['1 B', 1, []],
    ['1 B without sync points', 1, ['--sync-kb', '0']],
    ['1 MiB with sync points every 32 KB, window 2', 1 << 20, ['--sync-kb', '32', '--window', '2']],
    ['1 MiB without sync points', 1 << 20, ['--sync-kb', '0']],
    ['1 MiB, window 0 (unconfirmed sync points)', 1 << 20, ['--sync-kb', '64', '--window', '0']],
    ['1 MiB + 3 B multi-article (1 KB articles, 63 per entity)', (1 << 20) + 3, ['--sync-kb', '1']],
    ['300001 B over 4096-byte entities', 300_001, ['--entity-size', '4096', '--sync-kb', '16']]
  ]
  for (const [name, size, extra] of cases) {
    it(`${name}: SHA-256 equal, named FILEID/name`, async () => {
      const fname = `case-${++n}.dat`
      const src = await offer(outbox, fname, size, n)
      const r = await receive([...base(), '--file', 'OUTBOX', '--name', fname, ...extra])
      assert.equal(r.code, 0, r.err)
      const got = await readFile(r.dest)
      assert.equal(got.length, size)
      assert.equal(sha(got), sha(src))
      assert.match(r.out, new RegExp(`received .*: ${size} bytes, .*sha256 ${sha(src)}`))
      assert.deepEqual((await readdir(work)).filter((f) => f.startsWith('.')), [], 'no partial file left')
    })
  }

  it('bare FILEID: the oldest file not yet sent to this partner, then the next, then D2-205', async () => {
    const dir = join(h.base, 'out', 'READER')
    const a = await offer(dir, 'a.csv', 1000, 1)
    const b = await offer(dir, 'b.csv', 2000, 2)
    await offer(dir, '.hidden', 10)
    await offer(dir, 'c.tmp', 10)
    await offer(dir, 'd.part', 10)
    await utimes(join(dir, 'b.csv'), new Date(1_000_000), new Date(1_000_000)) // b is the oldest
    const into = join(work, 'reader')
    await mkdir(into)
    const r1 = await receive([...base('READER', 'r'), '--file', 'MINE'], into)
    assert.equal(r1.code, 0, r1.err)
    assert.equal(sha(await readFile(join(into, 'b.csv'))), sha(b), 'a directory PATH takes the server\'s name')
    const r2 = await receive([...base('READER', 'r'), '--file', 'MINE'], into)
    assert.equal(r2.code, 0, r2.err)
    assert.equal(sha(await readFile(join(into, 'a.csv'))), sha(a))
    const r3 = await receive([...base('READER', 'r'), '--file', 'MINE'], into)
    assert.equal(r3.code, 1)
    assert.match(r3.err, /D2-205/, 'keep: sent files are not offered again; hidden and temporary names never')
    // The same name with new content is a new file.
    await offer(dir, 'a.csv', 1500, 9)
    const r4 = await receive([...base('READER', 'r'), '--file', 'MINE'], join(work, 'again.csv'))
    assert.equal(r4.code, 0, r4.err)
    assert.equal((await readFile(join(work, 'again.csv'))).length, 1500)
  })

  it('${partner} directories: two partners each get only their own files', async () => {
    const one = await offer(join(h.base, 'out', 'BANK1'), 'stmt.txt', 700, 31)
    const two = await offer(join(h.base, 'out', 'BANK2'), 'stmt.txt', 900, 32)
    const r1 = await receive([...base('BANK1', 'b1'), '--file', 'MINE'])
    const r2 = await receive([...base('BANK2', 'b2'), '--file', 'MINE'])
    assert.equal(r1.code, 0, r1.err)
    assert.equal(r2.code, 0, r2.err)
    assert.equal(sha(await readFile(r1.dest)), sha(one))
    assert.equal(sha(await readFile(r2.dest)), sha(two))
    assert.match((await receive([...base('BANK1', 'b1'), '--file', 'MINE'])).err, /D2-205/)
    assert.match((await receive([...base('BANK2', 'b2'), '--file', 'MINE', '--name', '../BANK1/stmt.txt'])).err, /bad usage|--name/)
  })

  it('${partner} directories work for pushes too: a file pushed to a both-ways file lands in the partner\'s own directory', async () => {
    const src = join(work, 'exchange-src.bin')
    const data = patternBytes(5000, 71)
    await writeFile(src, data)
    const io = captureIo()
    assert.equal(await runSend([...base(), '--file', 'EXCHANGE', '--transfer-id', '77', src], io), 0, io.err())
    assert.deepEqual(await readFile(join(h.base, 'exchange', 'CXCLIENT', 'from-CXCLIENT-77.bin')), data)
    const r = await receive([...base(), '--file', 'EXCHANGE', '--name', 'from-CXCLIENT-77.bin'])
    assert.equal(r.code, 0, r.err)
    assert.deepEqual(await readFile(r.dest), data)
  })

  it('afterSend delete and move happen once, after the complete transfer only', async () => {
    const src = await offer(join(h.base, 'del'), 'x.bin', 300_000, 41)
    // An interrupted pull leaves the source in place.
    const ac = new AbortController()
    await assert.rejects(pullFile({
      host: '127.0.0.1', port: h.port, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'DELETED',
      destination: join(work, 'cut.bin'), syncIntervalKb: 16, syncWindow: 1, signal: ac.signal,
      onCheckpoint: async (c) => { if (c.syncPoint === 2) ac.abort() }
    }))
    await waitFor(async () => h.journal.ended.some((e) => e.status === 'interrupted'))
    assert.ok((await stat(join(h.base, 'del', 'x.bin'))).isFile(), 'the source stays after an interrupted pull')
    const r = await receive([...base(), '--file', 'DELETED'])
    assert.equal(r.code, 0, r.err)
    assert.equal(sha(await readFile(r.dest)), sha(src))
    await waitFor(async () => (await stat(join(h.base, 'del', 'x.bin')).catch(() => undefined)) === undefined)

    const m = await offer(join(h.base, 'mv'), 'y.bin', 5000, 42)
    const r2 = await receive([...base(), '--file', 'MOVED'])
    assert.equal(r2.code, 0, r2.err)
    await waitFor(async () => (await stat(join(h.base, 'sent', 'CXCLIENT', 'y.bin')).catch(() => undefined)) !== undefined)
    assert.equal(sha(await readFile(join(h.base, 'sent', 'CXCLIENT', 'y.bin'))), sha(m))
    assert.deepEqual(await readdir(join(h.base, 'mv')), [])
    // A second file of the same name is moved beside the first, never over it.
    await offer(join(h.base, 'mv'), 'y.bin', 10, 43)
    assert.equal((await receive([...base(), '--file', 'MOVED'])).code, 0)
    await waitFor(async () => (await readdir(join(h.base, 'sent', 'CXCLIENT'))).length === 2)
  })

  it('refusals: exit 1 with the diagnostic', async () => {
    await offer(outbox, 'r.bin', 10)
    const cases: Array<[string[], RegExp]> = [
      [[...base('WRITER', 'w'), '--file', 'OUTBOX'], /D3-304/],
      [[...base(), '--file', 'TESTFILE'], /D2-226/],
      [[...base(), '--file', 'NOSUCH'], /D2-205/],
      [[...base(), '--file', 'OUTBOX', '--name', 'missing.bin'], /D2-205/],
      [[...base(), '--file', 'OUTBOX', '--name', '.r.bin'], /D2-205/],
      [[...base(), '--file', 'OUTBOX', '--name', 'r.tmp'], /D2-205/]
    ]
    for (const [args, re] of cases) {
      const r = await receive(args)
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.out}`)
      assert.match(r.err, re, args.join(' '))
    }
    const exists = join(work, 'exists.bin')
    await writeFile(exists, 'x')
    const r = await receive([...base(), '--file', 'OUTBOX', '--name', 'r.bin'], exists)
    assert.equal(r.code, 1)
    assert.match(r.err, /already exists/)
    assert.equal((await receive(['--port', '1'])).code, 2)
    assert.match((await receive([...base(), '--file', 'OUTBOX', '--restart'])).err, /no interrupted transfer/)
  })

  it('a file already being sent gets D2-207', async () => {
    await offer(outbox, 'busy.bin', 4 << 20, 51)
    let second: Promise<{ code: number, err: string }> | undefined
    const ac = new AbortController()
    await assert.rejects(pullFile({
      host: '127.0.0.1', port: h.port, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'OUTBOX', name: 'busy.bin',
      destination: join(work, 'busy-1.bin'), syncIntervalKb: 64, syncWindow: 1, signal: ac.signal,
      onCheckpoint: async (c) => {
        if (c.syncPoint !== 1) return
        second = receive([...base(), '--file', 'OUTBOX', '--name', 'busy.bin'])
        await second
        ac.abort()
      }
    }))
    const r = await second!
    assert.equal(r.code, 1)
    assert.match(r.err, /D2-207/)
  })

  /**
   * Runs `vectis receive` and stops the server (ABORT to its sessions) right after it sent SYN `at` of the file:
   * a cut at a known point, the server's side of the restart tests (kill -9 of either process: pesit-kill.test.ts).
   */
  async function receiveCutAt (at: number, args: string[], dest: string): Promise<{ code: number, err: string }> {
    const original = h.metrics.transferBytes.bind(h.metrics)
    let sent = 0
    let stopping: Promise<void> | undefined
    h.metrics.transferBytes = (d: string, bytes: number) => {
      original(d, bytes)
      sent += bytes
      if (d === 'send' && sent >= at * 64 * 1024 && stopping === undefined) stopping = h.server.stop()
    }
    try {
      const io = captureIo()
      const code = await runReceive([...args, dest], io)
      await stopping
      return { code, err: io.err() }
    } finally {
      h.metrics.transferBytes = original
      await h.restart()
    }
  }

  it('restart after a cut: resumes from the last durable sync point; a changed source is refused D2-229', async () => {
    const src = await offer(outbox, 'big.bin', 3 << 20, 61)
    const args = (name: string): string[] => ['--host', '127.0.0.1', '--port', String(h.port), '--partner', 'CXCLIENT', '--password', 'test123',
      '--server', 'PESITSRV', '--state-dir', join(work, 'state-restart'), '--file', 'OUTBOX', '--name', name, '--sync-kb', '64', '--window', '1']
    const dest = join(work, 'big.bin')
    const cut = await receiveCutAt(10, args('big.bin'), dest)
    assert.equal(cut.code, 1)
    const durable = Number(/(\d+) bytes durable/.exec(cut.err)?.[1] ?? -1)
    assert.ok(durable >= 5 * 65536, cut.err)
    const io = captureIo()
    assert.equal(await runReceive(['--restart', ...args('big.bin'), dest], io), 0, io.err())
    const m = /resumed at sync point (\d+) \(byte (\d+)\)/.exec(io.out())
    assert.ok(m !== null, io.out())
    assert.equal(Number(m[2]), durable, 'resumed exactly where the requester had made the file durable')
    assert.equal(sha(await readFile(dest)), sha(src))

    // The same cut, then the source changes: the restart is refused and nothing is delivered.
    await offer(outbox, 'moving.bin', 2 << 20, 62)
    const dest2 = join(work, 'moving.bin')
    assert.equal((await receiveCutAt(3, args('moving.bin'), dest2)).code, 1)
    await writeFile(join(outbox, 'moving.bin'), patternBytes(2 << 20, 63))
    const io2 = captureIo()
    assert.equal(await runReceive(['--restart', ...args('moving.bin'), dest2], io2), 1)
    assert.match(io2.err(), /D2-229/)
    assert.equal(await stat(dest2).catch(() => undefined), undefined)
  })

  it('metrics and journal followed every pull', () => {
    assert.ok((h.metrics.transfers.get('send:completed') ?? 0) >= 14)
    const sent = h.journal.ended.filter((e) => e.status === 'completed' && h.journal.begun.find((b) => b.id === e.id)?.direction === 'send')
    assert.ok(sent.every((e) => /^[0-9a-f]{64}$/.test(e.sha256 ?? '')))
    assert.equal(h.metrics.connections, 0)
  })
})

async function waitFor (cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

