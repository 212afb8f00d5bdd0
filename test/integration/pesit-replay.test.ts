// A restart of a push whose file was already delivered (the requester never got ACK(TRANS.END)): confirmed again
// without storing anything when it is the same transfer; refused with D2-204 when it is not (transfer/receive-replay.ts).
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startHarness, type Harness } from '../helpers/pesit-harness.js'
import { patternBytes } from '../helpers/pesit-vectors.js'
import { pushFile, type PushOptions } from '../../transfer/push.js'
import { PesitError } from '../../transfer/errors.js'
import { readCheckpoint } from '../../transfer/receive-store.js'

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

async function setup (t: { after: (fn: () => Promise<void>) => void }): Promise<{ h: Harness, work: string, src: Buffer, o: PushOptions, articlesPerSync: number }> {
  const h = await startHarness({ syncIntervalKb: 16 })
  const work = await mkdtemp(join(tmpdir(), 'vectis-replay-'))
  t.after(async () => { await h.stop(); await rm(work, { recursive: true, force: true }) })
  const src = patternBytes(200_000, 5)
  await writeFile(join(work, 'f.bin'), src)
  const o: PushOptions = { host: '127.0.0.1', port: h.port, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'TESTFILE', source: join(work, 'f.bin'), transferId: 5150, syncIntervalKb: 16, articleSize: 1000 }
  const first = await pushFile(o)
  return { h, work, src, o, articlesPerSync: first.articlesPerSync }
}

/** The files a consumer of the directory sees (hidden ones are Vectis's own). */
async function delivered (h: Harness): Promise<string[]> {
  return (await readdir(h.dir)).filter((n) => !n.startsWith('.')).sort()
}

describe('restart of a push already delivered', () => {
  it('the same transfer restarted after its ACK(TRANS.END) was lost ends successfully, nothing stored again', async (t) => {
    const { h, src, o, articlesPerSync } = await setup(t)
    const final = join(h.dir, 'CXCLIENT_TESTFILE_5150')
    const before = await stat(final)
    const ended = h.journal.ended.length
    const r = await pushFile({ ...o, restart: { articlesPerSync } })
    assert.equal(r.transferId, 5150)
    assert.ok(r.restartPoint > 0 && r.startOffset > 0, 'resumed from the last sync point of the delivery, not from 0')
    assert.deepEqual(await delivered(h), ['CXCLIENT_TESTFILE_5150'])
    assert.equal(sha(await readFile(final)), sha(src))
    assert.equal((await stat(final)).mtimeMs, before.mtimeMs, 'the file was not written again')
    assert.equal(h.journal.ended.length, ended, 'no second journal row')
  })

  it('a restart of that id with other bytes, other counts or without the restart flag is refused with D2-204', async (t) => {
    const { h, work, src, o, articlesPerSync } = await setup(t)
    const other = Buffer.from(src)
    other[other.length - 10]! ^= 0xff // differs after the restart point
    await writeFile(join(work, 'other.bin'), other)
    const refused = (e: unknown): boolean => e instanceof PesitError && e.diagnostic.type === 2 && e.diagnostic.reason === 204
    await assert.rejects(pushFile({ ...o, source: join(work, 'other.bin'), restart: { articlesPerSync } }), refused)
    await writeFile(join(work, 'longer.bin'), Buffer.concat([src, Buffer.alloc(5000, 1)]))
    await assert.rejects(pushFile({ ...o, source: join(work, 'longer.bin'), restart: { articlesPerSync } }), refused)
    await assert.rejects(pushFile(o), refused)
    assert.deepEqual(await delivered(h), ['CXCLIENT_TESTFILE_5150'])
    assert.equal(sha(await readFile(join(h.dir, 'CXCLIENT_TESTFILE_5150'))), sha(src), 'the delivered file is untouched')
  })

  it('a leader that died between the completion record and the rename: the restart compares, then renames', async (t) => {
    const { h, src, o, articlesPerSync } = await setup(t)
    const final = join(h.dir, 'CXCLIENT_TESTFILE_5150')
    const names = await readdir(h.dir)
    const record = await readCheckpoint(h.fs, join(h.dir, names.find((n) => n.endsWith('.ckpt'))!))
    const partial = record!.partial!
    await rename(final, join(h.dir, partial)) // as it was before the rename
    await h.restart() // a new leader
    await pushFile({ ...o, port: h.port, restart: { articlesPerSync } })
    assert.deepEqual(await delivered(h), ['CXCLIENT_TESTFILE_5150'])
    assert.ok(!(await readdir(h.dir)).includes(partial))
    assert.equal(sha(await readFile(final)), sha(src))
  })
  it('completion records older than a week are swept when a server starts; recent ones and checkpoints of partial files stay', async (t) => {
    const { h, work, o } = await setup(t)
    await writeFile(join(work, 'g.bin'), patternBytes(50_000, 6))
    await pushFile({ ...o, source: join(work, 'g.bin'), transferId: 5151 })
    const records = (await readdir(h.dir)).filter((n) => n.endsWith('.ckpt')).sort()
    assert.equal(records.length, 2)
    const old = new Date(Date.now() - 8 * 24 * 3600 * 1000)
    await utimes(join(h.dir, records[0]!), old, old)
    // An old checkpoint of a transfer never completed: restart context, kept whatever its age.
    await writeFile(join(h.dir, '.vectis-CXCLIENT-TESTFILE-9.ckpt'), JSON.stringify({ version: 1, transferId: 9, partner: 'CXCLIENT', server: 'PESITSRV', file: 'TESTFILE', syncPoint: 1, offset: 10, articles: 1, articleFormat: 128, articleLength: 1000, updatedAt: old.toISOString() }))
    await utimes(join(h.dir, '.vectis-CXCLIENT-TESTFILE-9.ckpt'), old, old)
    await h.restart()
    assert.deepEqual((await readdir(h.dir)).filter((n) => n.endsWith('.ckpt')).sort(), ['.vectis-CXCLIENT-TESTFILE-9.ckpt', records[1]!].sort())
  })
})
