// Five real daemons in network namespaces (10.233.0.0/24): a 3|2 partition that drops packets, then its heal.
// Skipped, saying why, where namespaces cannot be created.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ClusterHarness } from '../helpers/cluster-harness.js'
import { NetnsLab } from '../../dev-cluster/netns.js'

const SUBNET = 233

void test('a 3|2 partition leaves the majority in one view; after the heal all five are in one view again', async (t) => {
  const reason = NetnsLab.unavailable()
  if (reason !== undefined) { t.skip(reason); return }
  const lab = await NetnsLab.create(t, { subnet: SUBNET, hosts: 5 })
  const h = await ClusterHarness.create(t, { nodes: 5, netns: lab })
  /** Each running member's view as member names, by member index ('' when it does not answer). */
  const views = async (): Promise<string[]> => {
    const all = await h.statusAll()
    return h.members.map((m) => {
      const s = all.get(m.index)
      return s === undefined || s instanceof Error ? '' : (s.members as Array<{ name: string }>).map((x) => x.name).sort().join(',')
    })
  }
  const everyone = h.members.map((m) => m.name).sort().join(',')
  await h.startAll()
  await h.waitFor(async () => (await views()).every((v) => v === everyone), { timeoutMs: 60_000, intervalMs: 100, what: 'one view of five after the cold start' })

  await lab.partition([[0, 1, 2], [3, 4]])
  const majority = 'vectis-0,vectis-1,vectis-2'
  await h.waitFor(async () => (await views()).slice(0, 3).every((v) => v === majority), { timeoutMs: 60_000, intervalMs: 100, what: 'the majority side in one view of three' })
  await h.waitFor(async () => (await views()).slice(3).every((v) => v !== '' && !v.includes('vectis-0')), { timeoutMs: 60_000, intervalMs: 100, what: 'the minority side excluding the majority' })
  assert.ok((await views()).slice(0, 3).every((v) => v === majority), 'the majority view held meanwhile')

  await lab.heal()
  await h.waitFor(async () => (await views()).every((v) => v === everyone), { timeoutMs: 60_000, intervalMs: 100, what: 'one view of five after the heal' })
})
