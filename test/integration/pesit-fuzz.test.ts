import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startHarness } from '../helpers/pesit-harness.js'
import { captureClientHello, runFuzzCase, runTlsFuzzCase, fuzzScratchDir, writePullFiles, type FuzzOutcome, type Scenario } from '../helpers/pesit-fuzz.js'
import { makePki, opensslMissing } from '../helpers/certs.js'
import { patternBytes } from '../helpers/pesit-vectors.js'
import { pushFile } from '../../transfer/push.js'
import { tlsConnector } from '../../transfer/requester-session.js'

const CASES = Number(process.env.VECTIS_FUZZ_CASES ?? 3000)
const PARALLEL = 8
const tlsSkip = opensslMissing()

describe('PeSIT server fuzzing', () => {
  it(`${CASES} mutated sessions (push, pull${tlsSkip === undefined ? ', TLS handshakes' : ''}): no crash, no hang, a healthy push keeps working`, async (t) => {
    const scratch = await fuzzScratchDir()
    const pki = tlsSkip === undefined ? makePki(join(scratch, 'pki')) : undefined
    const h = await startHarness({
      syncIntervalKb: 4, baseDir: scratch, maxConnections: 200, init: { timeouts: { connectMs: 600, readMs: 600, idleMs: 600, closeGraceMs: 100 } },
      ...(pki !== undefined ? { tls: { certFile: pki.server.cert, keyFile: pki.server.key, clientAuth: 'none', minVersion: 'TLSv1.2' } } : {})
    })
    await writePullFiles(join(scratch, 'outbox'))
    const hello = pki !== undefined ? await captureClientHello() : undefined
    const work = await mkdtemp(join(tmpdir(), 'vectis-fuzz-'))
    const fs = h.fs
    t.after(async () => { await h.stop(); await rm(work, { recursive: true, force: true }); await rm(scratch, { recursive: true, force: true }) })
    const src = patternBytes(64 * 1024, 5)
    const path = join(work, 'healthy.bin')
    await writeFile(path, src)
    let done = false
    // A healthy push running during the whole fuzz run, with sync points every 4 KB and window 1 (over TLS when
    // the TLS listener is fuzzed too).
    const healthy = (async () => {
      let n = 0
      const o = { host: '127.0.0.1', port: pki !== undefined ? h.tlsPort : h.port }
      for (;;) {
        n++
        const r = await pushFile({
          ...o, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', file: 'TESTFILE', source: path, transferId: 0xfff000 + n, syncIntervalKb: 4, syncWindow: 1, articleSize: 1024,
          ...(pki !== undefined ? { connect: tlsConnector(o, { insecure: true }) } : {})
        })
        assert.equal(r.bytes, src.length)
        const stored = await fs.readFile(join(h.dir, `CXCLIENT_TESTFILE_${0xfff000 + n}`))
        assert.equal(createHash('sha256').update(stored).digest('hex'), createHash('sha256').update(src).digest('hex'))
        await fs.unlink(join(h.dir, `CXCLIENT_TESTFILE_${0xfff000 + n}`))
        if (done) return n
      }
    })()
    const outcomes: FuzzOutcome[] = []
    const tlsKinds = new Map<string, number>()
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < CASES) {
        const i = next++
        const seed = 0x5eed0000 + i
        // One case in eight is a TLS handshake case; the others alternate push and pull.
        if (hello !== undefined && i % 8 === 7) {
          const o = await runTlsFuzzCase(h.tlsPort, seed, hello, 6000)
          tlsKinds.set(o.kind, (tlsKinds.get(o.kind) ?? 0) + 1)
          continue
        }
        const scenario: Scenario = i % 2 === 0 ? 'push' : 'pull'
        outcomes.push(await runFuzzCase(h.port, seed, 6000, scenario))
      }
    }
    try {
      await Promise.all(Array.from({ length: PARALLEL }, worker))
    } finally {
      done = true
    }
    const stats = new Map<string, number>()
    for (const o of outcomes) stats.set(`${o.scenario} ${o.ending}:${o.diagnostic ?? ''}`, (stats.get(`${o.scenario} ${o.ending}:${o.diagnostic ?? ''}`) ?? 0) + 1)
    t.diagnostic(JSON.stringify(Object.fromEntries(stats)))
    t.diagnostic(`TLS cases ${JSON.stringify(Object.fromEntries(tlsKinds))}`)
    const ms = outcomes.map((o) => o.ms).sort((a, b) => a - b)
    t.diagnostic(`case ms p50 ${ms[Math.floor(ms.length / 2)]} p90 ${ms[Math.floor(ms.length * 0.9)]} max ${ms.at(-1)}`)
    const pushes = await healthy
    assert.ok(pushes >= 1)
    // Every state of both directions was hit, and the server answered in many ways (not one canned reaction).
    const statesOf = (sc: Scenario): Set<string> => new Set(outcomes.filter((o) => o.scenario === sc).map((o) => o.state))
    assert.deepEqual([...statesOf('push')].sort(), ['CN01', 'CN03', 'OF02', 'SF03', 'TDE02', 'TDE02 (segment)', 'TDE07'])
    assert.deepEqual([...statesOf('pull')].sort(), ['CN01', 'CN03', 'OF02', 'SF03', 'TDL02', 'TDL07'])
    const endings = new Set(outcomes.map((o) => `${o.ending}:${o.diagnostic ?? ''}`))
    assert.ok(endings.size >= 5, [...endings].join(' '))
    for (const sc of ['push', 'pull'] as const) assert.ok(outcomes.some((o) => o.scenario === sc && o.ending === 'RELCONF'), `some harmless mutations complete a ${sc}`)
    assert.ok(outcomes.some((o) => o.ending === 'ABORT' && o.diagnostic === 'D3-311'))
    if (hello !== undefined) assert.ok(tlsKinds.size >= 4, JSON.stringify(Object.fromEntries(tlsKinds)))
    // After the storm, nothing is left running on the server side.
    const deadline = Date.now() + 5000
    while (h.metrics.connections !== 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal(h.metrics.connections, 0)
  })
})
