import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import {
  EntityReader, decodeFpdu, encodeEntity, encodeFpdu, splitEntity, splitArticles, packArticles, checkConcatenation,
  encodeSyncOption, decodeSyncOption, encodeAccessControl, decodeAccessControl, encodePreconnection,
  decodePreconnection, isPreconnection, getDiagnostic, type Fpdu
} from '../../transfer/codec.js'
import { DIAG, formatDiagnostic, decodeDiagnostic, encodeDiagnostic, describeDiagnostic } from '../../transfer/diagnostics.js'
import { ProtocolError } from '../../transfer/errors.js'

function hex (s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s.replace(/[^0-9a-fA-F]/g, ''), 'hex'))
}

/** Hex FPDU whose length field is set from its size (for hand-written malformed parameter cases). */
function sized (s: string): Uint8Array {
  const b = hex(s)
  b[0] = b.length >> 8
  b[1] = b.length & 0xff
  return b
}

function toHex (b: Uint8Array): string {
  return Buffer.from(b).toString('hex')
}

/** Both directions: encode(fpdu) equals the bytes, decode(bytes) equals the fpdu. */
function roundTrip (bytes: string, fpdu: Fpdu): void {
  const wire = hex(bytes)
  assert.equal(toHex(encodeFpdu(fpdu)), toHex(wire), `encode ${fpdu.type}`)
  assert.deepEqual(decodeFpdu(wire), fpdu, `decode ${fpdu.type}`)
}

function rejects (bytes: Uint8Array, diag: string, re?: RegExp): void {
  assert.throws(() => decodeFpdu(bytes), (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `ProtocolError expected, got ${String(err)}`)
    assert.equal(formatDiagnostic(err.diagnostic), diag, err.message)
    if (re !== undefined) assert.match(err.message, re)
    return true
  })
}

describe('PeSIT codec: docs/pesit.md §14 byte-exact', () => {
  it('§14.1 CONNECT with its entity prefix', () => {
    const fpdu: Fpdu = {
      type: 'CONNECT', idDst: 0, idSrc: 0x62,
      params: { 3: 'CXCLIENT', 4: 'PESITSRV', 5: hex('74 65 73 74 31 32 33 20'), 6: 2, 7: hex('00 20 02'), 22: 2 }
    }
    const wire = '00 2F 40 20 00 62 03 08 43 58 43 4C 49 45 4E 54 04 08 50 45 53 49 54 53 52 56 05 08 74 65 73 74 31 32 33 20 06 01 02 07 03 00 20 02 16 01 02'
    roundTrip(wire, fpdu)
    assert.equal(toHex(encodeEntity([encodeFpdu(fpdu)])), toHex(hex('00 2F ' + wire)))
    assert.deepEqual(decodeAccessControl(decodeFpdu(hex(wire)).params[5] as Uint8Array), { password: 'test123' })
    assert.deepEqual(decodeSyncOption(hex('00 20 02')), { intervalKb: 32, window: 2 })
    assert.equal(toHex(encodeAccessControl('test123')), toHex(hex('74 65 73 74 31 32 33 20')))
    assert.equal(toHex(encodeSyncOption({ intervalKb: 32, window: 2 })), '002002')
  })

  it('§14.2 ACONNECT', () => {
    roundTrip('00 0E 40 21 62 E2 06 01 02 07 03 00 20 02', { type: 'ACONNECT', idDst: 0x62, idSrc: 0xe2, params: { 6: 2, 7: hex('00 20 02') } })
  })

  it('§14.3 CREATE (reconstructed, 70 bytes) and its non-minimal PI 13', () => {
    const wire = '00 46 C0 11 E2 00 09 0D 0B 01 00 0C 08 54 45 53 54 46 49 4C 45 0D 03 00 24 C9 10 01 02 11 01 00 19 02 FF FF ' +
      '1E 07 1F 01 80 20 02 04 00 28 07 29 01 00 2A 02 04 00 32 0E 33 0C 32 36 30 31 31 39 30 31 32 35 30 35'
    const decoded = decodeFpdu(hex(wire))
    assert.deepEqual(decoded, {
      type: 'CREATE', idDst: 0xe2, idSrc: 0,
      params: { 9: { 11: 0, 12: 'TESTFILE' }, 13: 9417, 16: 2, 17: 0, 25: 65535, 30: { 31: 0x80, 32: 1024 }, 40: { 41: 0, 42: 1024 }, 50: { 51: '260119012505' } }
    })
    // Encoding emits the minimal PI 13 (`0D 02 24 C9`), one byte shorter than C:X's form: what docs/pesit.md §4.4
    // asks senders to do.
    const re = encodeFpdu(decoded)
    assert.equal(re.length, 69)
    assert.equal(toHex(re), toHex(hex(wire.replace('0D 03 00 24 C9', '0D 02 24 C9').replace('00 46', '00 45'))))
  })

  it('§14.4 ACK(CREATE) and a refusal', () => {
    roundTrip('00 0F C0 30 62 00 02 03 00 00 00 19 02 10 00', { type: 'ACK_CREATE', idDst: 0x62, idSrc: 0, params: { 2: DIAG.OK, 25: 4096 } })
    const refused = decodeFpdu(hex('00 0F C0 30 62 00 02 03 02 00 CC 19 02 10 00'))
    assert.equal(formatDiagnostic(getDiagnostic(refused.params)!), 'D2-204')
  })

  it('§14.5–§14.7 the rest of the recorded push', () => {
    const cases: Array<[string, Fpdu]> = [
      ['00 0A C0 14 E2 00 15 02 00 00', { type: 'ORF', idDst: 0xe2, idSrc: 0, params: { 21: hex('00 00') } }],
      ['00 0B C0 33 62 00 02 03 00 00 00', { type: 'ACK_ORF', idDst: 0x62, idSrc: 0, params: { 2: DIAG.OK } }],
      ['00 06 C0 02 E2 00', { type: 'WRITE', idDst: 0xe2, idSrc: 0, params: {} }],
      ['00 0E C0 36 62 00 02 03 00 00 00 12 01 00', { type: 'ACK_WRITE', idDst: 0x62, idSrc: 0, params: { 2: DIAG.OK, 18: 0 } }],
      ['00 09 C0 03 E2 00 14 01 01', { type: 'SYN', idDst: 0xe2, idSrc: 0, params: { 20: 1 } }],
      ['00 09 C0 38 62 00 14 01 1F', { type: 'ACK_SYN', idDst: 0x62, idSrc: 0, params: { 20: 31 } }],
      ['00 0B C0 04 E2 00 02 03 00 00 00', { type: 'DTF_END', idDst: 0xe2, idSrc: 0, params: { 2: DIAG.OK } }],
      ['00 0F C0 08 E2 00 1B 03 10 00 00 1C 02 04 00', { type: 'TRANS_END', idDst: 0xe2, idSrc: 0, params: { 27: 1048576, 28: 1024 } }],
      ['00 14 C0 37 62 00 02 03 00 00 00 1B 03 10 00 00 1C 02 04 00', { type: 'ACK_TRANS_END', idDst: 0x62, idSrc: 0, params: { 2: DIAG.OK, 27: 1048576, 28: 1024 } }],
      ['00 0B C0 15 E2 00 02 03 00 00 00', { type: 'CRF', idDst: 0xe2, idSrc: 0, params: { 2: DIAG.OK } }],
      ['00 0B C0 34 62 00 02 03 00 00 00', { type: 'ACK_CRF', idDst: 0x62, idSrc: 0, params: { 2: DIAG.OK } }],
      ['00 0B C0 13 E2 00 02 03 00 00 00', { type: 'DESELECT', idDst: 0xe2, idSrc: 0, params: { 2: DIAG.OK } }],
      ['00 0B C0 32 62 00 02 03 00 00 00', { type: 'ACK_DESELECT', idDst: 0x62, idSrc: 0, params: { 2: DIAG.OK } }],
      ['00 0B 40 23 E2 62 02 03 00 00 00', { type: 'RELEASE', idDst: 0xe2, idSrc: 0x62, params: { 2: DIAG.OK } }],
      ['00 06 40 24 62 E2', { type: 'RELCONF', idDst: 0x62, idSrc: 0xe2, params: {} }]
    ]
    for (const [wire, fpdu] of cases) roundTrip(wire, fpdu)
  })

  it('§14.8 multi-article DTF "AB" "CDE"', () => {
    const wire = hex('00 0F 00 00 E2 02 00 02 41 42 00 03 43 44 45')
    const payload = packArticles([Buffer.from('AB'), Buffer.from('CDE')])
    const fpdu: Fpdu = { type: 'DTF', idDst: 0xe2, idSrc: 2, params: {}, data: payload }
    assert.equal(toHex(encodeFpdu(fpdu)), toHex(wire))
    const d = decodeFpdu(wire)
    assert.equal(d.type, 'DTF')
    assert.equal(d.idSrc, 2)
    const arts = splitArticles(d.data!, d.idSrc)
    assert.equal(Buffer.concat(arts).toString(), 'ABCDE')
  })

  it('segment FPDUs and the ABORT forms', () => {
    roundTrip('00 09 00 41 E2 00 41 42 43', { type: 'DTFDA', idDst: 0xe2, idSrc: 0, params: {}, data: hex('41 42 43') })
    roundTrip('00 07 00 40 E2 00 44', { type: 'DTFMA', idDst: 0xe2, idSrc: 0, params: {}, data: hex('44') })
    roundTrip('00 07 00 42 E2 00 45', { type: 'DTFFA', idDst: 0xe2, idSrc: 0, params: {}, data: hex('45') })
    roundTrip('00 0B 40 25 62 E2 02 03 03 01 37', { type: 'ABORT', idDst: 0x62, idSrc: 0xe2, params: { 2: DIAG.PROTOCOL_ERROR } })
    // C:X's bare form: header + 3-byte diagnostic
    assert.deepEqual(decodeFpdu(hex('00 09 40 25 01 62 03 01 37')).params, { 2: { type: 3, reason: 311 } })
    // 3-byte PI form with a 1-byte value
    assert.deepEqual(decodeFpdu(hex('00 09 40 25 01 62 02 01 05')).params, { 2: { type: 0, reason: 5 } })
  })

  it('the 3-byte LI form, in PIs and inside PGIs', () => {
    const text = 'x'.repeat(300)
    const f: Fpdu = { type: 'MSGMM', idDst: 1, idSrc: 0, params: { 91: text } }
    const enc = encodeFpdu(f)
    assert.equal(toHex(enc.subarray(6, 10)), '5bff012c')
    assert.deepEqual(decodeFpdu(enc), f)
    // PGI 9 written with the FF form for a short group is still accepted
    const pgi = hex('09 FF 00 0D 0B 01 00 0C 08 54 45 53 54 46 49 4C 45')
    const body = Buffer.concat([pgi, hex('0D 01 05 11 01 00 19 02 10 00 1E 04 20 02 04 00 28 03 2A 01 01')])
    const msg = Buffer.concat([hex('00 00 C0 11 E2 00'), body])
    msg.writeUInt16BE(msg.length, 0)
    const d = decodeFpdu(msg)
    assert.deepEqual(d.params[9], { 11: 0, 12: 'TESTFILE' })
  })

  it('trailing blanks are insignificant and all-blank strings are absent', () => {
    const wire = Buffer.concat([hex('00 00 40 24 62 E2 63 05'), Buffer.from('     ')])
    wire.writeUInt16BE(wire.length, 0)
    assert.deepEqual(decodeFpdu(wire).params, {})
  })
})

describe('PeSIT codec: malformed input', () => {
  it('structure errors give D3-311', () => {
    rejects(hex('00 05 C0 02 E2'), 'D3-311', /shorter than its header/)
    rejects(hex('00 07 C0 02 E2 00'), 'D3-311', /length field 7/)
    rejects(hex('00 06 C0 77 E2 00'), 'D3-311', /unknown FPDU/)
    rejects(hex('00 06 00 00 E2 00'), 'D3-311', /empty DTF/)
    rejects(hex('00 09 C0 03 E2 00 14 02 01'), 'D3-311', /runs past/)
    rejects(hex('00 07 C0 03 E2 00 14'), 'D3-311', /truncated/)
  })

  it('parameter errors give D3-318', () => {
    rejects(sized('00 08 C0 03 E2 00 14 00'), 'D3-318', /length 0/)
    rejects(sized('00 06 C0 03 E2 00'), 'D3-318', /mandatory PI 20/)
    rejects(sized('00 0C C0 03 E2 00 14 01 01 14 01 02'), 'D3-318', /repeated/)
    rejects(sized('00 0C C0 03 E2 00 14 01 01 12 01 02'), 'D3-318', /PI 18 not allowed/)
    rejects(sized('00 0D C0 03 E2 00 14 04 01 02 03 04'), 'D3-318', /at most 3/)
    rejects(sized('00 0B C0 04 E2 00 02 04 00 00 00 00'), 'D3-318', /at most 3/)
    rejects(sized('00 0A C0 14 E2 00 15 01 00'), 'D3-318', /expected 2/)
    // PGI 9 without its mandatory PI 12
    rejects(sized('00 1A C0 11 E2 00 09 03 0B 01 00 0D 01 05 11 01 00 19 02 10 00 1E 04 20 02 04 00'), 'D3-318')
    // the recorded CREATE whose PGIs the recorder emptied
    rejects(sized('00 1D C0 11 E2 00 09 00 0D 03 00 24 C9 10 01 02 11 01 00 19 02 FF FF 1E 00 28 00 32 00'), 'D3-318')
  })

  it('entities: split, bounds, concatenation rule', () => {
    const syn = hex('00 09 C0 03 E2 00 14 01 01')
    const dtf = hex('00 07 00 00 E2 00 41')
    assert.deepEqual(splitEntity(Buffer.concat([dtf, syn])).map(toHex), [toHex(dtf), toHex(syn)])
    assert.throws(() => splitEntity(Buffer.concat([dtf, hex('00 01')])), /left over/)
    assert.throws(() => splitEntity(hex('00 20 C0 02 E2 00')), /FPDU length 32/)
    assert.throws(() => splitEntity(hex('00 03 C0 02 E2 00')), /FPDU length 3/)
    checkConcatenation([dtf, syn])
    assert.throws(() => checkConcatenation([dtf, hex('00 06 C0 02 E2 00')]), /WRITE may not share/)
    assert.throws(() => splitArticles(hex('00 02 41 42 00 05 43'), 2), /runs past/)
    assert.throws(() => splitArticles(hex('00 02 41 42 43'), 1), /after 1 articles/)
    assert.throws(() => splitArticles(hex('00 02 41 42'), 2), /missing/)
  })

  it('diagnostics encode and decode', () => {
    assert.equal(toHex(encodeDiagnostic(DIAG.FILE_NOT_FOUND)), '0200cd')
    assert.equal(toHex(encodeDiagnostic(DIAG.PROTOCOL_ERROR)), '030137')
    assert.deepEqual(decodeDiagnostic(hex('03 01 37')), { type: 3, reason: 311 })
    assert.equal(decodeDiagnostic(hex('01 02 03 04')), undefined)
    assert.equal(describeDiagnostic(DIAG.BAD_COUNT), 'D3-319 byte or article count incorrect')
  })

  it('encoding refuses what the template refuses', () => {
    assert.throws(() => encodeFpdu({ type: 'SYN', idDst: 1, idSrc: 0, params: {} }), /mandatory PI 20/)
    assert.throws(() => encodeFpdu({ type: 'SYN', idDst: 1, idSrc: 0, params: { 20: 1, 18: 2 } }), /not in the template/)
    assert.throws(() => encodeFpdu({ type: 'SYN', idDst: 1, idSrc: 0, params: { 20: 2 ** 24 } }), /does not fit/)
    assert.throws(() => encodeFpdu({ type: 'DTF', idDst: 1, idSrc: 0, params: {}, data: new Uint8Array(0) }), /empty DTF/)
    assert.throws(() => encodeFpdu({ type: 'DTF', idDst: 1, idSrc: 0, params: {}, data: new Uint8Array(65530) }), /exceeds/)
    assert.throws(() => encodeFpdu({ type: 'SYN', idDst: 256, idSrc: 0, params: { 20: 1 } }), /not a byte/)
  })
})

describe('PeSIT codec: incremental entity reader', () => {
  const entities = [
    hex('00 2F 00 2F 40 20 00 62 03 08 43 58 43 4C 49 45 4E 54 04 08 50 45 53 49 54 53 52 56 05 08 74 65 73 74 31 32 33 20 06 01 02 07 03 00 20 02 16 01 02'),
    hex('00 06 00 06 C0 02 E2 00'),
    hex('00 10 00 07 00 00 E2 00 41 00 09 C0 03 E2 00 14 01 01')
  ]
  const stream = Buffer.concat(entities)

  it('yields the same entities whatever the chunking', () => {
    for (const size of [1, 2, 3, 5, 7, 64, stream.length]) {
      const r = new EntityReader()
      const got: string[] = []
      for (let i = 0; i < stream.length; i += size) {
        r.push(stream.subarray(i, i + size))
        for (let u = r.next(); u !== undefined; u = r.next()) {
          assert.equal(u.kind, 'entity')
          if (u.kind === 'entity') got.push(toHex(u.body))
        }
      }
      assert.deepEqual(got, entities.map((e) => toHex(e.subarray(2))), `chunk size ${size}`)
      assert.equal(r.buffered, 0)
    }
  })

  it('a body returned stays intact until the next call, however much is pushed meanwhile', () => {
    const entity = (n: number, fill: number): Buffer => Buffer.concat([Buffer.from([n >> 8, n & 0xff]), Buffer.alloc(n, fill)])
    const r = new EntityReader()
    r.push(entity(60000, 1))
    const first = r.next()
    assert.ok(first?.kind === 'entity')
    // The reader must make room while the first body is still lent: more than its whole initial buffer.
    for (let i = 0; i < 8; i++) r.push(entity(60000, 2 + i))
    assert.ok(first.body.every((b) => b === 1), 'the lent body was overwritten')
    for (let i = 0; i < 8; i++) {
      const u = r.next()
      assert.ok(u?.kind === 'entity' && u.body.length === 60000 && u.body.every((b) => b === 2 + i), `entity ${i + 2}`)
    }
    assert.equal(r.next(), undefined)
    assert.equal(r.buffered, 0)
  })

  it('a long stream in random chunks comes out whole, in a buffer that stops growing', () => {
    let seed = 7
    const rand = (n: number): number => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n }
    const sizes = Array.from({ length: 3000 }, () => 6 + rand(65530))
    const stream = Buffer.concat(sizes.map((n, i) => Buffer.concat([Buffer.from([n >> 8, n & 0xff]), Buffer.alloc(n, i & 0xff)])))
    const r = new EntityReader()
    let got = 0
    let peakBuffered = 0
    for (let off = 0; off < stream.length;) {
      const n = 1 + rand(200_000)
      r.push(stream.subarray(off, off + n))
      off += n
      peakBuffered = Math.max(peakBuffered, r.buffered)
      // Read like a channel: until a high-water mark of 128 KB is left behind (the socket then pauses).
      while (r.buffered > 128 * 1024 || (off >= stream.length && r.buffered > 0)) {
        const u = r.next()
        if (u === undefined) break
        assert.ok(u.kind === 'entity' && u.body.length === sizes[got] && u.body[0] === (got & 0xff) && u.body.at(-1) === (got & 0xff), `entity ${got}`)
        got++
      }
    }
    for (let u = r.next(); u !== undefined; u = r.next()) got++
    assert.equal(got, sizes.length)
    assert.ok(peakBuffered < 400 * 1024)
  })

  it('refuses an entity above the bound from its prefix alone, and stays failed', () => {
    const r = new EntityReader(4096)
    r.push(hex('10 01'))
    assert.throws(() => r.next(), (e: unknown) => e instanceof ProtocolError && /4097/.test(e.message))
    assert.throws(() => r.next(), ProtocolError)
    const small = new EntityReader()
    small.push(hex('00 05 00 05 C0 02 E2'))
    assert.throws(() => small.next(), /entity length 5/)
  })

  it('raw framing delimits by the FPDU length', () => {
    const r = new EntityReader(65535, 'raw')
    r.push(hex('00 06 C0 02 E2 00 00 09 C0 03'))
    assert.equal(toHex((r.next() as { body: Uint8Array }).body), '0006c002e200')
    assert.equal(r.next(), undefined)
    r.push(hex('E2 00 14 01 01'))
    assert.equal(toHex((r.next() as { body: Uint8Array }).body), '0009c003e20014 0101'.replace(/ /g, ''))
  })

  it('pre-connection: raw at the start of the stream, or inside an entity', () => {
    const pre = encodePreconnection({ identifier: 'CXCLIENT', password: 'test123' })
    assert.equal(toHex(pre.subarray(0, 8)), 'd7c5e2c9e3404040')
    assert.ok(isPreconnection(pre))
    assert.deepEqual(decodePreconnection(pre), { identifier: 'CXCLIENT', password: 'test123' })
    const r = new EntityReader()
    r.push(Buffer.concat([pre, entities[1]!]))
    const u = r.next()
    assert.equal(u?.kind, 'preconnection')
    assert.equal(r.next()?.kind, 'entity')
    const framed = new EntityReader()
    framed.push(Buffer.concat([hex('00 18'), pre]))
    const f = framed.next()
    assert.ok(f?.kind === 'entity' && isPreconnection(f.body))
  })
})
