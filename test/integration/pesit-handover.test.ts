import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startHarness } from '../helpers/pesit-harness.js'
import { patternBytes } from '../helpers/pesit-vectors.js'
import { pushFile } from '../../transfer/push.js'

describe('hand-over hooks', () => {
  it('held connections and new ones are forwarded to the successor during the drain, then the listener stops', async (t) => {
    const successor = await startHarness()
    const forwardTo = { port: successor.port }
    const old = await startHarness({ init: { forwardTarget: () => ({ host: '127.0.0.1', port: forwardTo.port }) } })
    const work = await mkdtemp(join(tmpdir(), 'vectis-drain-'))
    t.after(async () => { await old.stop(); await successor.stop(); await rm(work, { recursive: true, force: true }) })
    const path = join(work, 'f.bin')
    const src = patternBytes(300_000, 4)
    await writeFile(path, src)
    const hooks = old.server.handoverHooks()
    await hooks.stopAccepting!()
    // Connects while the old leader is handing over: held, neither refused nor served.
    const early = pushFile({ host: '127.0.0.1', port: old.port, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'TESTFILE', source: path, transferId: 501, timeoutMs: 10_000 })
    await hooks.interrupt!(1000)
    const draining = hooks.drain!('127.0.0.1', 400)
    // The demotion arrives while the drain runs: the stop waits for the drain, forwarding continues.
    const demoted = old.server.stop({ handover: true })
    const late = pushFile({ host: '127.0.0.1', port: old.port, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'TESTFILE', source: path, transferId: 502, timeoutMs: 10_000 })
    const [a, b] = await Promise.all([early, late])
    await draining
    await demoted
    assert.equal(a.bytes, src.length)
    assert.equal(b.bytes, src.length)
    assert.ok((await readFile(join(successor.dir, 'CXCLIENT_TESTFILE_501'))).equals(src))
    assert.ok((await readFile(join(successor.dir, 'CXCLIENT_TESTFILE_502'))).equals(src))
    assert.equal(old.journal.begun.length, 0, 'the old leader served nothing')
    assert.equal(old.server.isRunning, false)
  })
})
