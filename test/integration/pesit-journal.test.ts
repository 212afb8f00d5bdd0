import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../common/logger.js'
import { Store } from '../../store/store.js'
import { journalPortFromStore } from '../../transfer/journal-adapter.js'
import type { TransferStarted } from '../../transfer/ports.js'
import { startHarness } from '../helpers/pesit-harness.js'
import { patternBytes } from '../helpers/pesit-vectors.js'
import { pushFile, PushInterruptedError } from '../../transfer/push.js'

describe('PeSIT server on the store journal', () => {
  it('a push, an interruption and its resume are one journal row; completed with the SHA-256', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'vectis-pj-'))
    const store = new Store({ logger: silentLogger() }, { dataDir: join(dir, 'data') })
    await store.start()
    const epoch = store.clusterState.raiseEpoch('vectis-0').number
    const h = await startHarness({ syncIntervalKb: 16 })
    t.after(async () => { await h.stop(); await store.stop(); await rm(dir, { recursive: true, force: true }) })
    // The harness records calls in memory; route them to the store journal instead.
    const port = journalPortFromStore(store.journal, { member: 'vectis-0', epoch: () => epoch })
    h.journal.begin = (b) => port.begin(b) as TransferStarted
    h.journal.syncPoint = (id, p) => { void port.syncPoint(id, p) }
    h.journal.end = (id, e) => { void port.end(id, e) }
    const src = patternBytes(400_000, 3)
    const path = join(dir, 'f.bin')
    await writeFile(path, src)
    let stopping: Promise<void> | undefined
    const o = { host: '127.0.0.1', port: h.port, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'TESTFILE', source: path, transferId: 4711, syncIntervalKb: 16, syncWindow: 1, articleSize: 1024 }
    const err = await pushFile({ ...o, onProgress: (p) => { if (p.acknowledgedSyncPoint >= 4 && stopping === undefined) stopping = h.server.stop() } }).then(() => undefined, (e: unknown) => e)
    assert.ok(err instanceof PushInterruptedError)
    await stopping
    const rows1 = store.journal.list({ limit: 10 })
    assert.equal(rows1.length, 1)
    assert.equal(rows1[0]!.status, 'interrupted')
    assert.ok(rows1[0]!.syncPoint >= 4)
    await h.restart()
    await pushFile({ ...o, port: h.port, restart: { articlesPerSync: err.articlesPerSync } })
    const rows2 = store.journal.list({ limit: 10 })
    assert.equal(rows2.length, 1, 'the resume continued the same row')
    assert.equal(rows2[0]!.status, 'completed')
    assert.equal(rows2[0]!.transferId, 4711)
    assert.equal(rows2[0]!.bytes, src.length)
    assert.equal(rows2[0]!.sha256, createHash('sha256').update(src).digest('hex'))
    assert.equal(rows2[0]!.filePath, join(h.dir, 'CXCLIENT_TESTFILE_4711'))
  })
  it('rows a dead leader left in progress are interrupted, restartable, when the next servers start', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'vectis-pj-'))
    const store = new Store({ logger: silentLogger() }, { dataDir: join(dir, 'data') })
    await store.start()
    // What a replica holds after the leader running these died: one push in progress at sync point 2, one done.
    const old = store.clusterState.raiseEpoch('vectis-0').number
    const running = store.journal.begin({ epoch: old, member: 'vectis-0', server: 'PESITSRV', partner: 'CXCLIENT', virtualFile: 'TESTFILE', direction: 'receive', transferId: 77 })
    store.journal.recordSyncPoint(running.id, { syncPoint: 2, offset: 2048 })
    const done = store.journal.begin({ epoch: old, member: 'vectis-0', server: 'PESITSRV', partner: 'CXCLIENT', virtualFile: 'TESTFILE', direction: 'receive', transferId: 78 })
    store.journal.complete(done.id, { bytes: 1, sha256: 'e'.repeat(64) })
    const epoch = store.clusterState.raiseEpoch('vectis-1').number
    const port = journalPortFromStore(store.journal, { member: 'vectis-1', epoch: () => epoch })
    const h = await startHarness({ syncIntervalKb: 16, journalPort: port })
    t.after(async () => { await h.stop(); await store.stop(); await rm(dir, { recursive: true, force: true }) })
    const row = store.journal.get(running.id)!
    assert.equal(row.status, 'interrupted')
    assert.match(row.diagnostic ?? '', /^D3-310: the member that ran it \(vectis-0\) no longer does/)
    assert.equal(row.syncPoint, 2, 'the restart point stays')
    assert.equal(store.journal.get(done.id)!.status, 'completed', 'finished rows are not touched')
    // Starting again finds nothing more to interrupt.
    assert.equal(port.interruptOrphans(), 0)
  })
})
