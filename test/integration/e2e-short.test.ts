/**
 * The short form of `npm run bench:e2e` (bench/e2e.ts): one round each of kill -9 of the leader, SIGTERM of the
 * leader, kill -9 of a standby and (where network namespaces can be made) the leader cut off from the others, on a
 * 3-member dev cluster, with the client pushing and pulling through the load balancer. Nothing acknowledged lost or duplicated, every pull equal to its source, no overlapping leadership
 * intervals, no double label. (Its timings are the benchmark's business, not asserted here.)
 */
import { it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { NetnsLab } from '../../dev-cluster/netns.js'
import { ROOT } from '../helpers/daemon-process.js'

/** 10.235.0.0/24 when the members run in namespaces (other files use other subnets). */
const SUBNET = 235

interface E2e {
  pushesAcknowledged: number, lost: number, corrupted: number, duplicated: number, pullsOk: number, pullsDiffering: number,
  overlaps: number, labelConflicts: number, failures: string[], perFault: Record<string, { rounds: number }>
}

it('end to end through the load balancer: leader killed, leader stopped, standby killed, leader cut off: nothing acknowledged lost', async (t) => {
  const noNetns = NetnsLab.unavailable()
  if (noNetns !== undefined) t.diagnostic(`the cut-off round is skipped: ${noNetns} (as root: apt-get install iproute2 iptables)`)
  const faults = ['kill-leader', 'term-leader', 'kill-standby', ...(noNetns === undefined ? ['cut-leader'] : [])]
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', join(ROOT, 'common', 'polyfill.ts'), join(ROOT, 'bench', 'e2e.ts'),
    '--rounds', '1', '--faults', faults.join(','), '--base-ip', '127.0.72.10', '--netns-subnet', String(SUBNET),
    ...(noNetns !== undefined ? ['--no-netns'] : [])], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  // On a failure or a deadline: SIGTERM lets the benchmark stop its cluster; SIGKILL if it does not within 20 s.
  t.after(async () => {
    if (child.exitCode !== null) return
    child.kill('SIGTERM')
    const killer = setTimeout(() => { child.kill('SIGKILL') }, 20_000)
    await new Promise((resolve) => { child.once('close', resolve) })
    clearTimeout(killer)
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const code = await new Promise<number | null>((resolve) => { child.on('close', resolve) })
  const json = stdout.slice(0, stdout.indexOf('\n| fault'))
  let r: E2e
  try {
    r = JSON.parse(json) as E2e
  } catch {
    assert.fail(`no report (exit ${String(code)}): ${stdout.slice(-2000)} ${stderr.slice(-2000)}`)
  }
  assert.deepEqual(r.failures, [], stderr.slice(-2000))
  assert.equal(code, 0)
  for (const f of faults) assert.equal(r.perFault[f]?.rounds, 1, f)
  assert.ok(r.pushesAcknowledged > 0 && r.pullsOk > 0)
  assert.deepEqual([r.lost, r.corrupted, r.duplicated, r.pullsDiffering, r.overlaps, r.labelConflicts], [0, 0, 0, 0, 0, 0])
})
