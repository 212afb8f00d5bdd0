import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Duplex } from 'node:stream'
import { FpduChannel } from '../../transfer/fpdu-channel.js'
import { ConnectionLostError, PesitTimeoutError, ProtocolError } from '../../transfer/errors.js'
import { encodeEntity, encodeFpdu } from '../../transfer/codec.js'

/** A stream whose reading side is driven by the test and whose writing side never drains. */
function stuckPeer (): Duplex {
  return new Duplex({
    highWaterMark: 16,
    read () {},
    write (_chunk, _enc, _cb) { /* never calls back: the peer does not read */ }
  })
}

describe('FPDU channel', () => {
  it('a peer that never reads makes writes fail after the write timeout, and the stream is destroyed', async () => {
    const s = stuckPeer()
    const ch = new FpduChannel(s, { writeTimeoutMs: 50 })
    await ch.write(new Uint8Array(8)) // first write is accepted by the stream buffer
    await assert.rejects(ch.write(new Uint8Array(64)), (e: unknown) => e instanceof ConnectionLostError && /did not read for 50 ms/.test(e.message))
    assert.ok(s.destroyed)
  })

  it('next(): FPDUs in order across entities, timeout, malformed input, end', async () => {
    const s = stuckPeer()
    const ch = new FpduChannel(s)
    const syn = encodeFpdu({ type: 'SYN', idDst: 1, idSrc: 0, params: { 20: 1 } })
    const dtf = encodeFpdu({ type: 'DTF', idDst: 1, idSrc: 0, params: {}, data: Uint8Array.of(9) })
    s.push(encodeEntity([dtf, syn]).subarray(0, 5))
    await assert.rejects(ch.next(30), PesitTimeoutError)
    s.push(encodeEntity([dtf, syn]).subarray(5))
    assert.equal((await ch.next(1000)).kind, 'fpdu')
    const second = await ch.next(1000)
    assert.ok(second.kind === 'fpdu' && second.fpdu.type === 'SYN')
    s.push(Uint8Array.of(0, 6, 0, 6, 0xc0, 0x99, 1, 0))
    await assert.rejects(ch.next(1000), ProtocolError)
    const s2 = stuckPeer()
    const ch2 = new FpduChannel(s2)
    s2.push(null)
    assert.equal((await ch2.next(1000)).kind, 'end')
  })
})
