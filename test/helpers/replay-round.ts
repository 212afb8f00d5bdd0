/**
 * One round of "the leader dies between the rename of a received file and its ACK(TRANS.END)": a push through the
 * leader (whose members run with VECTIS_FAULT_INJECTION=kill-after-rename) kills it at that point; the round
 * checks the window was hit (SIGKILL, the injection's line), restarts the push on the new leader with
 * `vectis send --restart`, and counts the copies of the file delivered. The killed member is started again.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
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

export async function killedAfterRenameRound (h: ClusterHarness, o: { dir: string, payload: string, round: number }): Promise<RoundResult> {
  const members = h.members.map((m) => m.index)
  await h.waitViewCommitted(members)
  const leader = await h.waitFor(async () => await h.servingLeader(members), { timeoutMs: 60_000, what: 'a leader serving PeSIT' })
  const stateDir = join(o.dir, `state-${o.round}`)
  const send = (host: string, restart: boolean): ReturnType<typeof spawnSync> => spawnSync(process.execPath, [join(ROOT, 'dist', 'bin', 'vectis.js'), 'send',
    '--host', host, '--port', String(PESIT_PORT), '--partner', 'CXCLIENT', '--password', 'test123', '--server', 'PESITSRV', '--file', 'PAYMENTS',
    '--sync-kb', '64', '--quiet', '--state-dir', stateDir, '--timeout-ms', '20000', ...(restart ? ['--restart'] : []), o.payload], { encoding: 'utf8', timeout: 60_000 })

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
  const listed = (await h.http(next, '/api/transfers?limit=1000')).body as { transfers: Array<{ transferId: number, status: string }> }
  assert.deepEqual(listed.transfers.filter((x) => x.transferId === transferId).map((x) => x.status), ['completed'])
  const want = createHash('sha256').update(readFileSync(o.payload)).digest('hex')
  const inbox = join(o.dir, 'shared', 'inbox')
  const copies = readdirSync(inbox).filter((n) => !n.startsWith('.'))
    .filter((n) => createHash('sha256').update(readFileSync(join(inbox, n))).digest('hex') === want).length
  await h.start(leader)
  return { copies, takeoverMs }
}
