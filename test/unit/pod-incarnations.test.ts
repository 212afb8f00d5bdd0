/** Which process of a pod a pod-watch report names (k8s/pod-watch.ts `IncarnationTracker`). */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { IncarnationTracker, type PodIncarnation } from '../../k8s/pod-watch.js'

function snap (incarnation: string | undefined, restartCount: number): PodIncarnation {
  return { name: 'vectis-1', uid: 'u1', terminating: false, containers: { vectisd: { restartCount } }, ...(incarnation !== undefined ? { incarnation } : {}) }
}

/** Feeds the snapshots in order; returns what each step reported. */
function run (...snaps: PodIncarnation[]): Array<{ dead: string[], unaccounted: boolean }> {
  const t = new IncarnationTracker()
  const out = []
  for (let i = 1; i < snaps.length; i++) {
    const before = snaps[i - 1]!
    const now = snaps[i]!
    out.push(t.diff(before, now, now.containers.vectisd!.restartCount - before.containers.vectisd!.restartCount))
  }
  return out
}

void test('a restart seen before the new process annotates reports the annotated process, once', () => {
  assert.deepEqual(run(snap('1-a', 0), snap('1-a', 1), snap('2-b', 1)), [
    { dead: ['1-a'], unaccounted: false },
    { dead: [], unaccounted: false }
  ])
})

void test('a new process that annotates before the kubelet reports its restart is never reported dead', () => {
  assert.deepEqual(run(snap('1-a', 0), snap('2-b', 0), snap('2-b', 1)), [
    { dead: ['1-a'], unaccounted: false },
    { dead: [], unaccounted: false }
  ], 'the restart is the death of 1-a, already reported')
  // Its own later death is reported.
  assert.deepEqual(run(snap('1-a', 0), snap('2-b', 0), snap('2-b', 1), snap('2-b', 2)).at(-1), { dead: ['2-b'], unaccounted: false })
})

void test('after a gap: the old annotation is reported, the new one is not, whatever the restart count', () => {
  assert.deepEqual(run(snap('1-a', 0), snap('3-c', 2)), [{ dead: ['1-a'], unaccounted: false }])
})

void test('a process that died without annotating leaves a report by pod name only', () => {
  assert.deepEqual(run(snap(undefined, 0), snap(undefined, 1)), [{ dead: [], unaccounted: true }])
  assert.deepEqual(run(snap('1-a', 0), snap('1-a', 1), snap('1-a', 2)), [
    { dead: ['1-a'], unaccounted: false },
    { dead: [], unaccounted: true }
  ], 'the second restart was a process that never annotated')
})
