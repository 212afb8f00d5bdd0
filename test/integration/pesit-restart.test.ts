import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startHarness } from '../helpers/pesit-harness.js'
import { patternBytes } from '../helpers/pesit-vectors.js'
import { captureIo } from '../helpers/cli-io.js'
import { CrashFs } from '../helpers/crash-fs.js'
import { runSend } from '../../cli/send.js'
import { pushFile, PushInterruptedError, type PushOptions } from '../../transfer/push.js'
import { latestCheckpoint, recordedPartial } from '../../transfer/receive-store.js'
import { transferStem } from '../../transfer/config-types.js'

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const INTERVAL = 64 * 1024

describe('restart of an interrupted push', () => {
  it('server stopped mid-transfer, a new server instance on the same directory, vectis send --restart completes', async (t) => {
    const h = await startHarness({ syncIntervalKb: 64 })
    const work = await mkdtemp(join(tmpdir(), 'vectis-restart-'))
    t.after(async () => { await h.stop(); await rm(work, { recursive: true, force: true }) })
    const src = patternBytes(4 << 20, 77)
    const path = join(work, 'big.bin')
    await writeFile(path, src)
    // Stop the server from inside the journal update of sync point 7, i.e. while the session is between the
    // durable checkpoint and its ACK(SYN): the worst moment for the requester.
    const journal = h.journal
    const origSyncPoint = journal.syncPoint.bind(journal)
    let stopped: Promise<void> | undefined
    journal.syncPoint = (id, p) => {
      origSyncPoint(id, p)
      if (p.syncPoint === 7 && stopped === undefined) stopped = h.server.stop()
    }
    const args = ['--host', '127.0.0.1', '--port', String(h.port), '--partner', 'CXCLIENT', '--password', 'test123', '--server', 'PESITSRV',
      '--file', 'TESTFILE', '--sync-kb', '64', '--window', '2', '--article-size', '1000', '--state-dir', join(work, 'state'), path]
    const io1 = captureIo()
    assert.equal(await runSend(args, io1), 1)
    assert.match(io1.err(), /resume with --restart/)
    await stopped
    const first = h.journal.ended.at(-1)!
    assert.equal(first.status, 'interrupted')

    await h.restart()
    const io2 = captureIo()
    const portIdx = args.indexOf('--port') + 1
    args[portIdx] = String(h.port)
    assert.equal(await runSend(['--restart', ...args], io2), 0, io2.err())
    const id = /transfer id (\d+)/.exec(io2.out())![1]
    const stored = await readFile(join(h.dir, `CXCLIENT_TESTFILE_${id}`))
    assert.equal(sha(stored), sha(src))
    assert.equal(h.journal.ended.at(-1)?.sha256, sha(src), 'the SHA-256 of a resumed file covers the part received before')
    const second = h.journal.begun.at(-1)!
    assert.equal(second.restart, true)
    assert.ok(second.startOffset > 0, 'resumed, not restarted from 0')
    // Resent: what the server had received in the first attempt beyond the point it resumed from.
    const resent = first.bytes - second.startOffset
    assert.ok(resent >= 0 && resent <= INTERVAL, `resent ${resent} bytes, interval ${INTERVAL}`)
    assert.match(io2.out(), /resumed at sync point 7/)
  })

  it('hand-over: IDT at the next sync point, then the restart on the next server resends at most one interval', async (t) => {
    const h = await startHarness({ syncIntervalKb: 64 })
    const work = await mkdtemp(join(tmpdir(), 'vectis-handover-'))
    t.after(async () => { await h.stop(); await rm(work, { recursive: true, force: true }) })
    const src = patternBytes(3 << 20, 78)
    const path = join(work, 'f.bin')
    await writeFile(path, src)
    let stopping: Promise<void> | undefined
    const o: PushOptions = {
      host: '127.0.0.1', port: h.port, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'TESTFILE',
      source: path, transferId: 31337, syncIntervalKb: 64, syncWindow: 1, articleSize: 4096,
      onProgress: (p) => { if (p.acknowledgedSyncPoint >= 3 && stopping === undefined) stopping = h.server.stop({ handover: true, deadlineMs: 10_000 }) }
    }
    const err = await pushFile(o).then(() => undefined, (e: unknown) => e)
    assert.ok(err instanceof PushInterruptedError, String(err))
    assert.match(err.message, /IDT code 4/)
    await stopping
    const first = h.journal.ended.at(-1)!
    assert.equal(first.status, 'interrupted')
    await h.restart()
    const r = await pushFile({ ...o, port: h.port, onProgress: undefined, restart: { articlesPerSync: err.articlesPerSync } })
    assert.ok(r.startOffset >= err.acknowledgedBytes)
    assert.ok(first.bytes - r.startOffset <= INTERVAL)
    assert.equal(sha(await readFile(join(h.dir, 'CXCLIENT_TESTFILE_31337'))), sha(src))
  })

  it('with the crash-simulating file layer, a crash right after any ACK(SYN) loses nothing acknowledged', async (t) => {
    const fs = new CrashFs()
    const h = await startHarness({ syncIntervalKb: 32, fs, baseDir: '/shared' })
    const work = await mkdtemp(join(tmpdir(), 'vectis-crash-'))
    t.after(async () => { await h.stop(); await rm(work, { recursive: true, force: true }) })
    const src = patternBytes(512 * 1024, 79)
    const path = join(work, 'f.bin')
    await writeFile(path, src)
    const points = 512 / 32 - 1 // sync points in a 512 KiB push every 32 KiB
    for (let k = 1; k <= points; k++) {
      const transferId = 1000 + k
      let acked = -1
      const o: PushOptions = {
        host: '127.0.0.1', port: h.port, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'TESTFILE',
        source: path, transferId, syncIntervalKb: 32, syncWindow: 1, articleSize: 1024,
        onProgress: (p) => {
          if (p.acknowledgedSyncPoint === k && acked < 0) {
            acked = p.acknowledgedBytes
            fs.crash() // power loss right after the requester saw ACK(SYN k)
          }
        }
      }
      const err = await pushFile(o).then(() => undefined, (e: unknown) => e)
      assert.ok(err instanceof PushInterruptedError, `k=${k}: ${String(err)}`)
      assert.equal(acked, k * 32 * 1024)
      // What survived the crash: a checkpoint at or after k and a partial file whose prefix is the source.
      const stem = transferStem({ partner: 'CXCLIENT', file: 'TESTFILE', transferId })
      const ckpt = (await latestCheckpoint(fs, { directory: h.dir, stem }))?.checkpoint
      assert.ok(ckpt !== undefined, `k=${k}: checkpoint lost`)
      assert.ok(ckpt.syncPoint >= k && ckpt.offset >= acked, `k=${k}: checkpoint ${ckpt.syncPoint}`)
      const partial = Buffer.from(await fs.readFile(join(h.dir, recordedPartial(ckpt, stem))))
      assert.ok(partial.length >= ckpt.offset)
      assert.ok(partial.subarray(0, ckpt.offset).equals(src.subarray(0, ckpt.offset)), `k=${k}: acknowledged data lost`)
      // A new server on the surviving state resumes and completes.
      await h.restart()
      const r = await pushFile({ ...o, port: h.port, onProgress: undefined, restart: { articlesPerSync: err.articlesPerSync } })
      assert.equal(r.restartPoint, ckpt.syncPoint)
      assert.equal(sha(await fs.readFile(join(h.dir, `CXCLIENT_TESTFILE_${transferId}`))), sha(src))
    }
  })
})
