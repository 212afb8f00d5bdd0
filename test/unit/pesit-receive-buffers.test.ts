import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { writeBufferFor } from '../../transfer/receive-store.js'

describe('PeSIT receive: write buffers shrink with the transfers in progress', () => {
  it('a lone transfer gets the largest buffer, a hundred share the budget, a thousand get the floor', () => {
    assert.equal(writeBufferFor(1), 512 * 1024)
    assert.equal(writeBufferFor(64), 512 * 1024)
    assert.equal(writeBufferFor(100), 320 * 1024)
    assert.equal(writeBufferFor(1000), 128 * 1024)
    assert.equal(writeBufferFor(0), 512 * 1024)
    for (let n = 1; n <= 256; n++) assert.ok(writeBufferFor(n) * 2 * n <= 64 * 1024 * 1024 || writeBufferFor(n) === 128 * 1024)
  })
})
