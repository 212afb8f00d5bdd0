import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startHarness, type Harness } from '../helpers/pesit-harness.js'
import { ScriptClient } from '../helpers/pesit-script.js'
import { patternBytes } from '../helpers/pesit-vectors.js'
import { getDiagnostic, getNumber, writeHeader, type Fpdu } from '../../transfer/codec.js'
import { formatDiagnostic } from '../../transfer/diagnostics.js'

const diag = (f: Fpdu): string => formatDiagnostic(getDiagnostic(f.params)!)

/** An IDT carrying PI 2 only, as a peer that omits the end-of-transfer code sends it (the encoder refuses to). */
function idtWithoutEndCode (y: number): Uint8Array {
  const fpdu = new Uint8Array(6 + 5)
  writeHeader(fpdu, 0, fpdu.length, 'IDT', y, 0)
  fpdu.set([2, 3, 2, 0, 216], 6)
  return Uint8Array.of(0, fpdu.length, ...fpdu)
}

/** One DTF entity of `n` 1024-byte articles (8198 bytes for 8): larger than a PI 25 of 4096. */
function bigEntity (y: number, n: number, seed: number): { entity: Uint8Array, data: Uint8Array } {
  const data = patternBytes(n * 1024, seed)
  const len = 6 + n * 1026
  const out = new Uint8Array(2 + len)
  out[0] = len >> 8
  out[1] = len & 0xff
  writeHeader(out, 2, len, 'DTF', y, n)
  for (let i = 0; i < n; i++) {
    const off = 8 + i * 1026
    out[off] = 4
    out[off + 1] = 0
    out.set(data.subarray(i * 1024, (i + 1) * 1024), off + 2)
  }
  return { entity: out, data }
}

describe('tolerance of real peers: accepted, counted, logged once', () => {
  let h: Harness
  const clients: ScriptClient[] = []
  let tid = 9000
  const open = async (): Promise<ScriptClient> => {
    const c = await ScriptClient.open(h.port)
    clients.push(c)
    await c.connectPesit({ sync: [0, 0] })
    return c
  }
  before(async () => { h = await startHarness({ maxEntitySize: 16384 }) })
  after(async () => {
    for (const c of clients) c.destroy()
    await h.stop()
  })

  async function finish (c: ScriptClient, bytes: number, articles: number): Promise<Fpdu> {
    await c.send('DTF_END', { 2: { type: 0, reason: 0 } })
    await c.send('TRANS_END', { 27: bytes, 28: articles })
    return await c.expect('ACK_TRANS_END')
  }

  it('an IDT without PI 19 is acknowledged (read as code 4, restartable), not aborted with D3-318', async () => {
    const c = await open()
    await c.toDataPhase(++tid)
    await c.dtf([patternBytes(1024, 1)])
    await c.raw(idtWithoutEndCode(c.y))
    await c.expect('ACK_IDT')
    await c.send('CRF', { 2: { type: 0, reason: 0 } })
    await c.expect('ACK_CRF')
    assert.equal(h.metrics.deviations.get('idt-without-end-code'), 1)
    const end = h.journal.ended.at(-1)!
    assert.equal(end.status, 'interrupted')
  })

  it('entities larger than the PI 25 answered are accepted up to the server maximum and counted', async () => {
    const c = await open()
    const id = ++tid
    await c.toDataPhase(id) // PI 25 4096 proposed and answered
    const a = bigEntity(c.y, 8, 2)
    const b = bigEntity(c.y, 8, 3)
    await c.raw(a.entity)
    await c.raw(b.entity)
    const ack = await finish(c, 16 * 1024, 16)
    assert.equal(diag(ack), 'D0-000')
    assert.equal(getNumber(ack.params, 27), 16 * 1024)
    assert.deepEqual(await readFile(join(h.dir, `CXCLIENT_TESTFILE_${id}`)), Buffer.concat([a.data, b.data]))
    assert.equal(h.metrics.deviations.get('entity-over-negotiated-size'), 2)
    // Above the server's own maximum (16384 here) it is still a protocol error.
    const d = await open()
    await d.toDataPhase(++tid)
    await d.raw(bigEntity(d.y, 16, 4).entity)
    assert.equal(diag(await d.expect('ABORT')), 'D3-311')
  })

  it('a variable-format article longer than PI 32 is stored and counted; a fixed-format one is refused D2-220', async () => {
    const c = await open()
    const id = ++tid
    await c.toDataPhase(id, { articleLength: 512 })
    const arts = [patternBytes(1000, 5), patternBytes(700, 6)]
    await c.dtf(arts)
    assert.equal(diag(await finish(c, 1700, 2)), 'D0-000')
    assert.deepEqual(await readFile(join(h.dir, `CXCLIENT_TESTFILE_${id}`)), Buffer.concat(arts))
    assert.equal(h.metrics.deviations.get('article-over-announced-length'), 2)
    const d = await open()
    await d.toDataPhase(++tid, { articleLength: 512, format: 0 })
    await d.dtf([patternBytes(1000, 7)])
    assert.equal(diag(await d.expect('ABORT')), 'D2-220')
  })
})
