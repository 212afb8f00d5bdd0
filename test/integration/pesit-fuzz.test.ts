import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startHarness } from '../helpers/pesit-harness.js'
import { runFuzzCase, fuzzScratchDir, type FuzzOutcome } from '../helpers/pesit-fuzz.js'
import { patternBytes } from '../helpers/pesit-vectors.js'
import { pushFile } from '../../transfer/push.js'

const CASES = Number(process.env.VECTIS_FUZZ_CASES ?? 3000)
const PARALLEL = 8

describe('PeSIT server fuzzing', () => {
  it(`${CASES} mutated sessions: no crash, no hang, a healthy push keeps working`, async (t) => {
    const scratch = await fuzzScratchDir()
    const h = await startHarness({ syncIntervalKb: 4, baseDir: scratch, maxConnections: 200, init: { timeouts: { connectMs: 600, readMs: 600, idleMs: 600, closeGraceMs: 100 } } })
    const work = await mkdtemp(join(tmpdir(), 'vectis-fuzz-'))
    const fs = h.fs
    t.after(async () => { await h.stop(); await rm(work, { recursive: true, force: true }); await rm(scratch, { recursive: true, force: true }) })
    const src = patternBytes(64 * 1024, 5)
    const path = join(work, 'healthy.bin')
    await writeFile(path, src)
    let done = false
    // A healthy push running during the whole fuzz run, with sync points every 4 KB and window 1.
    const healthy = (async () => {
      let n = 0
      for (;;) {
        n++
        const r = await pushFile({ host: '127.0.0.1', port: h.port, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'TESTFILE', source: path, transferId: 0xfff000 + n, syncIntervalKb: 4, syncWindow: 1, articleSize: 1024 })
        assert.equal(r.bytes, src.length)
        const stored = await fs.readFile(join(h.dir, `CXCLIENT_TESTFILE_${0xfff000 + n}`))
        assert.equal(createHash('sha256').update(stored).digest('hex'), createHash('sha256').update(src).digest('hex'))
        await fs.unlink(join(h.dir, `CXCLIENT_TESTFILE_${0xfff000 + n}`))
        if (done) return n
      }
    })()
    const outcomes: FuzzOutcome[] = []
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < CASES) {
        const seed = 0x5eed0000 + next++
        outcomes.push(await runFuzzCase(h.port, seed, 6000))
      }
    }
    try {
      await Promise.all(Array.from({ length: PARALLEL }, worker))
    } finally {
      done = true
    }
    const stats = new Map<string, number>()
    for (const o of outcomes) stats.set(`${o.ending}:${o.diagnostic ?? ''}`, (stats.get(`${o.ending}:${o.diagnostic ?? ''}`) ?? 0) + 1)
    t.diagnostic(JSON.stringify(Object.fromEntries(stats)))
    const ms = outcomes.map((o) => o.ms).sort((a, b) => a - b)
    t.diagnostic(`case ms p50 ${ms[Math.floor(ms.length / 2)]} p90 ${ms[Math.floor(ms.length * 0.9)]} max ${ms.at(-1)}`)
    const pushes = await healthy
    assert.ok(pushes >= 1)
    assert.equal(outcomes.length, CASES)
    // Every state was hit, and the server answered in many ways (not one canned reaction).
    assert.ok(new Set(outcomes.map((o) => o.index)).size >= 15)
    const endings = new Set(outcomes.map((o) => `${o.ending}:${o.diagnostic ?? ''}`))
    assert.ok(endings.size >= 5, [...endings].join(' '))
    assert.ok(outcomes.some((o) => o.ending === 'RELCONF'), 'some harmless mutations complete the session')
    assert.ok(outcomes.some((o) => o.ending === 'ABORT' && o.diagnostic === 'D3-311'))
    // After the storm, nothing is left running on the server side.
    const deadline = Date.now() + 5000
    while (h.metrics.connections !== 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal(h.metrics.connections, 0)
  })
})
