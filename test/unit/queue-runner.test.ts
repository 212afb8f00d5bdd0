// The leader's runner of the transfer queue (transfer/queue-runner.ts), against a fake journal: a partner whose
// connections are all in use is not read again and again (the runner does not spin), and one busy partner does not
// hold up another's rows; an attempt that ends without recording its end is put back in the queue.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { silentLogger } from '../../common/logger.js'
import { TypedEmitter } from '../../common/typed-events.js'
import type { LeadershipEvents } from '../../cluster/leadership-api.js'
import type { TransferRecord } from '../../store/journal-records.js'
import { QueueRunner, type QueueJournal } from '../../transfer/queue-runner.js'
import type { PesitPartnerConfig } from '../../transfer/config-types.js'
import { NodeDurableFs } from '../../store/durable-fs.js'
import { waitFor } from '../helpers/wait.js'

const partner = (id: string, maxConnections: number): PesitPartnerConfig => ({
  id, password: 'x', access: 'both', outbound: { host: '127.0.0.1', port: 1, serverId: 'SRV', localId: 'ME', password: 'pw', maxConnections }
})
const row = (id: string, p: string, over: Partial<TransferRecord> = {}): TransferRecord => ({
  id, transferId: 1, server: 'SRV', partner: p, virtualFile: 'F', direction: 'send', status: 'queued', bytes: 0, syncPoint: 0, syncOffset: 0,
  sha256: null, filePath: '/nonexistent/file', source: null, diagnostic: null, member: 'm', epoch: 1, createdAt: new Date(0).toISOString(),
  updatedAt: new Date(0).toISOString(), finishedAt: null, seq: 1, initiator: 'cluster', request: { priority: 1 }, attempts: 0, nextAttemptAt: new Date(0).toISOString(), ...over
})

function fakeJournal (rows: TransferRecord[]): QueueJournal & { dueCalls: number, writes: string[] } {
  const byId = new Map(rows.map((r) => [r.id, r]))
  const j = {
    dueCalls: 0,
    writes: [] as string[],
    due: (_now: number, _limit: number, skip: readonly string[] = []) => { j.dueCalls++; return [...byId.values()].filter((r) => r.status === 'queued' && !skip.includes(r.partner)) },
    nextDueAt: (skip: readonly string[] = []) => [...byId.values()].some((r) => r.status === 'queued' && !skip.includes(r.partner)) ? 0 : undefined,
    running: () => [],
    get: (id: string) => byId.get(id),
    start: (id: string) => { j.writes.push(`start ${id}`); const r = { ...byId.get(id)!, status: 'in-progress' as const }; byId.set(id, r); return r },
    retryLater: (id: string, why: { diagnostic: string, at: number }) => { j.writes.push(`retry ${id}`); const r = { ...byId.get(id)!, status: 'queued' as const, diagnostic: why.diagnostic, nextAttemptAt: new Date(8.64e15).toISOString() }; byId.set(id, r); return r },
    unconfirmed: () => { throw new Error('unexpected') },
    recordSyncPoint: () => { throw new Error('unexpected') },
    agreed: () => { throw new Error('unexpected') },
    forgetRestart: () => { throw new Error('unexpected') },
    complete: () => { throw new Error('unexpected') },
    fail: (id: string, d: string) => { j.writes.push(`fail ${id}`); const r = { ...byId.get(id)!, status: 'failed' as const, diagnostic: d }; byId.set(id, r); return r }
  }
  return j
}

void test('a busy partner is not read again and again, and does not hold up another partner', async (t) => {
  const events = new TypedEmitter<LeadershipEvents>()
  // BUSY's one connection is taken by an attempt that waits for durability forever; FREE's row fails at once (its
  // file does not exist), which the fake records.
  const j = fakeJournal([row('b1', 'BUSY'), row('b2', 'BUSY'), row('b3', 'BUSY'), row('f1', 'FREE')])
  let release: (() => void) | undefined
  const runner = new QueueRunner({
    logger: silentLogger(),
    leadership: { isLeader: () => true, currentEpoch: () => ({ number: 1, leader: 'm' }), events },
    journal: () => j,
    partners: new Map([['BUSY', partner('BUSY', 1)], ['FREE', partner('FREE', 1)]]),
    files: new Map(),
    fs: new NodeDurableFs(),
    durable: async (seq) => { if (seq === 1 && release === undefined) await new Promise<void>((resolve) => { release = resolve }) }
  }, { member: 'm' })
  t.after(async () => { release?.(); await runner.stop() })
  await runner.start()
  await waitFor(() => j.writes.includes('fail f1'), { what: 'the free partner\'s row tried despite the busy one' })
  const calls = j.dueCalls
  // Half a second with BUSY's connection taken: the old runner re-read the due rows about every millisecond.
  const until = Date.now() + 500
  await waitFor(() => Date.now() >= until, { timeoutMs: 2000, intervalMs: 50, what: 'half a second' })
  assert.ok(j.dueCalls - calls <= 2, `the due rows were read ${j.dueCalls - calls} times more while the only partner with rows was busy`)
  assert.ok(!j.writes.includes('start b2') && !j.writes.includes('start b3'), 'the busy partner\'s other rows wait')
})
