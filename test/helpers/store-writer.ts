/**
 * A process that writes the journal in a loop, for the kill -9 test (test/integration/store-crash.test.ts).
 * Usage: store-writer.ts <dataDir> [member] [--wait]
 *
 * With --wait it loads everything, prints `loaded` and waits for a line on stdin before touching the database,
 * so a test can start the next writer while the previous one is still running (module loading dominates a short
 * round) without two processes ever writing at once.
 *
 * stdout protocol, one line each, written synchronously (Linux pipes) and only AFTER the commit returned:
 *   loaded             (--wait only) modules loaded, waiting for stdin
 *   opening            about to open (and possibly create or migrate) the database
 *   ready <lastSeq>    open; the highest seq already in the log
 *   epoch <n>          a new epoch was raised and committed
 *   seq <n> <id> <syncPoint> <status>   a journal change was committed with sequence number n
 * It runs until killed, or stops by itself after a bounded number of changes or seconds.
 */
import { silentLogger } from '../../common/logger.js'
import { Store } from '../../store/store.js'

const args = process.argv.slice(2)
const wait = args.includes('--wait')
const [dataDir, member = 'vectis-0'] = args.filter((a) => a !== '--wait')
if (dataDir === undefined) {
  console.error('usage: store-writer.ts <dataDir> [member] [--wait]')
  process.exit(2)
}

const MAX_CHANGES = 100_000
const MAX_MS = 30_000
const SHA = 'c0'.repeat(32)

function out (line: string): void {
  process.stdout.write(line + '\n')
}

if (wait) {
  out('loaded')
  await new Promise<void>((resolve) => {
    process.stdin.once('data', () => { process.stdin.pause(); resolve() })
    process.stdin.once('end', () => { process.exit(3) }) // the test went away without starting us
  })
}
out('opening')
const store = new Store({ logger: silentLogger() }, { dataDir })
await store.start()
const j = store.journal
out(`ready ${j.lastSeq()}`)
const epoch = store.clusterState.raiseEpoch(member).number
out(`epoch ${epoch}`)

const started = Date.now()
let changes = 0
const emit = (r: { seq: number, id: string, syncPoint: number, status: string }): void => {
  out(`seq ${r.seq} ${r.id} ${r.syncPoint} ${r.status}`)
  changes++
}
while (changes < MAX_CHANGES && Date.now() - started < MAX_MS) {
  const t = j.begin({ epoch, member, server: 'PESITSRV', partner: 'CXCLIENT', virtualFile: 'PAYMENTS', direction: 'receive' })
  emit(t)
  for (let s = 1; s <= 4; s++) emit(j.recordSyncPoint(t.id, { syncPoint: s, offset: s * 65536 }))
  emit(changes % 3 === 0 ? j.interrupt(t.id, 'IDT') : j.complete(t.id, { bytes: 5 * 65536, sha256: SHA }))
}
await store.stop()
