/**
 * The transfers the cluster initiates across leader failures (issue 16's "Must show", short forms), each on a 3-member
 * dev cluster of this file's loopback range (127.0.87.x) whose partner is another `vectisd` behind a rate-capped relay:
 *
 * - fetches across a kill -9: six files fetched from the partner's send virtual file (half the requests made on a
 *   standby), the leader killed while fetches run with durable sync points; afterwards every row `completed`, each file
 *   once under the `into` file's pattern with its source's content, and each interrupted fetch restarted from (at
 *   least) the sync point its row had at the kill;
 * - a schedule every two seconds across a SIGTERM of the leader, then a kill -9 of the next one: every csv file dropped
 *   before, between and after the faults is queued once by one run, arrives once on the partner, and is moved to
 *   `sent/` (`afterSend: move:sent`) once its row is completed.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { bankYaml, leaderAmong, MEMBER_PESIT_PORT, startQueueCluster, type QueueRow } from '../helpers/queue-cluster.js'
import { waitFor } from '../helpers/wait.js'

/** Per connection: a 3 MiB file takes about 2 s, so a fault lands mid-transfer. */
const RELAY_BYTES_PER_S = 1536 * 1024
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
const clusterPartner = (relayPort: number, maxConnections: number): string => `partners:
  - id: BANK
    password: bank123
    host: 127.0.0.1
    port: ${relayPort}
    serverId: BANKSRV
    remotePassword: ours123
    maxConnections: ${maxConnections}
`

void test('queued fetches survive a kill -9 of the leader: each file once, whole, restarted from its last sync point', { timeout: 120_000 }, async (t) => {
  const FETCHES = 6
  const FILE_BYTES = 3 * 1024 * 1024 + 777
  const qc = await startQueueCluster(t, {
    baseIp: '127.0.87.10',
    relayBytesPerSecond: RELAY_BYTES_PER_S,
    partnerYaml: (port) => bankYaml(port, 'fetches'),
    clusterYaml: (relayPort) => `servers:
  - id: VECTIS
    port: ${MEMBER_PESIT_PORT}
${clusterPartner(relayPort, 4)}files:
  - id: FETCHED
    directory: fetched/\${partner}
`
  })
  const { dc, leader } = qc
  const outbox = join(qc.partnerShared, 'outbox')
  await mkdir(outbox, { recursive: true })
  const standby = [0, 1, 2].find((i) => i !== leader)!
  /** row id → the partner's file it fetches */
  const sources = new Map<string, { name: string, data: Buffer }>()
  for (let i = 0; i < FETCHES; i++) {
    const name = `s${i}.dat`
    const data = randomBytes(FILE_BYTES + i)
    await writeFile(join(outbox, name), data)
    const r = await qc.api(i % 2 === 0 ? leader : standby, 'POST', '/api/transfers', { direction: 'fetch', partner: 'BANK', file: 'PAYOUT', remoteName: name, into: 'FETCHED' })
    assert.equal(r.status, 202, JSON.stringify(r.json))
    sources.set(r.json.id as string, { name, data })
  }
  const rows = async (i: number): Promise<QueueRow[]> => (await qc.rows(i)).filter((r) => sources.has(r.id))

  // Killed while fetches run with sync points made durable here and acknowledged.
  let seen: QueueRow[] = []
  const atKill = await waitFor(async () => {
    seen = await rows(leader)
    return seen.some((r) => r.direction === 'receive' && r.status === 'in-progress' && r.syncPoint > 0) ? seen : undefined
  }, { timeoutMs: 60_000, intervalMs: 50, what: 'a queued fetch in progress with a sync point' }).catch(async (err: unknown) => {
    throw new Error(`${(err as Error).message}; rows: ${JSON.stringify(seen.map((r) => [r.id, r.status, r.syncPoint, r.attempts, r.diagnostic]))}; the leader's queue log:\n${await qc.lastLog(leader, ['transfer:queue'])}`)
  })
  assert.ok(dc.kill(leader))
  const interrupted = atKill.filter((r) => r.status === 'in-progress')
  t.diagnostic(`killed the leader with ${interrupted.length} fetches running, sync points ${interrupted.map((r) => r.syncPoint).join(', ')}`)
  // A kill that lands in a write of a fetch's restart state leaves that write's temporary (durable-fs.ts's name for
  // it): planted here for each interrupted fetch, since the kill lands there only now and then.
  for (const r of interrupted) await writeFile(join(dirname(r.filePath!), `..${basename(r.filePath!)}.vectis-fetch.00c0ffee0000.tmp`), '{"serverTransferId":')

  const survivors = [0, 1, 2].filter((i) => i !== leader)
  let last: QueueRow[] = []
  const done = await waitFor(async () => {
    last = await rows(survivors[0]!)
    return last.length === FETCHES && last.every((r) => r.status === 'completed') ? last : undefined
  }, { timeoutMs: 60_000, intervalMs: 200, what: 'every queued fetch completed after the failover' }).catch(async (err: unknown) => {
    const logs = (await Promise.all(survivors.map(async (i) => await qc.lastLog(i, ['transfer:queue'])))).join('\n')
    throw new Error(`${(err as Error).message}; rows: ${JSON.stringify(last.map((r) => [r.id, r.status, r.syncPoint, r.attempts, r.diagnostic]))}; the survivors' queue logs:\n${logs}`)
  })

  // Each file once, whole, under the into file's pattern with the row's PI 13; no partial or restart state left.
  const fetched = join(dc.sharedDir, 'fetched', 'BANK')
  for (const r of done) {
    const src = sources.get(r.id)!
    assert.equal(r.direction, 'receive')
    assert.equal(r.filePath, join(fetched, `BANK_FETCHED_${r.transferId}`), `${r.id} (${src.name}) under the pattern`)
    assert.equal(r.sha256, sha256(src.data), `${r.id} (${src.name}): the SHA-256 of its source`)
    assert.deepEqual(await readFile(r.filePath), src.data, `${r.id}: ${src.name} fetched whole`)
  }
  assert.deepEqual((await readdir(fetched)).sort(), done.map((r) => `BANK_FETCHED_${r.transferId}`).sort(),
    'one file per fetch, and no partial file or restart state left beside them')
  // Each fetch interrupted with a sync point restarted from it or later, not from the start.
  const resumed = new Map<string, number>()
  for (const l of await qc.logLines(survivors)) {
    if (l.msg === 'queued file fetched') resumed.set(l.transfer as string, l.resumedAt as number)
  }
  for (const r of interrupted.filter((x) => x.syncPoint > 0)) {
    assert.ok((resumed.get(r.id) ?? -1) >= r.syncOffset, `${r.id}: resumed at ${resumed.get(r.id)}, its row had sync offset ${r.syncOffset} at the kill`)
  }
  t.diagnostic(`resumed at: ${interrupted.map((r) => `${r.id} ${resumed.get(r.id)} ≥ ${r.syncOffset}`).join('; ')}`)
})

void test('a schedule every two seconds across a SIGTERM and a kill -9 of the leader: each file queued once, sent once, moved once sent', { timeout: 150_000 }, async (t) => {
  const SCHEDULE = 'OUT-BANK-PAYIN'
  const qc = await startQueueCluster(t, {
    baseIp: '127.0.87.20',
    relayBytesPerSecond: RELAY_BYTES_PER_S,
    partnerYaml: (port) => bankYaml(port, 'sends'),
    clusterYaml: (relayPort) => `servers:
  - id: VECTIS
    port: ${MEMBER_PESIT_PORT}
${clusterPartner(relayPort, 2)}files:
  - id: OUT
    direction: send
    directory: out
    afterSend: move:sent
schedules:
  - cron: "*/2 * * * * *"
    partner: BANK
    file: OUT
    pattern: "*.csv"
    remoteFile: PAYIN
`
  })
  const { dc } = qc
  const outbox = join(dc.sharedDir, 'out')
  const sentDir = join(dc.sharedDir, 'sent')
  const inbox = join(qc.partnerShared, 'inbox')
  await mkdir(outbox, { recursive: true })
  const dropped = new Map<string, Buffer>()
  /** Drops `n` csv files of 0.5 to 1.5 MiB as producers do: written under a hidden name, then renamed. */
  const drop = async (batch: string, n: number): Promise<string[]> => {
    const names: string[] = []
    for (let k = 0; k < n; k++) {
      const name = `${batch}-${k}.csv`
      const data = randomBytes(512 * 1024 + Math.floor(Math.random() * 1024 * 1024))
      await writeFile(join(outbox, `.${name}.writing`), data)
      await rename(join(outbox, `.${name}.writing`), join(outbox, name))
      dropped.set(name, data)
      names.push(name)
    }
    return names
  }
  const scheduled = async (i: number): Promise<QueueRow[]> => (await qc.rows(i)).filter((r) => r.request?.schedule?.id === SCHEDULE)
  /**
   * Waits until member i's journal has a send of one of `names` in progress, with an acknowledged sync point if
   * `synced` (or, seen late, one already done), and returns the rows of `names` then.
   */
  const sending = async (i: number, names: string[], synced: boolean, what: string): Promise<QueueRow[]> => await waitFor(async () => {
    const rs = (await scheduled(i)).filter((r) => names.includes(basename(r.filePath ?? '')))
    return rs.some((r) => (r.status === 'in-progress' && (!synced || r.syncPoint > 0)) || r.status === 'completed') ? rs : undefined
  }, { timeoutMs: 20_000, intervalMs: 50, what })
  const running = (rs: QueueRow[]): string => rs.filter((r) => r.status === 'in-progress').map((r) => `${basename(r.filePath!)} at sync point ${r.syncPoint}`).join(', ') || 'none'
  /** Polls member i until every dropped file is completed, on the partner, and out of the outbox. */
  const allSent = async (i: number, what: string): Promise<QueueRow[]> => {
    let last: QueueRow[] = []
    try {
      return await waitFor(async () => {
        last = await scheduled(i)
        const completed = last.filter((r) => r.status === 'completed').map((r) => basename(r.filePath ?? ''))
        const moved = await readdir(sentDir).catch(() => [] as string[])
        const left = (await readdir(outbox)).filter((n) => dropped.has(n))
        return [...dropped.keys()].every((n) => completed.includes(n) && moved.includes(n)) && left.length === 0 ? last : undefined
      }, { timeoutMs: 40_000, intervalMs: 200, what })
    } catch (err) {
      const logs = await qc.lastLog(i, ['transfer:queue', 'transfer:schedules'], 12)
      const states = last.map((r) => [basename(r.filePath ?? ''), r.status, r.attempts, r.diagnostic, r.request?.schedule?.at])
      throw new Error(`${(err as Error).message}; rows: ${JSON.stringify(states)}; outbox: ${(await readdir(outbox)).join(', ')}; member ${i}'s log:\n${logs}`)
    }
  }

  // Before any fault: an after-send action that did not happen (here sent/ is a file, so the moves fail; a leader that
  // dies right after completing a send leaves the same) is done by a later run, once it can be.
  const first = qc.leader
  await rm(sentDir, { recursive: true })
  await writeFile(sentDir, 'in the way')
  const b1 = await drop('b1', 3)
  await waitFor(async () => {
    const done = (await scheduled(first)).filter((r) => r.status === 'completed').map((r) => r.filePath)
    const failed = (await qc.logLines([first])).filter((l) => l.msg?.startsWith('after-send action failed') === true).map((l) => l.path)
    return b1.every((n) => done.includes(join(outbox, n)) && failed.includes(join(outbox, n)))
  }, { timeoutMs: 20_000, intervalMs: 100, what: 'the first batch sent, its moves failed' })
  await rm(sentDir)
  await mkdir(sentDir)
  await allSent(first, 'the first batch moved by a later run')

  // A SIGTERM of the leader while it sends the second batch: it hands over and stops.
  const b2 = await drop('b2', 3)
  const atTerm = await sending(first, b2, false, 'a file of the second batch being sent')
  process.kill(dc.snapshot()[first]!.pid!, 'SIGTERM')
  await waitFor(() => dc.snapshot()[first]!.state === 'exited', { timeoutMs: 20_000, intervalMs: 50, what: 'the SIGTERMed leader exited' })
  const second = await leaderAmong(qc, [0, 1, 2].filter((i) => i !== first))
  t.diagnostic(`SIGTERM of member ${first} sending ${running(atTerm)}, exit code ${dc.snapshot()[first]!.lastExit?.code}: member ${second} leads`)
  await drop('b3', 3)
  // Back before the next fault, so that two members of three stay after it.
  assert.ok(dc.restartNow(first))
  assert.equal(await leaderAmong(qc, [0, 1, 2], 40_000), second, 'the restarted member follows the leader')

  // A kill -9 of the next leader while it sends the fourth batch.
  const b4 = await drop('b4', 3)
  const atKill = await sending(second, b4, true, 'a file of the fourth batch being sent with a sync point')
  assert.ok(dc.kill(second))
  const alive = [0, 1, 2].filter((i) => i !== second)
  const third = await leaderAmong(qc, alive)
  t.diagnostic(`kill -9 of member ${second} sending ${running(atKill)}: member ${third} leads`)
  await drop('b5', 3)
  const rows = await allSent(third, 'every file sent and moved after the faults')

  // The journal: one row per file, each run time queueing a file at most once, every row completed.
  const perFile = new Map<string, QueueRow[]>()
  const perRun = new Map<string, string[]>()
  for (const r of rows) {
    const name = basename(r.filePath ?? '')
    assert.equal(r.filePath, join(outbox, name), `${r.id}: a file of the schedule's directory`)
    assert.ok(dropped.has(name), `${r.id}: ${name} is a dropped file`)
    perFile.set(name, [...perFile.get(name) ?? [], r])
    const at = r.request!.schedule!.at
    assert.equal(Date.parse(at) % 2000, 0, `${r.id}: the run's scheduled time, ${at}`)
    perRun.set(at, [...perRun.get(at) ?? [], name])
  }
  for (const [at, names] of perRun) assert.equal(new Set(names).size, names.length, `the run at ${at} queued a file twice: ${names.join(', ')}`)
  for (const name of dropped.keys()) {
    const rs = perFile.get(name) ?? []
    assert.equal(rs.length, 1, `${name}: queued once, not ${rs.length} times (${rs.map((r) => `${r.id} ${r.status} at ${r.request?.schedule?.at}`).join('; ')})`)
    assert.equal(rs[0]!.status, 'completed')
  }

  // The partner: each file once, whole. The outbox: every file moved to sent/ once, by whichever member, after its
  // row was completed (the logs' times and finishedAt are both the members' wall clocks, on one machine). A move's
  // line is logged just after its rename: the last one may still be coming.
  type Move = { node: string, at: string, to: unknown, late: boolean }
  let moves = new Map<string, Move[]>()
  await waitFor(async () => {
    moves = new Map()
    for (const l of await qc.logLines([0, 1, 2])) {
      if (l.msg !== 'after-send action done' || (l.component !== 'transfer:queue' && l.component !== 'transfer:schedules')) continue
      const name = basename(l.path as string)
      moves.set(name, [...moves.get(name) ?? [], { node: l.node as string, at: l.time as string, to: l.to, late: l.late === true }])
    }
    return [...dropped.keys()].every((n) => moves.has(n))
  }, { timeoutMs: 5_000, intervalMs: 100, what: 'the log line of every move' }).catch(() => {})
  const received = (await readdir(inbox)).filter((n) => !n.startsWith('.'))
  assert.equal(received.length, dropped.size, `one file on the partner per dropped file: ${received.join(', ')}`)
  assert.deepEqual((await readdir(outbox)).filter((n) => !n.startsWith('.')), [], 'nothing left in the outbox')
  assert.deepEqual((await readdir(sentDir)).sort(), [...dropped.keys()].sort(), 'every file in sent/ once, under its name')
  for (const [name, [r]] of perFile) {
    const data = dropped.get(name)!
    assert.equal(r!.sha256, sha256(data), `${name}: the SHA-256 sent`)
    assert.deepEqual(await readFile(join(inbox, `VECTIS_PAYIN_${r!.transferId}`)), data, `${name} on the partner under its PI 13, whole`)
    assert.deepEqual(await readFile(join(sentDir, name)), data, `${name} moved whole`)
    const m = moves.get(name) ?? []
    assert.equal(m.length, 1, `${name}: moved once: ${JSON.stringify(m)}`)
    assert.equal(m[0]!.to, join(sentDir, name))
    assert.ok(Date.parse(m[0]!.at) >= Date.parse(r!.finishedAt!), `${name} moved at ${m[0]!.at}, before its row completed at ${r!.finishedAt}`)
  }
  // A send the kill -9 cut after a sync point was restarted from it or later.
  const resumed = new Map<string, number>()
  for (const l of await qc.logLines([0, 1, 2])) if (l.msg === 'queued file sent') resumed.set(l.transfer as string, l.resumedAt as number)
  for (const r of atKill.filter((x) => x.status === 'in-progress' && x.syncPoint > 0)) {
    assert.ok((resumed.get(r.id) ?? -1) >= r.syncOffset, `${basename(r.filePath!)}: resumed at ${resumed.get(r.id)}, its row had sync offset ${r.syncOffset} at the kill`)
  }
  const attempts = rows.filter((r) => r.attempts > 1).map((r) => `${basename(r.filePath!)} ${r.attempts}`)
  const catchUps = (await qc.logLines([0, 1, 2])).filter((l) => l.msg === 'schedule on' && l.catchUp !== undefined).map((l) => l.catchUp as string)
  const late = [...moves].filter(([, m]) => m[0]!.late).map(([name]) => name)
  t.diagnostic(`${dropped.size} files in ${perRun.size} runs; retried: ${attempts.join(', ') || 'none'}; moved late by a run: ${late.join(', ') || 'none'}; runs caught up as leaderships started: ${catchUps.join(', ')}`)
})
