import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadKubeConfig } from '../../k8s/env.js'
import { K8sConfigError } from '../../k8s/errors.js'

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
