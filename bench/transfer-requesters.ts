/**
 * The requesters of `bench:transfer`'s concurrency round, in a process of their own: `count` pushes of `source`,
 * or `count` pulls of outbox files `each-<i>.bin` into `into`, all at once. Prints `{seconds, ok, failed, paths}`
 * (the paths to check: stored pushes or pulled files).
 */
import '../common/polyfill.js'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { pushFile } from '../transfer/push.js'
import { pullFile } from '../transfer/pull.js'

const job = JSON.parse(process.argv[2] ?? '{}') as { kind: 'push' | 'pull', port: number, count: number, source: string, into: string, syncKb: number }
const o = { host: '127.0.0.1', port: job.port, partner: 'CXCLIENT', password: 'test123', server: 'PESITSRV', syncIntervalKb: job.syncKb, syncWindow: 4, timeoutMs: 120_000 }
await mkdir(job.into, { recursive: true })
const t0 = performance.now()
const failed: string[] = []
const paths: string[] = []
let ok = 0
await Promise.all(Array.from({ length: job.count }, async (_, i) => {
  try {
    if (job.kind === 'push') {
      const r = await pushFile({ ...o, file: 'TESTFILE', source: job.source, transferId: 100_000 + i, articleSize: 65000 })
      paths.push(join(job.into, '..', 'inbox', `CXCLIENT_TESTFILE_${r.transferId}`))
    } else {
      const r = await pullFile({ ...o, file: 'OUTBOX', name: `each-${i}.bin`, destination: join(job.into, `each-${i}.bin`) })
      paths.push(r.path)
    }
    ok++
  } catch (err) {
    failed.push((err as Error).message)
  }
}))
console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000, ok, failed, paths }))
