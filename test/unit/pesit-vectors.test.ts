import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { loadVector, reconstructPush, decodeFrames, parseVectorFile } from '../helpers/pesit-vectors.js'
import { splitArticles } from '../../transfer/codec.js'

describe('recorded C:X push vector', () => {
  it('parses into the recorded FPDU sequence', () => {
    const frames = loadVector('cx-push-1mb.raw')
    assert.equal(frames.length, 847)
    assert.equal(frames[0]!.type, 'CONNECT')
    assert.equal(frames.at(-1)!.type, 'RELCONF')
    assert.equal(frames.filter((f) => f.type === 'SYN').length, 31)
    assert.throws(() => parseVectorFile(Uint8Array.of(2, 0, 6, 0, 6, 0xc0, 2, 0, 0)), /direction 2/)
    assert.throws(() => parseVectorFile(Uint8Array.of(0, 0, 7, 0, 6, 0xc0, 2, 0, 0, 0)), /length differs/)
  })

  it('reconstructs valid FPDUs whose articles rebuild the content, entities within 4096 bytes', () => {
    const r = reconstructPush(loadVector('cx-push-1mb.raw'), { fileId: 'TESTFILE' })
    const fpdus = decodeFrames(r.frames)
    const parts: Uint8Array[] = []
    let articles = 0
    let open: Uint8Array[] | undefined
    for (const f of fpdus) {
      if (f.type === 'DTF') {
        const a = splitArticles(f.data!, f.idSrc)
        articles += a.length
        parts.push(...a)
      } else if (f.type === 'DTFDA') {
        open = [f.data!]
      } else if (f.type === 'DTFFA') {
        assert.ok(open)
        parts.push(...open, f.data!)
        open = undefined
        articles++
      }
      if (f.type.startsWith('DTF')) assert.ok(f.data === undefined || f.data.length + 6 <= 4096)
    }
    assert.equal(articles, 1024)
    assert.ok(Buffer.concat(parts).equals(r.content))
    assert.equal(r.content.length, 1 << 20)
  })
})
