/**
 * Runs the store's durable operations between markers on stdout, for test/integration/store-fsync.test.ts, which
 * runs it under strace and checks that each operation fsynced the WAL before it returned.
 * Usage: store-fsync-probe.ts <dataDir>
 */
import { silentLogger } from '../../common/logger.js'
import { Store } from '../../store/store.js'

const dataDir = process.argv[2]
if (dataDir === undefined) {
  console.error('usage: store-fsync-probe.ts <dataDir>')
  process.exit(2)
}

function around<T> (label: string, fn: () => T): T {
  process.stdout.write(`before ${label}\n`)
  const r = fn()
  process.stdout.write(`after ${label}\n`)
  return r
}

const store = new Store({ logger: silentLogger() }, { dataDir })
await store.start()
const epoch = around('raiseEpoch', () => store.clusterState.raiseEpoch('vectis-0')).number
around('nextViewCounter', () => store.clusterState.nextViewCounter())
const t = around('begin', () => store.journal.begin({ epoch, member: 'vectis-0', server: 'PESITSRV', partner: 'CXCLIENT',
  virtualFile: 'PAYMENTS', direction: 'receive' }))
for (let s = 1; s <= 5; s++) around(`syncPoint-${s}`, () => store.journal.recordSyncPoint(t.id, { syncPoint: s, offset: s * 4096 }))
around('complete', () => store.journal.complete(t.id, { bytes: 5 * 4096, sha256: 'ab'.repeat(32) }))
await store.stop()
