// Joint quorums of dynamic voting and the merge rank, table-driven.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { jointQuorum } from '../../cluster/membership/quorum.js'
import { rankCompare } from '../../cluster/membership/view.js'
import { memberKey, type ConfigRef, type MemberInfo, type ViewSummary } from '../../cluster/messages.js'

const m = (n: string): MemberInfo => ({ name: n, peerId: `p-${n}`, incarnation: 'i', address: `${n}:1` })
const cfg = (counter: number, ...names: string[]): ConfigRef => ({ id: { coordinator: names[0]!, counter }, members: names.map(m) })
const keys = (...names: string[]): Set<string> => new Set(names.map(n => memberKey(m(n))))

// `gone`: discounted for having left (or died promised to the counting leader); `dead`: discounted for having died.
const cases: Array<{ name: string, configs: ConfigRef[], acks: string[], gone?: string[], dead?: string[], bootstrap?: boolean, size?: number, ok: boolean }> = [
  { name: 'majority of one configuration', configs: [cfg(1, 'a', 'b', 'c')], acks: ['a', 'b'], ok: true },
  { name: 'half is not a majority', configs: [cfg(1, 'a', 'b', 'c', 'd')], acks: ['a', 'b'], ok: false },
  { name: 'joint: majority of the old but not of the new', configs: [cfg(1, 'a', 'b', 'c'), cfg(2, 'a', 'b', 'c', 'd', 'e')], acks: ['a', 'b'], ok: false },
  { name: 'joint: majorities of both', configs: [cfg(1, 'a', 'b', 'c'), cfg(2, 'a', 'b', 'c', 'd', 'e')], acks: ['a', 'b', 'd'], ok: true },
  { name: 'gone members do not count', configs: [cfg(1, 'a', 'b', 'c')], acks: ['a'], gone: ['b', 'c'], ok: true },
  { name: 'gone members shrink the base, not the need', configs: [cfg(1, 'a', 'b', 'c', 'd', 'e')], acks: ['a', 'b'], gone: ['e'], ok: false },
  { name: 'bootstrap: a majority of the cluster size', configs: [cfg(1, 'a', 'b')], acks: ['a', 'b'], bootstrap: true, size: 5, ok: false },
  { name: 'bootstrap met', configs: [cfg(1, 'a', 'b', 'c')], acks: ['a', 'b', 'c'], bootstrap: true, size: 5, ok: true },
  { name: 'every member of a configuration gone: back to the cluster size', configs: [cfg(1, 'x', 'y'), cfg(2, 'a', 'b')], acks: ['a', 'b'], gone: ['x', 'y'], size: 3, ok: true },
  { name: 'every member gone and too few for the cluster size', configs: [cfg(1, 'x', 'y'), cfg(2, 'a')], acks: ['a'], gone: ['x', 'y'], size: 3, ok: false },
  { name: 'one member dead: the rest of the configuration decides', configs: [cfg(1, 'a', 'b', 'c')], acks: ['a', 'b'], dead: ['c'], ok: true },
  { name: 'one member dead: half of the rest is not a majority', configs: [cfg(1, 'a', 'b', 'c', 'd', 'e')], acks: ['a', 'b'], dead: ['e'], size: 5, ok: false },
  { name: 'two members dead: the survivor alone is no quorum', configs: [cfg(1, 'a', 'b', 'c')], acks: ['a'], dead: ['b', 'c'], ok: false },
  { name: 'two members dead: the survivor and a returning member make the cluster-size majority', configs: [cfg(1, 'a', 'b', 'c'), cfg(2, 'a', 'd')], acks: ['a', 'd'], dead: ['b', 'c'], ok: true },
  { name: 'two members dead: the cluster-size majority does not replace the configuration\'s own', configs: [cfg(1, 'a', 'b', 'c', 'd', 'e'), cfg(2, 'a', 'f', 'g')], acks: ['a', 'f', 'g'], dead: ['d', 'e'], size: 5, ok: false },
  { name: 'one dead and one left: the configuration decides alone', configs: [cfg(1, 'a', 'b', 'c')], acks: ['a'], gone: ['b'], dead: ['c'], ok: true },
  { name: 'every member dead: back to the cluster size', configs: [cfg(1, 'x', 'y'), cfg(2, 'a', 'b')], acks: ['a', 'b'], dead: ['x', 'y'], size: 3, ok: true }
]
for (const c of cases) {
  void test(`quorum: ${c.name}`, () => {
    const gone = keys(...(c.gone ?? []))
    const dead = keys(...(c.dead ?? []))
    assert.equal(jointQuorum(c.configs, keys(...c.acks), {
      clusterSize: c.size ?? 3,
      bootstrap: c.bootstrap ?? false,
      discounted: (k) => gone.has(k) || dead.has(k),
      discountedAsDead: (k) => dead.has(k)
    }), c.ok)
  })
}

const s = (leading: boolean, committedCounter: number, ...names: string[]): ViewSummary => ({
  leading, committedCounter, maxCounter: 0, view: { id: { coordinator: names[0]!, counter: 1 }, members: names.map(m), epoch: { number: 1, leader: names[0]! } }
})
const ranks: Array<{ name: string, a: ViewSummary, b: ViewSummary, aWins: boolean }> = [
  { name: 'a view with a leader absorbs a bigger one without', a: s(true, 3, 'z'), b: s(false, 9, 'a', 'b', 'c'), aWins: true },
  { name: 'then the newest committed primary view', a: s(false, 4, 'z'), b: s(false, 3, 'a', 'b'), aWins: true },
  { name: 'then the bigger view', a: s(false, 3, 'z', 'y'), b: s(false, 3, 'a'), aWins: true },
  { name: 'then the lowest coordinator name', a: s(false, 3, 'a'), b: s(false, 3, 'b'), aWins: true }
]
for (const r of ranks) {
  void test(`merge rank: ${r.name}`, () => {
    assert.equal(rankCompare(r.a, r.b) > 0, r.aWins)
    assert.equal(rankCompare(r.b, r.a) > 0, !r.aWins)
  })
}
