import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { startHarness, type Harness } from '../helpers/pesit-harness.js'
import { ScriptClient, createParams } from '../helpers/pesit-script.js'
import { encodePreconnection, getDiagnostic, type Fpdu } from '../../transfer/codec.js'
import { formatDiagnostic } from '../../transfer/diagnostics.js'
import { createLogger } from '../../common/logger.js'
import { Writable } from 'node:stream'

function diag (f: Fpdu): string {
  return formatDiagnostic(getDiagnostic(f.params)!)
}

describe('PeSIT server sessions: refusals, protocol errors, timers, limits, lease', () => {
  let h: Harness
  const clients: ScriptClient[] = []
  let nextId = 1
  const open = async (): Promise<ScriptClient> => {
    const c = await ScriptClient.open(h.port)
    clients.push(c)
    return c
  }
  const logLines: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l !== '') logLines.push(JSON.parse(l) as Record<string, unknown>); cb() } })
  before(async () => {
    h = await startHarness({ logger: createLogger({ level: 'info', destination: sink }), syncIntervalKb: 32, maxConnections: 4, init: { timeouts: { connectMs: 400, readMs: 400, idleMs: 600, closeGraceMs: 200 } } })
  })
  after(async () => {
    for (const c of clients) c.destroy()
    await h.stop()
  })

  const refusedConnect = async (opts: Parameters<ScriptClient['connectPesit']>[0], expected: string): Promise<void> => {
    const c = await open()
    const f = await c.connectPesit(opts)
    assert.equal(f.type, 'RCONNECT')
    assert.equal(diag(f), expected)
    await c.closed()
  }

  it('CONNECT refusals: password, partner, server id, version, CRC', async () => {
    await refusedConnect({ password: 'nope' }, 'D3-304')
    await refusedConnect({ partner: 'STRANGER' }, 'D3-304')
    await refusedConnect({ server: 'ELSEWHERE' }, 'D3-301')
    const c = await open()
    await c.send('CONNECT', { 3: 'CXCLIENT', 4: 'PESITSRV', 6: 1, 22: 0 }, { idSrc: 5 })
    assert.equal(diag(await c.expect('RCONNECT')), 'D3-304') // no password given
    const v = await open()
    await v.send('CONNECT', { 3: 'CXCLIENT', 4: 'PESITSRV', 5: Buffer.from('test123 '), 6: 1, 22: 0 }, { idSrc: 5 })
    assert.equal(diag(await v.expect('RCONNECT')), 'D3-308')
    const crc = await open()
    await crc.send('CONNECT', { 1: 1, 3: 'CXCLIENT', 4: 'PESITSRV', 5: Buffer.from('test123 '), 6: 2, 22: 0 }, { idSrc: 5 })
    assert.equal(diag(await crc.expect('RCONNECT')), 'D3-315')
  })

  it('sync negotiation: smallest interval and window win, none when not proposed', async () => {
    const c = await open()
    const a = await c.connectPesit({ sync: [0xffff, 200] })
    assert.deepEqual([...(a.params[7] as Uint8Array)], [0, 32, 16])
    const d = await open()
    const b = await d.connectPesit({ sync: [0, 0] })
    assert.deepEqual([...(b.params[7] as Uint8Array)], [0, 0, 0])
    for (const x of [c, d]) {
      await x.send('RELEASE', { 2: { type: 0, reason: 0 } }, { idSrc: x.x })
      await x.expect('RELCONF')
    }
  })

  const abortedWith = async (c: ScriptClient, expected: string): Promise<void> => {
    const f = await c.expect('ABORT')
    assert.equal(diag(f), expected)
    await c.closed()
  }

  it('an FPDU not valid in the state gets ABORT D3-311, at every phase', async () => {
    const c1 = await open()
    await c1.send('WRITE') // before CONNECT
    await abortedWith(c1, 'D3-311')
    const c2 = await open()
    await c2.connectPesit()
    await c2.send('WRITE') // no file selected
    await abortedWith(c2, 'D3-311')
    const c3 = await open()
    await c3.connectPesit()
    await c3.toDataPhase(nextId++)
    await c3.send('CRF', { 2: { type: 0, reason: 0 } }) // CRF while data flows
    await abortedWith(c3, 'D3-311')
    const c4 = await open()
    await c4.connectPesit()
    await c4.toDataPhase(nextId++)
    await c4.send('DTF_END', { 2: { type: 0, reason: 0 } })
    await c4.dtf([Buffer.from('late')]) // data after DTF.END
    await abortedWith(c4, 'D3-311')
  })

  it('an unexpected FPDU is logged with its state and what was expected', async () => {
    const c = await open()
    await c.connectPesit()
    await c.send('ORF', { 21: Uint8Array.of(0, 0) })
    await abortedWith(c, 'D3-311')
    const line = logLines.find((l) => l.msg === 'unexpected FPDU' && l.fpdu === 'ORF')
    assert.ok(line !== undefined)
    assert.equal(line.state, 'CN03')
    assert.equal(line.component, 'transfer:pesit-server')
    assert.ok((line.expected as string[]).includes('CREATE'))
    assert.ok(logLines.some((l) => l.msg === 'aborting session' && l.diagnostic === 'D3-311 remote PeSIT protocol error'))
    assert.ok(!JSON.stringify(logLines).includes('test123'), 'no password in the logs')
  })

  it('malformed FPDUs: D3-311 for structure, D3-318 for parameters, wrong ID.DST', async () => {
    const c1 = await open()
    await c1.raw(Uint8Array.of(0, 6, 0, 6, 0xc0, 0x77, 0, 0)) // unknown type
    await abortedWith(c1, 'D3-311')
    const c2 = await open()
    await c2.connectPesit()
    await c2.raw(Uint8Array.of(0, 8, 0, 8, 0xc0, 0x03, c2.y, 0, 0x14, 0)) // SYN with LI 0
    await abortedWith(c2, 'D3-318')
    const c3 = await open()
    await c3.connectPesit()
    c3.y ^= 0x55
    await c3.send('CREATE', createParams(nextId++))
    await abortedWith(c3, 'D3-311')
    const c4 = await open()
    await c4.raw(Uint8Array.of(0, 3, 1, 2, 3)) // entity shorter than a header
    await abortedWith(c4, 'D3-311')
    const c5 = await open()
    await c5.connectPesit()
    await c5.raw(Uint8Array.of(0, 12, 0, 6, 0xc0, 0x02, c5.y, 0, 0, 6, 0xc0, 0x14, c5.y, 0)) // WRITE+ORF in one entity
    await abortedWith(c5, 'D3-311')
  })

  it('CREATE refusals are negative ACK(CREATE), the connection stays usable', async () => {
    const c = await open()
    await c.connectPesit()
    await c.send('CREATE', createParams(nextId++, { file: 'NOPE' }))
    assert.equal(diag(await c.expect('ACK_CREATE')), 'D2-205')
    await c.send('CREATE', createParams(nextId++, { articleLength: 0 }))
    assert.equal(diag(await c.expect('ACK_CREATE')), 'D2-200')
    await c.send('CREATE', createParams(0))
    assert.equal(diag(await c.expect('ACK_CREATE')), 'D3-318')
    await c.send('SELECT', { 9: { 11: 0, 12: 'OUTBOX' }, 13: 0, 17: 0, 25: 4096 })
    assert.equal(diag(await c.expect('ACK_SELECT')), 'D2-226')
    await c.send('MSG', { 9: { 11: 0xffff, 12: 'X' }, 13: 1, 91: 'hello' })
    assert.equal(diag(await c.expect('ACK_MSG')), 'D2-209')
    await c.toDataPhase(nextId++)
  })

  it('data-phase checks: fixed article too long, data past the announced size, sync order, segments, counts', async () => {
    const c1 = await open()
    await c1.connectPesit()
    await c1.toDataPhase(nextId++, { articleLength: 10, format: 0 })
    await c1.dtf([Buffer.alloc(11)])
    await abortedWith(c1, 'D2-220')
    const c2 = await open()
    await c2.connectPesit()
    await c2.toDataPhase(nextId++, { announcedKb: 1, articleLength: 1024 })
    await c2.dtf([Buffer.alloc(1024)])
    await c2.dtf([Buffer.alloc(1)])
    await abortedWith(c2, 'D2-224')
    const c3 = await open()
    await c3.connectPesit()
    await c3.toDataPhase(nextId++)
    await c3.send('SYN', { 20: 2 })
    await abortedWith(c3, 'D3-311')
    const c4 = await open()
    await c4.connectPesit()
    await c4.toDataPhase(nextId++)
    await c4.send('DTFFA', {}, { data: Buffer.from('x') })
    await abortedWith(c4, 'D3-311')
    const c5 = await open()
    await c5.connectPesit()
    await c5.toDataPhase(nextId++)
    for (let i = 0; i < 40; i++) await c5.dtf([Buffer.alloc(1024), Buffer.alloc(1024)]) // 80 KB, interval 32 KB
    await abortedWith(c5, 'D2-222')
    const c6 = await open()
    await c6.connectPesit()
    await c6.toDataPhase(nextId++, { format: 0x00, articleLength: 4 })
    await c6.dtf([Buffer.from('abc')])
    await abortedWith(c6, 'D2-220')
    const c7 = await open()
    await c7.connectPesit()
    await c7.toDataPhase(nextId++)
    await c7.dtf([Buffer.from('abc')])
    await c7.send('DTF_END', { 2: { type: 0, reason: 0 } })
    await c7.send('TRANS_END', { 27: 4, 28: 1 })
    const ack = await c7.expect('ACK_TRANS_END')
    assert.equal(diag(ack), 'D3-319')
    assert.equal(ack.params[27], 3)
    await c7.send('CRF', { 2: { type: 0, reason: 0 } })
    await c7.expect('ACK_CRF')
    await c7.send('DESELECT', { 2: { type: 0, reason: 0 } })
    await c7.expect('ACK_DESELECT')
    assert.equal(h.journal.ended.at(-1)?.status, 'failed')
  })

  it('requester IDT: acknowledged, transfer kept for a restart', async () => {
    const c = await open()
    await c.connectPesit()
    await c.toDataPhase(nextId++)
    await c.dtf([Buffer.from('abc')])
    await c.send('IDT', { 2: { type: 0, reason: 0 }, 19: 8 })
    await c.expect('ACK_IDT')
    await c.send('WRITE') // "ab": no new WRITE before DESELECT
    assert.equal(diag(await c.expect('ACK_WRITE')), 'D2-213')
    assert.equal(h.journal.ended.at(-1)?.status, 'interrupted')
  })

  it('timers: Tp while data flows (D3-317), Td when idle (D3-313), Tc before CONNECT', async () => {
    const c1 = await open()
    await c1.connectPesit()
    await c1.toDataPhase(nextId++)
    await abortedWith(c1, 'D3-317')
    const c2 = await open()
    await c2.connectPesit()
    await abortedWith(c2, 'D3-313')
    const c3 = await open()
    await c3.closed()
  })

  it('pre-connection: NAK for a bad password, then close', async () => {
    const c = await open()
    await c.raw(encodePreconnection({ identifier: 'CXCLIENT', password: 'bad' }))
    const reply = await new Promise<Buffer>((resolve) => { c.socket.once('data', resolve) })
    assert.deepEqual([...reply], [0xd5, 0xc1, 0xd2, 0xf0])
    const ok = await open()
    await ok.raw(Buffer.concat([Uint8Array.of(0, 24), encodePreconnection({ identifier: 'CXCLIENT', password: 'test123' })]))
    const r2 = await new Promise<Buffer>((resolve) => { ok.socket.once('data', resolve) })
    assert.deepEqual([...r2], [0, 4, 0xc1, 0xc3, 0xd2, 0xf0])
  })

  it('connection limit: the extra connection gets RCONNECT D3-303', async () => {
    for (const c of clients.splice(0)) c.destroy()
    const live: ScriptClient[] = []
    for (let i = 0; i < 4; i++) live.push(await open())
    await live[0]!.connectPesit()
    const extra = await open()
    const f = await extra.connectPesit()
    assert.equal(f.type, 'RCONNECT')
    assert.equal(diag(f), 'D3-303')
    for (const c of clients.splice(0)) c.destroy()
  })

  it('a journal that refuses a sync point stops the ACK(SYN): ABORT D2-215', async () => {
    const c = await open()
    await c.connectPesit()
    await c.toDataPhase(nextId++)
    await c.dtf([Buffer.alloc(100)])
    const orig = h.journal.syncPoint.bind(h.journal)
    h.journal.syncPoint = () => { throw new Error('replication failed') }
    try {
      await c.send('SYN', { 20: 1 })
      await abortedWith(c, 'D2-215')
    } finally {
      h.journal.syncPoint = orig
    }
  })

  it('lease: no connection accepted, no ACK(SYN) given, once not leader', async () => {
    const c = await open()
    await c.connectPesit()
    await c.toDataPhase(nextId++)
    await c.dtf([Buffer.alloc(100)])
    h.leader.value = false
    try {
      await c.send('SYN', { 20: 1 })
      await abortedWith(c, 'D3-312')
      const s = connect({ host: '127.0.0.1', port: h.port })
      await new Promise<void>((resolve) => { s.on('close', () => { resolve() }).on('error', () => {}) })
    } finally {
      h.leader.value = true
    }
  })
})
