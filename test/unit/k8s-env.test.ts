import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { k8sEnabled, loadKubeConfig, createK8sLabelMetrics } from '../../cluster/k8s-env.js'
import { K8sConfigError } from '../../cluster/k8s-errors.js'

void test('VECTIS_K8S: on, off, auto (pod or KUBECONFIG), anything else refused naming the variable', () => {
  assert.equal(k8sEnabled({ VECTIS_K8S: 'on' }, () => false), true)
  assert.equal(k8sEnabled({ VECTIS_K8S: 'off', KUBECONFIG: '/x' }, () => true), false)
  assert.equal(k8sEnabled({}, () => false), false)
  assert.equal(k8sEnabled({}, () => true), true)
  assert.equal(k8sEnabled({ KUBECONFIG: '/x' }, () => false), true)
  assert.throws(() => k8sEnabled({ VECTIS_K8S: 'yes' }, () => false), (e: unknown) => e instanceof K8sConfigError && /VECTIS_K8S/.test(e.message))
})

void test('KUBECONFIG is loaded; a missing or empty one is a configuration error', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vectis-kc-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'config')
  writeFileSync(file, [
    'apiVersion: v1', 'kind: Config', 'current-context: c',
    'clusters: [{name: k, cluster: {server: "http://127.0.0.1:6443", insecure-skip-tls-verify: true}}]',
    'users: [{name: u, user: {token: t}}]', 'contexts: [{name: c, context: {cluster: k, user: u, namespace: ns}}]'
  ].join('\n'))
  const saved = process.env.KUBECONFIG
  process.env.KUBECONFIG = file
  t.after(() => { if (saved === undefined) delete process.env.KUBECONFIG; else process.env.KUBECONFIG = saved })
  const kc = loadKubeConfig({ KUBECONFIG: file }, () => false)
  assert.equal(kc.getCurrentCluster()?.server, 'http://127.0.0.1:6443')
  assert.throws(() => loadKubeConfig({}, () => false), K8sConfigError)
})

void test('label metrics carry the SPEC names', async () => {
  const registry = new Registry()
  const m = createK8sLabelMetrics(registry)
  m.labelErrorsTotal.inc()
  m.labelsInSync.set(1)
  const text = await registry.metrics()
  assert.match(text, /^vectis_k8s_label_errors_total 1$/m)
  assert.match(text, /^vectis_k8s_labels_in_sync 1$/m)
})
