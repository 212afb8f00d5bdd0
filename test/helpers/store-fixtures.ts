import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { ManualClock } from './manual-clock.js'
import { silentLogger } from '../../common/logger.js'
import { Store, type StoreInit } from '../../store/store.js'
import type { BeginTransfer } from '../../store/journal.js'

/** A fresh data directory, removed when the test ends. */
export function tempDataDir (t: TestContext, prefix = 'vectis-store-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

/** A started store on `dir` with a manual clock; stopped when the test ends. */
export async function startStore (t: TestContext, dir: string, init: Partial<StoreInit> = {},
  clock = new ManualClock()): Promise<{ store: Store, clock: ManualClock }> {
  const store = new Store({ logger: silentLogger(), clock }, { dataDir: dir, ...init })
  await store.start()
  t.after(async () => { await store.stop() })
  return { store, clock }
}

export function transfer (epoch: number, over: Partial<BeginTransfer> = {}): BeginTransfer {
  return { epoch, member: 'vectis-0', server: 'PESITSRV', partner: 'CXCLIENT', virtualFile: 'PAYMENTS', direction: 'receive', ...over }
}
