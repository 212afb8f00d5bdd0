// The schedules' runs (transfer/schedule-runner.ts): which files a run takes, which sends in the journal keep a file
// from being queued again, and the run a new leader owes each schedule (missed runs coalesced, a recorded run
// completed). Runs against a real journal, with an injected wall clock and a fake leadership; the cron expressions
// are chosen so that no real tick comes during a test (and one that did would be skipped as a time already run).
import { describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { silentLogger } from '../../common/logger.js'
import { TypedEmitter } from '../../common/typed-events.js'
import type { LeadershipEvents } from '../../cluster/leadership-api.js'
import type { Store } from '../../store/store.js'
import type { PesitFileConfig, PesitPartnerConfig, ScheduleConfig } from '../../transfer/config-types.js'
import { QUEUED_ARTICLE_SIZE, QUEUED_ARTICLES_PER_SYNC } from '../../transfer/queued-send.js'
import { blockingSend, catchUpOf, latestDue, patternMatcher, ScheduleRunner } from '../../transfer/schedule-runner.js'
import { startStore, tempDataDir } from '../helpers/store-fixtures.js'

const MIN = 60_000
const DAY = 24 * 60 * MIN
const T0 = Date.UTC(2026, 2, 10) // a midnight, UTC

describe('what a run takes and what it leaves', () => {
  it('patterns: * any characters, ? exactly one, everything else literally', () => {
    const csv = patternMatcher('*.csv')
    assert.deepEqual(['a.csv', '.csv', 'a.b.csv', 'a.csvx', 'a.CSV', 'acsv'].filter(csv), ['a.csv', '.csv', 'a.b.csv'])
    const one = patternMatcher('day-??.txt')
    assert.deepEqual(['day-01.txt', 'day-1.txt', 'day-001.txt', 'day-é1.txt'].filter(one), ['day-01.txt', 'day-é1.txt'])
    const literal = patternMatcher('a+b(1)^$|.{x}')
    assert.ok(literal('a+b(1)^$|.{x}'))
    assert.ok(!literal('aab(1)^$|x{x}'))
    assert.ok(patternMatcher('*')('anything at all'))
  })

  it('a live send blocks its path whatever its identity; a final one only with the same identity; an unknown identity never', () => {
    const id = '10:1:7'
    for (const status of ['queued', 'in-progress', 'interrupted'] as const) {
      assert.ok(blockingSend([{ status, source: null }], id), status)
      assert.ok(blockingSend([{ status, source: '99:9:9' }], id), `${status} of another identity`)
    }
    for (const status of ['completed', 'failed', 'cancelled', 'unconfirmed'] as const) {
      assert.ok(blockingSend([{ status, source: id }], id), `${status} of the same identity`)
      assert.equal(blockingSend([{ status, source: '11:2:7' }], id), undefined, `${status} of another identity: the file changed`)
      assert.equal(blockingSend([{ status, source: null }], id), undefined, `${status} without an identity`)
    }
    assert.equal(blockingSend([], id), undefined)
  })

  it('the latest due time, in the schedule\'s time zone; the run a new leader owes', () => {
    const daily = { cron: '0 2 * * *', timezone: 'Europe/Paris' }
    // 02:00 in Paris is 01:00 UTC in March before the change of time.
    assert.equal(latestDue(daily, Date.UTC(2026, 2, 10, 12)), Date.UTC(2026, 2, 10, 1))
    assert.equal(latestDue(daily, Date.UTC(2026, 2, 10, 1)), Date.UTC(2026, 2, 10, 1), 'a time that is now is due')
    assert.equal(latestDue(daily, Date.UTC(2026, 2, 10, 1) - 1), Date.UTC(2026, 2, 9, 1))
    const secs = { cron: '*/2 * * * * *', timezone: 'UTC' }
    assert.equal(latestDue(secs, T0 + 5_500), T0 + 4_000)
    const now = Date.UTC(2026, 2, 10, 12)
    const due = Date.UTC(2026, 2, 10, 1)
    assert.deepEqual(catchUpOf(daily, now, undefined), { at: due, completing: false }, 'never recorded: the latest due time')
    assert.deepEqual(catchUpOf(daily, now, new Date(due - 3 * DAY).toISOString()), { at: due, completing: false }, 'three missed runs: one, the latest')
    assert.deepEqual(catchUpOf(daily, now, new Date(due).toISOString()), { at: due, completing: true }, 'the latest recorded: completed')
    assert.equal(catchUpOf(daily, now, new Date(due + DAY).toISOString()), undefined, 'a later run recorded (a clock behind): nothing')
  })
})

interface Rig {
  store: Store
  dir: string
  runner: ScheduleRunner
  events: TypedEmitter<LeadershipEvents>
  lead: (yes: boolean) => void
  setNow: (ms: number) => void
  wakes: () => number
  drop: (name: string, mtimeMs: number, content?: string) => string
}

/** A runner over a real journal, for one schedule `OUT-BANK-PAYIN` (`*.csv` of OUT's directory to BANK's PAYIN). */
async function rig (t: TestContext, schedule: Partial<ScheduleConfig> = {}): Promise<Rig> {
  const { store } = await startStore(t, tempDataDir(t))
  const dir = join(tempDataDir(t, 'vectis-sched-'), 'out', 'BANK')
  mkdirSync(dir, { recursive: true })
  const events = new TypedEmitter<LeadershipEvents>()
  let leader = false
  let now = T0
  let wakes = 0
  const partner: PesitPartnerConfig = {
    id: 'BANK', password: 'bank123', access: 'both',
    outbound: { host: '127.0.0.1', port: 5000, serverId: 'BANKSRV', localId: 'VECTIS', password: 'ours123', maxConnections: 2 }
  }
  const file: PesitFileConfig = { id: 'OUT', direction: 'send', directory: join(dir, '..', '${partner}'), filenamePattern: '${file}', afterSend: { action: 'keep' } }
  const s: ScheduleConfig = { id: 'OUT-BANK-PAYIN', cron: '0 0 * * *', timezone: 'UTC', direction: 'send', partner: 'BANK', file: 'OUT', pattern: '*.csv', remoteFile: 'PAYIN', ...schedule }
  const runner = new ScheduleRunner({
    logger: silentLogger(),
    leadership: { events, isLeader: () => leader, currentEpoch: () => ({ number: 7, leader: 'vectis-0' }) },
    journal: () => store.journal.queue,
    queued: () => { wakes++ }
  }, { member: 'vectis-0', schedules: [s], files: new Map([['OUT', file]]), partners: new Map([['BANK', partner]]), now: () => now })
  await runner.start()
  t.after(async () => { await runner.stop() })
  return {
    store,
    dir,
    runner,
    events,
    lead: (yes) => {
      leader = yes
      if (yes) events.emit('leader:elected', { epoch: { number: 7, leader: 'vectis-0' }, signal: new AbortController().signal })
      else events.emit('leader:demoted', { epoch: { number: 7, leader: 'vectis-0' }, reason: 'lease-expired' })
    },
    setNow: (ms) => { now = ms },
    wakes: () => wakes,
    drop: (name, mtimeMs, content = name) => {
      const p = join(dir, name)
      writeFileSync(p, content)
      utimesSync(p, mtimeMs / 1000, mtimeMs / 1000)
      return p
    }
  }
}

describe('a schedule\'s runs against the journal', () => {
  it('a run queues the matching files oldest first, each once; a later run queues only what is new or changed', async (t) => {
    const r = await rig(t)
    const c = r.drop('c.csv', T0 - 1000)
    const a = r.drop('a.csv', T0 - 3000)
    const b = r.drop('b.csv', T0 - 2000)
    for (const name of ['.hidden.csv', 'x.csv.tmp', 'y.csv.part', 'z.txt']) r.drop(name, T0 - 4000)
    mkdirSync(join(r.dir, 'sub.csv'))
    assert.equal(await r.runner.run('OUT-BANK-PAYIN', T0), undefined, 'not the leader: no run')
    r.setNow(T0 + 5 * MIN)
    r.lead(true)
    await r.runner.settled()
    const rows = r.store.journal.list({ limit: 100 }).filter((x) => x.initiator === 'cluster').sort((x, y) => x.createdAt.localeCompare(y.createdAt) || x.transferId - y.transferId)
    assert.deepEqual(rows.map((x) => x.filePath), [a, b, c], 'the catch-up run of the election: oldest first, no hidden, temporary, other or directory names')
    const first = rows[0]!
    assert.deepEqual([first.status, first.partner, first.server, first.virtualFile, first.direction, first.epoch, first.member], ['queued', 'BANK', 'BANKSRV', 'PAYIN', 'send', 7, 'vectis-0'])
    assert.deepEqual(first.request, {
      priority: 1, articleSize: QUEUED_ARTICLE_SIZE, articlesPerSync: QUEUED_ARTICLES_PER_SYNC,
      schedule: { id: 'OUT-BANK-PAYIN', at: new Date(T0).toISOString() }, localFile: 'OUT'
    })
    assert.equal(first.source, `5:${T0 - 3000}:${statSync(a).ino}`, 'the identity the file had when queued')
    assert.equal(r.wakes(), 1)

    // The next day's run: all three queued or running already; a new file is queued.
    const q = r.store.journal.queue
    q.start(rows[0]!.id, { member: 'vectis-0', epoch: 7, source: rows[0]!.source! })
    r.store.journal.complete(rows[0]!.id, { bytes: 5, sha256: 'c'.repeat(64) })
    q.start(rows[1]!.id, { member: 'vectis-0', epoch: 7, source: rows[1]!.source! })
    const d = r.drop('d.csv', T0 + DAY - 1000)
    const run2 = await r.runner.run('OUT-BANK-PAYIN', T0 + DAY)
    assert.deepEqual(run2?.queued.map((x) => x.filePath), [d])
    assert.deepEqual([run2?.matched, run2?.alreadyQueued, run2?.finished], [4, 3, true])
    assert.equal(await r.runner.run('OUT-BANK-PAYIN', T0 + DAY), undefined, 'a time this leadership ran is not run again')

    // a.csv rewritten (a new identity) after it was sent is sent again; b.csv failed for good, c.csv cancelled: not
    // retried while they are the same files; c.csv replaced is.
    r.drop('a.csv', T0 + DAY + 1000, 'a, second version')
    r.store.journal.fail(rows[1]!.id, 'D2-205: unknown file')
    q.cancel(rows[2]!.id, 'not today')
    const run3 = await r.runner.run('OUT-BANK-PAYIN', T0 + 2 * DAY)
    assert.deepEqual(run3?.queued.map((x) => x.filePath), [a])
    assert.equal(run3?.alreadyQueued, 3)
    r.drop('c.csv', T0 + 2 * DAY + 1000, 'c, second version')
    const run4 = await r.runner.run('OUT-BANK-PAYIN', T0 + 3 * DAY)
    assert.deepEqual(run4?.queued.map((x) => x.filePath), [c])
    const run5 = await r.runner.run('OUT-BANK-PAYIN', T0 + 4 * DAY)
    assert.deepEqual([run5?.queued.length, run5?.alreadyQueued], [0, 4], 'nothing new: nothing queued')
    assert.equal(r.wakes(), 4, 'the runner is woken by the runs that queued something only')
  })

  it('a new leader runs the missed runs once, for the latest due time; a recorded run is completed with the files it had', async (t) => {
    const r = await rig(t)
    const ats = (): string[] => [...new Set(r.store.journal.list({ limit: 100 }).flatMap((x) => x.request?.schedule?.at ?? []))].sort()

    // First leadership, at T0 + 1 h: the midnight run.
    r.drop('a.csv', T0 - 1000)
    r.setNow(T0 + 60 * MIN)
    r.lead(true)
    await r.runner.settled()
    assert.deepEqual(ats(), [new Date(T0).toISOString()])
    r.lead(false)
    assert.equal(await r.runner.run('OUT-BANK-PAYIN', T0 + DAY), undefined, 'demoted: no run')

    // Three days without a leader; files arrive. The next leadership runs once, for the latest midnight.
    const b = r.drop('b.csv', T0 + DAY + 1000)
    const c = r.drop('c.csv', T0 + 2 * DAY + 1000)
    r.setNow(T0 + 3 * DAY + 30 * MIN)
    r.lead(true)
    await r.runner.settled()
    assert.deepEqual(ats(), [new Date(T0).toISOString(), new Date(T0 + 3 * DAY).toISOString()], 'one run for the three missed, at the latest time')
    const latest = r.store.journal.list({ limit: 100 }).filter((x) => x.request?.schedule?.at === new Date(T0 + 3 * DAY).toISOString())
    assert.deepEqual(latest.map((x) => x.filePath).sort(), [b, c])
    r.lead(false)

    // The run of T0 + 3 days is recorded. Say only part of it reached the next leader (one row lost with its
    // predecessor): the next leadership completes that run with a file it had (d.csv, older than it), not with a file
    // that arrived after it (e.csv: for the next run).
    const d = r.drop('d.csv', T0 + 3 * DAY - 1000)
    r.drop('e.csv', T0 + 3 * DAY + 40 * MIN)
    r.setNow(T0 + 3 * DAY + 50 * MIN)
    r.lead(true)
    await r.runner.settled()
    const completed = r.store.journal.list({ limit: 100 }).filter((x) => x.request?.schedule?.at === new Date(T0 + 3 * DAY).toISOString())
    assert.deepEqual(completed.map((x) => x.filePath).sort(), [b, c, d])
    assert.equal(r.store.journal.list({ limit: 100 }).length, 4)
  })

  it('a run that finds nothing leaves no row; a lost lease stops a run before it writes', async (t) => {
    const r = await rig(t)
    r.setNow(T0 + MIN)
    r.lead(true)
    await r.runner.settled()
    assert.equal(r.store.journal.list({ limit: 10 }).length, 0, 'an empty directory: no row records the run')
    assert.equal(r.store.journal.queue.lastScheduledRun('OUT-BANK-PAYIN'), undefined)
    r.drop('a.csv', T0 + 2 * MIN)
    r.store.journal.setLeaderCheck(() => false)
    const lost = await r.runner.run('OUT-BANK-PAYIN', T0 + DAY)
    assert.deepEqual([lost?.queued.length, lost?.finished], [0, false], 'the journal refused the write: the run stopped')
    assert.equal(r.store.journal.list({ limit: 10 }).length, 0)
    r.store.journal.setLeaderCheck(undefined)
    const next = await r.runner.run('OUT-BANK-PAYIN', T0 + 2 * DAY)
    assert.equal(next?.queued.length, 1, 'the next run takes it')
  })
})
