import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  applyJsonPatch, applyMergePatch, applyStrategicMergePatch, parsePointer, escapePointerToken, PatchApplyError, PatchFormatError, type Json
} from '../../dev-cluster/patch-apply.js'

const pod = (): Json => ({ metadata: { name: 'p', labels: { app: 'vectis' }, annotations: { 'vectis.io/fenced-epoch': '3' }, resourceVersion: '7' }, list: [1, 2, 3] })

void test('JSON pointer escaping (RFC 6901)', () => {
  assert.deepEqual(parsePointer('/metadata/annotations/vectis.io~1epoch'), ['metadata', 'annotations', 'vectis.io/epoch'])
  assert.deepEqual(parsePointer('/a~0b~01'), ['a~b~1'])
  assert.equal(escapePointerToken('a/b~c'), 'a~1b~0c')
  assert.throws(() => parsePointer('metadata'), PatchApplyError)
})

void test('JSON patch: test, add, remove, replace, move, copy; all or nothing', () => {
  const before = pod()
  const out = applyJsonPatch(before, [
    { op: 'test', path: '/metadata/resourceVersion', value: '7' },
    { op: 'test', path: '/metadata/annotations/vectis.io~1fenced-epoch', value: '3' },
    { op: 'add', path: '/metadata/labels/vectis-leader', value: 'true' },
    { op: 'add', path: '/metadata/annotations/vectis.io~1epoch', value: '4' },
    { op: 'replace', path: '/metadata/name', value: 'q' },
    { op: 'remove', path: '/list/0' },
    { op: 'add', path: '/list/-', value: 9 },
    { op: 'copy', from: '/metadata/name', path: '/copied' },
    { op: 'move', from: '/copied', path: '/moved' }
  ]) as { metadata: { labels: Record<string, string>, annotations: Record<string, string>, name: string }, list: number[], moved: string, copied?: string }
  assert.equal(out.metadata.labels['vectis-leader'], 'true')
  assert.equal(out.metadata.annotations['vectis.io/epoch'], '4')
  assert.equal(out.metadata.name, 'q')
  assert.deepEqual(out.list, [2, 3, 9])
  assert.equal(out.moved, 'q')
  assert.equal(out.copied, undefined)
  assert.deepEqual(before, pod(), 'the input is not modified')

  // A failing test anywhere cancels the whole patch.
  assert.throws(() => applyJsonPatch(before, [
    { op: 'add', path: '/metadata/labels/x', value: 'y' },
    { op: 'test', path: '/metadata/annotations/vectis.io~1fenced-epoch', value: '4' }
  ]), PatchApplyError)
  assert.throws(() => applyJsonPatch(before, [{ op: 'test', path: '/metadata/annotations/missing', value: '1' }]), PatchApplyError)
  assert.throws(() => applyJsonPatch(before, [{ op: 'remove', path: '/metadata/labels/missing' }]), PatchApplyError)
  assert.throws(() => applyJsonPatch(before, [{ op: 'add', path: '/nothere/x', value: 1 }]), PatchApplyError)
  assert.throws(() => applyJsonPatch(before, [{ op: 'replace', path: '/metadata/nothere', value: 1 }]), PatchApplyError)
  assert.throws(() => applyJsonPatch(before, { op: 'add' }), PatchFormatError)
  assert.throws(() => applyJsonPatch(before, [{ op: 'frobnicate', path: '/a' }]), PatchFormatError)
  assert.throws(() => applyJsonPatch(before, [{ op: 'add', path: '/a' }]), PatchFormatError)
})

void test('merge patch (RFC 7386): null removes, objects merge, the rest replaces', () => {
  const out = applyMergePatch(pod(), { metadata: { labels: { 'vectis-leader': null, tier: 'a' }, annotations: { 'vectis.io/fenced-epoch': '5' } }, list: [7] }) as
    { metadata: { labels: Record<string, string>, annotations: Record<string, string>, name: string }, list: number[] }
  assert.deepEqual(out.metadata.labels, { app: 'vectis', tier: 'a' })
  assert.equal(out.metadata.annotations['vectis.io/fenced-epoch'], '5')
  assert.equal(out.metadata.name, 'p')
  assert.deepEqual(out.list, [7])
  assert.deepEqual(applyMergePatch({ a: 1 }, { b: { c: null } }), { a: 1, b: {} })
})

void test('strategic merge patch behaves like a merge patch for metadata and refuses directives it does not emulate', () => {
  const out = applyStrategicMergePatch(pod(), { metadata: { labels: { 'vectis-leader': 'true' } } }) as { metadata: { labels: Record<string, string> } }
  assert.deepEqual(out.metadata.labels, { app: 'vectis', 'vectis-leader': 'true' })
  assert.throws(() => applyStrategicMergePatch(pod(), { metadata: { $patch: 'replace' } }), PatchFormatError)
  assert.throws(() => applyStrategicMergePatch(pod(), [1]), PatchFormatError)
})
