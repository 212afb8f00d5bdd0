/**
 * The end of a transfer under faults (a hand-over or a cut in the last moments of a push): the requester must be
 * able to tell that its file arrived, and never be told both "done" and "aborted".
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startHarness } from '../helpers/pesit-harness.js'
import { ScriptClient } from '../helpers/pesit-script.js'
import { patternBytes } from '../helpers/pesit-vectors.js'
import { captureIo } from '../helpers/cli-io.js'
import { runSend } from '../../cli/send.js'
import { pushFile } from '../../transfer/push.js'
import { NodeDurableFs } from '../../store/durable-fs.js'
import { encodeEntity, encodeFpdu, getDiagnostic, packArticles, type Fpdu } from '../../transfer/codec.js'
import { formatDiagnostic } from '../../transfer/diagnostics.js'
import { checkpointNameFor } from '../../transfer/receive-store.js'

const OK = { type: 0, reason: 0 }
const diag = (f: Fpdu): string => formatDiagnostic(getDiagnostic(f.params)!)

describe('the end of a transfer under faults', () => {
  it('a hand-over while the session commits its end (OF02) lets it finish: ACK(TRANS.END), not ABORT D3-312', async (t) => {
    const work = await mkdtemp(join(tmpdir(), 'vectis-end-'))
    // The hand-over is requested while the received file is being renamed to its final name.
    const fs = new class extends NodeDurableFs {
      onRename: (() => void) | undefined
      override async rename (from: string, to: string): Promise<void> {
        const hook = this.onRename
        this.onRename = undefined
        hook?.()
        await new Promise((resolve) => setTimeout(resolve, 50))
        await super.rename(from, to)
      }
    }()
    const h = await startHarness({ fs })
    t.after(async () => { await h.stop(); await rm(work, { recursive: true, force: true }) })
    const path = join(work, 'f.bin')
    const src = patternBytes(100_000, 1)
    await writeFile(path, src)
    let stopping: Promise<void> | undefined
    fs.onRename = () => { stopping = h.server.stop({ handover: true, deadlineMs: 5000 }) }
    const r = await pushFile({ host: '127.0.0.1', port: h.port, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'TESTFILE', source: path, transferId: 71 })
    await stopping
    assert.equal(r.bytes, src.length)
    assert.deepEqual(await readFile(join(h.dir, 'CXCLIENT_TESTFILE_71')), src)
  })

  it('a TRANS.END crossing the server\'s hand-over IDT is discarded: nothing committed, the restart context kept', async (t) => {
    const h = await startHarness({ syncIntervalKb: 32 })
    const c = await ScriptClient.open(h.port)
    t.after(async () => { c.destroy(); await h.stop() })
    await c.connectPesit({ sync: [32, 2] })
    await c.toDataPhase(72, { articleLength: 1024 })
    const arts = Array.from({ length: 8 }, (_, i) => patternBytes(1024, 10 + i))
    // The hand-over waits for the next sync point; the requester's SYN, DTF.END and TRANS.END are already on their way.
    const stopping = h.server.stop({ handover: true, deadlineMs: 5000 })
    await c.raw(encodeEntity([encodeFpdu({ type: 'DTF', idDst: c.y, idSrc: arts.length, params: {}, data: packArticles(arts) })]))
    await c.raw(Buffer.concat([
      encodeEntity([encodeFpdu({ type: 'SYN', idDst: c.y, idSrc: 0, params: { 20: 1 } })]),
      encodeEntity([encodeFpdu({ type: 'DTF_END', idDst: c.y, idSrc: 0, params: { 2: OK } })]),
      encodeEntity([encodeFpdu({ type: 'TRANS_END', idDst: c.y, idSrc: 0, params: { 27: 8192, 28: 8 } })])
    ]))
    const seen: string[] = []
    for (;;) {
      const ev = await c.next()
      assert.equal(ev.kind, 'fpdu')
      if (ev.kind !== 'fpdu') break
      seen.push(ev.fpdu.type)
      if (ev.fpdu.type === 'IDT') {
        assert.equal(diag(ev.fpdu), 'D2-216')
        break
      }
      assert.notEqual(ev.fpdu.type, 'ACK_TRANS_END', `the server acknowledged a TRANS.END that crossed its IDT (${seen.join(', ')})`)
      assert.notEqual(ev.fpdu.type, 'ABORT')
    }
    assert.deepEqual(seen, ['ACK_SYN', 'IDT'])
    await c.send('ACK_IDT')
    await c.send('CRF', { 2: OK })
    await c.expect('ACK_CRF')
    await c.send('DESELECT', { 2: OK })
    await c.expect('ACK_DESELECT')
    await stopping
    assert.deepEqual((await readdir(h.dir)).filter((f) => !f.startsWith('.')), [], 'nothing committed')
    const ckpt = JSON.parse(await readFile(join(h.dir, checkpointNameFor('.vectis-CXCLIENT-TESTFILE-72', 0)), 'utf8')) as { syncPoint: number }
    assert.equal(ckpt.syncPoint, 1, 'the restart context is kept at the acknowledged sync point')
  })

  it('a closing exchange cut after a matching ACK(TRANS.END) is a success with a warning (vectis send exits 0)', async (t) => {
    const h = await startHarness()
    const work = await mkdtemp(join(tmpdir(), 'vectis-end-'))
    t.after(async () => { await h.stop(); await rm(work, { recursive: true, force: true }) })
    const path = join(work, 'f.bin')
    const src = patternBytes(50_000, 2)
    await writeFile(path, src)
    // The connection is cut right after the server acknowledged the end of the transfer (the completion is counted
    // once ACK(TRANS.END) went out).
    const ended = h.metrics.transferEnded.bind(h.metrics)
    h.metrics.transferEnded = (direction, status) => {
      ended(direction, status)
      if (status === 'completed') void h.server.stop()
    }
    const io = captureIo()
    const code = await runSend(['--host', '127.0.0.1', '--port', String(h.port), '--partner', 'CXCLIENT', '--password', 'test123',
      '--server', 'PESITSRV', '--file', 'TESTFILE', '--transfer-id', '73', '--state-dir', join(work, 'state'), path], io)
    assert.equal(code, 0, io.err())
    assert.match(io.out(), /sent .*: 50000 bytes/)
    assert.match(io.err(), /warning: the file was confirmed by the server, but the connection did not close cleanly/)
    assert.deepEqual(await readFile(join(h.dir, 'CXCLIENT_TESTFILE_73')), src)
  })

  it('when the servers start, temporaries of checkpoint writes cut by a kill go, and what earlier leaderships wrote for a delivered transfer; other files stay', async (t) => {
    const base = await mkdtemp(join(tmpdir(), 'vectis-end-'))
    t.after(async () => { await rm(base, { recursive: true, force: true }) })
    const inbox = join(base, 'inbox')
    const stale = ['..vectis-CXCLIENT-TESTFILE-5.ckpt.0a1b2c3d4e5f.tmp', '..vectis-CXCLIENT-OUTBOX-7.send.00ff00ff00ff.tmp',
      // transfer 6 was delivered by the leadership of epoch 4; epoch 3 (paused past its lease check) wrote on
      '.vectis-CXCLIENT-TESTFILE-6.3.part', '.vectis-CXCLIENT-TESTFILE-6.3.ckpt']
    // transfer 5 is interrupted: its files of every leadership stay for a restart; transfer 8 is recorded complete
    // but its leader died before the delivery: a replay delivers it from its partial file
    const kept = ['.vectis-CXCLIENT-TESTFILE-5.part', '.vectis-CXCLIENT-TESTFILE-5.ckpt', '.vectis-CXCLIENT-TESTFILE-5.2.part',
      '.vectis-CXCLIENT-TESTFILE-5.2.ckpt', '.vectis-CXCLIENT-TESTFILE-6.4.ckpt', 'CXCLIENT_TESTFILE_6',
      '.vectis-CXCLIENT-TESTFILE-8.4.ckpt', '.vectis-CXCLIENT-TESTFILE-8.4.part', '.vectis-CXCLIENT-TESTFILE-8.3.part', 'report.tmp', '.x.0a1b2c3d4e5f.tmp']
    await mkdir(inbox, { recursive: true })
    for (const f of [...stale, ...kept]) await writeFile(join(inbox, f), 'x')
    for (const n of [6, 8]) {
      await writeFile(join(inbox, `.vectis-CXCLIENT-TESTFILE-${n}.4.ckpt`), JSON.stringify({
        version: 1, transferId: n, partner: 'CXCLIENT', server: 'PESITSRV', file: 'TESTFILE', syncPoint: 2, offset: 10, articles: 1,
        articleFormat: 128, articleLength: 1000, updatedAt: new Date().toISOString(), partial: `.vectis-CXCLIENT-TESTFILE-${n}.4.part`,
        completed: { bytes: 10, articles: 1, sha256: 'a'.repeat(64), finalName: `CXCLIENT_TESTFILE_${n}`, announcedKb: 0 }
      }))
    }
    const h = await startHarness({ baseDir: base })
    t.after(async () => { await h.stop() })
    assert.deepEqual((await readdir(inbox)).sort(), [...kept].sort())
  })
})
