import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { startHarness } from '../helpers/pesit-harness.js'
import { loadVector, reconstructPush } from '../helpers/pesit-vectors.js'
import { FpduChannel } from '../../transfer/fpdu-channel.js'
import { encodeEntity, encodeFpdu, decodeFpdu } from '../../transfer/codec.js'

describe('recorded Connect:Express push replayed against the server', () => {
  it('accepts every requester frame in order, answers like the recording, stores the file without prefixes', async (t) => {
    const h = await startHarness({ syncIntervalKb: 32, maxEntitySize: 4096 })
    t.after(async () => { await h.stop() })
    const { frames, content } = reconstructPush(loadVector('cx-push-1mb.raw'), { fileId: 'TESTFILE' })
    const socket = connect({ host: '127.0.0.1', port: h.port })
    t.after(() => { socket.destroy() })
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve).once('error', reject) })
    const ch = new FpduChannel(socket)
    let y: number | undefined
    let answers = 0
    for (let i = 0; i < frames.length; i++) {
      const f = frames[i]!
      if (f.dir === 'requester') {
        // The recorder's server id was E2; ours is whatever the server chose in ACONNECT.
        const bytes = Uint8Array.from(f.fpdu)
        if (y !== undefined && f.type !== 'CONNECT') bytes[4] = y
        await ch.write(encodeEntity([bytes]))
        continue
      }
      const ev = await ch.next(10_000)
      assert.equal(ev.kind, 'fpdu', `frame ${i}: expected ${f.type}, got ${ev.kind}`)
      if (ev.kind !== 'fpdu') return
      assert.equal(ev.fpdu.type, f.type, `frame ${i}`)
      answers++
      const got = encodeFpdu(ev.fpdu)
      const expected = Uint8Array.from(f.fpdu)
      if (f.type === 'ACONNECT') {
        y = ev.fpdu.idSrc
        assert.notEqual(y, 0)
        expected[5] = y
      }
      if (f.type === 'RELCONF') expected[5] = y!
      if (f.type === 'ACK_TRANS_END') {
        // The recorded server answered PI 28 = 768 (its article-counting bug); the right count is 1024.
        assert.deepEqual(ev.fpdu.params, { ...decodeFpdu(f.fpdu).params, 28: 1024 })
        continue
      }
      assert.equal(Buffer.from(got).toString('hex'), Buffer.from(expected).toString('hex'), `frame ${i} ${f.type} byte-exact`)
    }
    assert.equal(answers, frames.filter((f) => f.dir === 'server').length)
    const stored = await readFile(join(h.dir, 'CXCLIENT_TESTFILE_9417'))
    assert.equal(stored.length, 1 << 20)
    assert.ok(stored.equals(content), 'stored file equals the articles, no length prefixes')
    assert.deepEqual((await readdir(h.dir)).filter((n) => n.startsWith('.') && !n.endsWith('.ckpt')), [], 'no partial file left (the completion record stays)')
    const end = h.journal.ended.at(-1)
    assert.equal(end?.status, 'completed')
    assert.equal(end.sha256, createHash('sha256').update(content).digest('hex'))
    assert.equal(h.journal.syncPoints.length, 31)
    assert.deepEqual(h.journal.syncPoints.at(-1), { id: end.id, syncPoint: 31, offset: 31 * 32768, articles: 992 })
  })
})
