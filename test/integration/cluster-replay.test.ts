/**
 * Exactly once at the end of a push, with real processes: the leader is killed (SIGKILL, fault injection) after the
 * rename of a received file and before its ACK(TRANS.END); `vectis send --restart` to the new leader ends with exit
 * 0 and the directory holds the file once, intact. `npm run bench:replay` runs the same for many rounds.
 */
import { it } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { ClusterHarness } from '../helpers/cluster-harness.js'
import { ROOT } from '../helpers/daemon-process.js'
import { killedAfterRenameRound } from '../helpers/replay-round.js'

const SUBNET = 64

it('a leader killed between the rename and ACK(TRANS.END): vectis send --restart on the new leader delivers the file exactly once', async (t) => {
  const dir = join(ROOT, '.tmp', `cluster-replay-${process.pid}`)
  mkdirSync(dir, { recursive: true })
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  writeFileSync(join(dir, 'payload.bin'), randomBytes(300 * 1024))
  const h = await ClusterHarness.create(t, {
    nodes: 3, subnet: SUBNET,
    env: { VECTIS_CONFIG: writeConfig(dir), VECTIS_SHARED_DIR: join(dir, 'shared'), VECTIS_FAULT_INJECTION: 'kill-after-rename' }
  })
  await h.startAll()
  const r = await killedAfterRenameRound(h, { dir, payload: join(dir, 'payload.bin'), round: 1 })
  assert.equal(r.copies, 1)
})

function writeConfig (dir: string): string {
  const path = join(dir, 'vectis.yaml')
  writeFileSync(path, 'servers:\n  - id: PESITSRV\n    port: 5000\n    syncIntervalKb: 64\npartners:\n  - id: CXCLIENT\n    password: test123\n    access: write\n' +
    'files:\n  - id: PAYMENTS\n    directory: inbox\n    filenamePattern: \'${partner}_${transferId}\'\n')
  return path
}
