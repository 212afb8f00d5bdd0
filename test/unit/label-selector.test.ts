import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseLabelSelector, matchesSelector, labelKeyError, labelValueError, LabelSelectorError } from '../../k8s/label-selector.js'

const m = (sel: string, labels: Record<string, string>): boolean => matchesSelector(parseLabelSelector(sel), labels)

void test('equality, inequality, set-based and existence requirements', () => {
  assert.equal(m('app=vectis', { app: 'vectis' }), true)
  assert.equal(m('app==vectis', { app: 'vectis' }), true)
  assert.equal(m('app=vectis', { app: 'other' }), false)
  assert.equal(m('app=vectis', {}), false)
  assert.equal(m('app!=vectis', {}), true, '!= matches objects without the label, as in Kubernetes')
  assert.equal(m('app!=vectis', { app: 'vectis' }), false)
  assert.equal(m('tier in (a, b)', { tier: 'b' }), true)
  assert.equal(m('tier in (a,b)', { tier: 'c' }), false)
  assert.equal(m('tier in (a,b)', {}), false)
  assert.equal(m('tier notin (a,b)', {}), true)
  assert.equal(m('tier notin (a,b)', { tier: 'a' }), false)
  assert.equal(m('vectis-leader', { 'vectis-leader': 'true' }), true)
  assert.equal(m('!vectis-leader', { 'vectis-leader': 'true' }), false)
  assert.equal(m('!vectis-leader', {}), true)
  assert.equal(m('app=vectis,vectis-leader=true', { app: 'vectis', 'vectis-leader': 'true' }), true)
  assert.equal(m('app=vectis, tier in (a,b), !x', { app: 'vectis', tier: 'a' }), true)
  assert.equal(m('example.com/role=db', { 'example.com/role': 'db' }), true)
  assert.equal(m('', { anything: 'x' }), true)
})

void test('malformed selectors and keys are refused with the reason', () => {
  for (const bad of ['app=', 'app==', '=x', 'a in ()', 'a in (x', 'a b', ',', 'app=vectis,', 'bad key=x', '-a=b', 'a=-b', `a=${'x'.repeat(64)}`]) {
    if (bad === 'app=' || bad === 'app==') {
      // An empty value is legal in Kubernetes (`app=` selects app with an empty value).
      assert.doesNotThrow(() => parseLabelSelector(bad))
      continue
    }
    assert.throws(() => parseLabelSelector(bad), LabelSelectorError, bad)
  }
  assert.equal(labelKeyError('vectis.io/epoch'), undefined)
  assert.match(labelKeyError('Vectis.IO/epoch') ?? '', /prefix/)
  assert.match(labelKeyError(`${'a'.repeat(64)}`) ?? '', /1-63/)
  assert.equal(labelValueError(''), undefined)
  assert.match(labelValueError('true!') ?? '', /63/)
})
