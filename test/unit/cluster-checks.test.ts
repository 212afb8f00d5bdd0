// The split check of the multi-process tests (test/helpers/cluster-checks.ts findSplit): two groups, each a view held
// by its coordinator and another member, that exclude each other are a split; a view its coordinator installed first,
// and a member left on a view whose coordinator has moved on, are a view change in progress.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { findSplit, VIEW_INSTALLED } from '../helpers/cluster-checks.js'
import type { ClusterHarness } from '../helpers/cluster-harness.js'

const NAMES = ['vectis-0', 'vectis-1', 'vectis-2', 'vectis-3']
function harness (installs: Array<[member: number, coordinator: string, counter: number, members: string[]]>): ClusterHarness {
  return {
    members: NAMES.map((name, index) => ({ name, index })),
    timeline: installs.map(([member, coordinator, counter, members], k) => ({ member, atNs: BigInt(k), line: { msg: VIEW_INSTALLED, viewId: { coordinator, counter }, members } }))
  } as unknown as ClusterHarness
}

void test('two groups, each held by its coordinator and another member, that exclude each other: a split, from the moment both are groups', () => {
  const h = harness([
    [0, 'vectis-0', 1, ['vectis-0', 'vectis-1']],
    [1, 'vectis-0', 1, ['vectis-0', 'vectis-1']],
    [2, 'vectis-2', 2, ['vectis-2', 'vectis-3']],
    [3, 'vectis-2', 2, ['vectis-2', 'vectis-3']]
  ])
  assert.match(findSplit(h) ?? '', /at timeline line 3: vectis-0 holds .* while vectis-2 holds/)
})

void test('a member left on a view whose coordinator moved to another view is not a split (seen under load)', () => {
  const h = harness([
    [0, 'vectis-0', 13, ['vectis-0', 'vectis-1']],
    [1, 'vectis-0', 13, ['vectis-0', 'vectis-1']],
    [2, 'vectis-2', 14, ['vectis-2', 'vectis-0']],
    [0, 'vectis-2', 14, ['vectis-2', 'vectis-0']],
    [1, 'vectis-2', 15, ['vectis-2', 'vectis-0', 'vectis-1']]
  ])
  assert.equal(findSplit(h), undefined)
})
