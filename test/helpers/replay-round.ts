/**
 * One round of "the leader dies between the rename of a received file and its ACK(TRANS.END)": a push through the
 * leader (whose members run with VECTIS_FAULT_INJECTION=kill-after-rename) kills it at that point; the round
 * checks the window was hit (SIGKILL, the injection's line), restarts the push on the new leader with
 * `vectis send --restart`, and counts the copies of the file delivered. The killed member is started again.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ClusterHarness } from './cluster-harness.js'
import { ROOT } from './daemon-process.js'

const PESIT_PORT = 5000

export interface RoundResult {
  /** files of the partner in the inbox with the payload's content */
  copies: number
  /** from the kill to the new leader serving, ms */
  takeoverMs: number
}

/** The configuration of these tests: PESITSRV on PESIT_PORT with sync points every 64 KB, partner CXCLIENT, PAYMENTS. */
export function writeReplayConfig (dir: string): string {
  const path = join(dir, 'vectis.yaml')
  writeFileSync(path, `servers:\n  - id: PESITSRV\n    port: ${PESIT_PORT}\n    syncIntervalKb: 64\npartners:\n  - id: CXCLIENT\n    password: test123\n    access: write\n` +
    'files:\n  - id: PAYMENTS\n    directory: inbox\n    filenamePattern: \'${partner}_${transferId}\'\n')
  return path
}

/** `vectis send` of `payload` to PAYMENTS on `host` (a process of its own), sync points every 64 KB. */
export function vectisSend (o: { host: string, payload: string, stateDir: string, restart: boolean, timeoutMs: number }): ReturnType<typeof spawnSync> {
  return spawnSync(process.execPath, [join(ROOT, 'dist', 'bin', 'vectis.js'), 'send',
    '--host', o.host, '--port', String(PESIT_PORT), '--partner', 'CXCLIENT', '--password', 'test123', '--server', 'PESITSRV', '--file', 'PAYMENTS',
    '--sync-kb', '64', '--quiet', '--state-dir', o.stateDir, '--timeout-ms', String(o.timeoutMs), ...(o.restart ? ['--restart'] : []), o.payload],
  { encoding: 'utf8', timeout: 60_000 })
}

export async function killedAfterRenameRound (h: ClusterHarness, o: { dir: string, payload: string, round: number }): Promise<RoundResult> {
  const members = h.members.map((m) => m.index)
  await h.waitViewCommitted(members)
  const leader = await h.waitFor(async () => await h.servingLeader(members), { timeoutMs: 60_000, what: 'a leader serving PeSIT' })
  const stateDir = join(o.dir, `state-${o.round}`)
  const send = (host: string, restart: boolean): ReturnType<typeof spawnSync> => vectisSend({ host, payload: o.payload, stateDir, restart, timeoutMs: 20_000 })

  const first = send(h.member(leader).ip, false)
  assert.equal(first.status, 1, `the push must fail with the leader: ${String(first.stdout)} ${String(first.stderr)}`)
  const exit = await h.member(leader).waitExit(15_000)
  const killedAt = Date.now()
  assert.equal(exit.signal, 'SIGKILL', 'the leader died by the injected kill')
  assert.match(h.member(leader).stderr, /fault injection: kill-after-rename/, 'the window between the rename and ACK(TRANS.END) was hit')
  const alive = members.filter((i) => i !== leader)
  const next = await h.waitFor(async () => await h.servingLeader(alive), { timeoutMs: 60_000, what: 'a new leader serving PeSIT' })
  const takeoverMs = Date.now() - killedAt

  const again = send(h.member(next).ip, true)
  assert.equal(again.status, 0, `vectis send --restart: ${String(again.stdout)} ${String(again.stderr)}`)
  // The journal row of the delivery, left unfinished by the killed leader, is completed by the confirmation.
  const transferId = Number(/transfer id (\d+)/.exec(String(again.stdout))?.[1])
  assert.deepEqual((await h.transfers(next)).filter((x) => x.transferId === transferId).map((x) => x.status), ['completed'])
  const want = createHash('sha256').update(readFileSync(o.payload)).digest('hex')
  const inbox = join(o.dir, 'shared', 'inbox')
  const copies = readdirSync(inbox).filter((n) => !n.startsWith('.'))
    .filter((n) => createHash('sha256').update(readFileSync(join(inbox, n))).digest('hex') === want).length
  await h.start(leader)
  return { copies, takeoverMs }
}
