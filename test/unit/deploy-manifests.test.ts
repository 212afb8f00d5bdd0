// Renders every overlay of deploy/ with `kubectl kustomize`, validates every object against the Kubernetes schemas
// (kubernetes-models; the two Prometheus Operator CRDs by shape), and checks that the manifests agree with the
// daemon: ports, probe paths, the pod selector and leader label, env wiring, volumes and the Secret.
// The rendered objects are untyped YAML walked by path; the schema validation is what vouches for their shape.
/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-return, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-explicit-any */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments, parse as parseYaml } from 'yaml'
import { DEFAULT_LEADER_LABEL, DEFAULT_POD_SELECTOR } from '../../k8s/defaults.js'
import { equalityLabels, matchesSelector, parseLabelSelector } from '../../k8s/label-selector.js'
import { parsePesitConfig } from '../../daemon/config.js'
import { validatePesitConfig } from '../../transfer/config-types.js'
import { Metrics } from '../../daemon/metrics.js'

const root = fileURLToPath(new URL('../..', import.meta.url))

// The daemon's defaults (docs/contract.md §2.2, §3.1, §5.1): the manifests must use the same numbers and paths.
// 5001 is the manifests' own choice for PeSIT over TLS (components/tls configures the listener on it).
const DEFAULTS = { clusterPort: 7800, httpPort: 8080, pesitPort: 5000, pesitTlsPort: 5001, healthz: '/healthz', readyz: '/readyz', handoverDrainMs: 3000 }
// The metrics docs/contract.md §4 defines: alert expressions may only use these (plus kube-state-metrics' replicas).
// Every metric the daemon exports (its registry, without the process defaults): what the alerts may use.
const METRICS = (await new Metrics({ defaultMetrics: false }).registry.getMetricsAsJSON()).map((m) => m.name)

type Obj = { apiVersion: string, kind: string, metadata: { name: string, namespace?: string, labels?: Record<string, string> }, [k: string]: any }

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' })
const skip = kubectl.error !== undefined || kubectl.status !== 0 ? 'kubectl is not installed: cannot render deploy/overlays with `kubectl kustomize`' : false

function render (overlay: string): Obj[] {
  const r = spawnSync('kubectl', ['kustomize', `deploy/overlays/${overlay}`], { cwd: root, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 })
  assert.equal(r.status, 0, `kubectl kustomize deploy/overlays/${overlay} failed: ${r.stderr}`)
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj).filter((o) => o !== null)
}

async function validateSchema (o: Obj): Promise<void> {
  if (o.apiVersion === 'monitoring.coreos.com/v1') { validateCrdShape(o); return }
  // kubernetes-models layout: `<group>/<version>/<Kind>`, the core group as `v1/<Kind>`.
  const mod = await import(`kubernetes-models/${o.apiVersion}/${o.kind}`) as Record<string, new (d: unknown) => { validate(): void }>
  const Model = mod[o.kind]
  assert.ok(Model !== undefined, `no schema for ${o.apiVersion} ${o.kind}`)
  try {
    new Model(o).validate()
  } catch (err) {
    assert.fail(`${o.kind}/${o.metadata.name} does not validate: ${(err as Error).message}`)
  }
}

function validateCrdShape (o: Obj): void {
  assert.equal(typeof o.metadata?.name, 'string')
  if (o.kind === 'ServiceMonitor') {
    assert.equal(typeof o.spec?.selector?.matchLabels, 'object', 'ServiceMonitor.spec.selector.matchLabels')
    assert.ok(Array.isArray(o.spec.endpoints) && o.spec.endpoints.length > 0, 'ServiceMonitor.spec.endpoints')
    for (const e of o.spec.endpoints) {
      assert.equal(typeof e.port, 'string', 'endpoint port is a named port')
      if (e.interval !== undefined) assert.match(e.interval, /^\d+(ms|s|m|h)$/)
    }
    return
  }
  assert.equal(o.kind, 'PrometheusRule', `unexpected CRD kind ${o.kind}`)
  assert.ok(Array.isArray(o.spec?.groups) && o.spec.groups.length > 0, 'PrometheusRule.spec.groups')
  for (const g of o.spec.groups) {
    assert.equal(typeof g.name, 'string')
    for (const r of g.rules) {
      assert.ok(typeof r.alert === 'string' || typeof r.record === 'string', 'rule has alert or record')
      assert.equal(typeof r.expr, 'string')
      if (r.for !== undefined) assert.match(r.for, /^\d+(ms|s|m|h)$/)
      const used = String(r.expr).match(/\b(vectis_[a-z_]+)\b/g) ?? []
      for (const m of used) assert.ok(METRICS.includes(m), `alert ${String(r.alert)} uses unknown metric ${m}`)
      assert.equal(typeof r.labels?.severity, 'string', `alert ${String(r.alert)} has a severity`)
      assert.equal(typeof r.annotations?.summary, 'string', `alert ${String(r.alert)} has a summary`)
    }
  }
}

function one (objs: Obj[], kind: string, pred: (o: Obj) => boolean = () => true): Obj {
  const found = objs.filter((o) => o.kind === kind && pred(o))
  assert.equal(found.length, 1, `exactly one ${kind}`)
  return found[0]!
}

function envOf (container: Obj): Map<string, { value?: string, valueFrom?: any, index: number }> {
  return new Map((container.env as Array<{ name: string, value?: string, valueFrom?: unknown }>).map((e, index) => [e.name, { ...e, index }]))
}

const overlays = readdirSync(`${root}/deploy/overlays`)

void test('deploy/overlays: dev and production exist', () => {
  assert.deepEqual(overlays.sort(), ['dev', 'production'])
})

for (const overlay of overlays) {
  void test(`deploy/overlays/${overlay}: every object validates and agrees with the daemon`, { skip }, async () => {
    const objs = render(overlay)
    for (const o of objs) await validateSchema(o)

    const expectedReplicas = overlay === 'production' ? 3 : 1
    const sts = one(objs, 'StatefulSet')
    const ns = sts.metadata.namespace
    assert.ok(ns !== undefined && objs.every((o) => o.kind === 'Namespace' || o.metadata.namespace === ns), 'one namespace for everything')
    assert.equal(sts.spec.replicas, expectedReplicas)
    assert.equal(sts.spec.podManagementPolicy, 'Parallel')
    const podLabels = sts.spec.template.metadata.labels as Record<string, string>
    const selectorReqs = parseLabelSelector(DEFAULT_POD_SELECTOR)
    assert.ok(matchesSelector(selectorReqs, podLabels), `pod labels match VECTIS_POD_SELECTOR default ${DEFAULT_POD_SELECTOR}`)
    assert.equal(podLabels[DEFAULT_LEADER_LABEL], undefined, 'the leader label is the daemon\'s to set, never the template\'s')
    assert.ok(matchesSelector(parseLabelSelector(Object.entries(sts.spec.selector.matchLabels as Record<string, string>).map(([k, v]) => `${k}=${v}`).join(',')), podLabels))

    const pod = sts.spec.template.spec
    const c = pod.containers.find((x: Obj) => x.name === 'vectisd') as Obj
    assert.ok(c !== undefined, 'container vectisd')
    const ports = new Map((c.ports as Array<{ name: string, containerPort: number }>).map((p) => [p.name, p.containerPort]))
    assert.deepEqual(Object.fromEntries(ports), { cluster: DEFAULTS.clusterPort, http: DEFAULTS.httpPort, pesit: DEFAULTS.pesitPort, 'pesit-tls': DEFAULTS.pesitTlsPort })
    // With TLS (production) the HTTP port serves HTTPS, and the probes follow.
    const tls = overlay === 'production'
    const scheme = tls ? { scheme: 'HTTPS' } : {}
    assert.deepEqual(c.startupProbe.httpGet, { path: DEFAULTS.healthz, port: 'http', ...scheme })
    assert.deepEqual(c.livenessProbe.httpGet, { path: DEFAULTS.healthz, port: 'http', ...scheme })
    assert.deepEqual(c.readinessProbe.httpGet, { path: DEFAULTS.readyz, port: 'http', ...scheme })
    assert.ok(pod.terminationGracePeriodSeconds * 1000 > DEFAULTS.handoverDrainMs + 10_000, 'grace period covers the hand-over')

    const env = envOf(c)
    assert.equal(env.get('POD_NAME')?.valueFrom?.fieldRef?.fieldPath, 'metadata.name')
    assert.equal(env.get('POD_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace')
    assert.equal(env.get('POD_IP')?.valueFrom?.fieldRef?.fieldPath, 'status.podIP')
    assert.equal(env.get('VECTIS_CLUSTER_SIZE')?.value, String(expectedReplicas), 'VECTIS_CLUSTER_SIZE = replicas')
    assert.equal(env.get('VECTIS_CLUSTER_ENABLED')?.value, 'true')
    assert.equal(env.get('VECTIS_CLUSTER_PORT')?.value, String(DEFAULTS.clusterPort))
    assert.equal(env.get('VECTIS_HTTP_PORT')?.value, String(DEFAULTS.httpPort))
    assert.equal(env.get('VECTIS_POD_SELECTOR')?.value, DEFAULT_POD_SELECTOR)
    assert.equal(env.get('VECTIS_LEADER_LABEL')?.value, DEFAULT_LEADER_LABEL)
    assert.equal(env.get('VECTIS_K8S')?.value, 'on')

    // Discovery: the headless Service of the StatefulSet, publishing not-ready pods.
    const headless = one(objs, 'Service', (s) => s.spec.clusterIP === 'None')
    assert.equal(sts.spec.serviceName, headless.metadata.name)
    assert.equal(headless.spec.publishNotReadyAddresses, true)
    assert.ok(matchesSelector(parseLabelSelector(Object.entries(headless.spec.selector as Record<string, string>).map(([k, v]) => `${k}=${v}`).join(',')), podLabels))
    assert.ok(headless.spec.ports.some((p: Obj) => p.port === DEFAULTS.clusterPort && p.targetPort === 'cluster'))
    const dns = env.get('VECTIS_DISCOVERY_DNS')
    assert.equal(dns?.value, `${headless.metadata.name}.$(POD_NAMESPACE).svc.cluster.local`)
    assert.ok(dns.index > env.get('POD_NAMESPACE')!.index, '$(POD_NAMESPACE) is defined before it is used')

    // Traffic: only the labelled pod, partners' addresses kept.
    const lb = one(objs, 'Service', (s) => s.spec.type === 'LoadBalancer')
    assert.deepEqual(lb.spec.selector, { ...equalitySelector(), [DEFAULT_LEADER_LABEL]: 'true' })
    assert.equal(lb.spec.externalTrafficPolicy, 'Local')
    assert.deepEqual(lb.spec.ports.map((p: Obj) => [p.port, p.targetPort]), [[DEFAULTS.pesitPort, 'pesit'], [DEFAULTS.pesitTlsPort, 'pesit-tls']])

    // RBAC: exactly what the label controller and the pod watch use, bound to the pods' ServiceAccount.
    const role = one(objs, 'Role')
    const podRule = role.rules.find((r: Obj) => r.resources.includes('pods') && r.apiGroups.includes(''))
    assert.deepEqual([...podRule.verbs].sort(), ['get', 'list', 'patch', 'watch'])
    const binding = one(objs, 'RoleBinding')
    assert.equal(binding.roleRef.name, role.metadata.name)
    assert.ok(binding.subjects.some((s: Obj) => s.kind === 'ServiceAccount' && s.name === pod.serviceAccountName))
    one(objs, 'ServiceAccount', (s) => s.metadata.name === pod.serviceAccountName)

    // Security context.
    assert.equal(pod.securityContext.runAsNonRoot, true)
    assert.equal(c.securityContext.readOnlyRootFilesystem, true)
    assert.equal(c.securityContext.allowPrivilegeEscalation, false)
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'])
    assert.ok(c.resources.requests.cpu !== undefined && c.resources.limits.memory !== undefined)

    // Volumes: per-pod data, shared transfer directory, config, required Secret behind the _FILE variables.
    const mounts = new Map((c.volumeMounts as Array<{ name: string, mountPath: string }>).map((m) => [m.name, m.mountPath]))
    const claimTemplate = sts.spec.volumeClaimTemplates[0]
    assert.equal(mounts.get(claimTemplate.metadata.name), env.get('VECTIS_DATA_DIR')?.value, 'VECTIS_DATA_DIR on the per-pod claim')
    const sharedVol = pod.volumes.find((v: Obj) => v.persistentVolumeClaim !== undefined)
    assert.equal(mounts.get(sharedVol.name), env.get('VECTIS_SHARED_DIR')?.value, 'VECTIS_SHARED_DIR on the shared claim')
    const sharedPvc = one(objs, 'PersistentVolumeClaim', (p) => p.metadata.name === sharedVol.persistentVolumeClaim.claimName)
    if (expectedReplicas > 1) assert.deepEqual(sharedPvc.spec.accessModes, ['ReadWriteMany'], 'several replicas need RWX for restarts across failover')
    const cfgVol = pod.volumes.find((v: Obj) => v.configMap !== undefined)
    const cm = one(objs, 'ConfigMap', (m) => m.metadata.name === cfgVol.configMap.name)
    const cfgPath = env.get('VECTIS_CONFIG')?.value ?? ''
    assert.equal(cfgPath, `${mounts.get(cfgVol.name)}/vectis.yaml`)
    const cfg = parseYaml(cm.data['vectis.yaml'] as string) as { servers: Array<{ id: string, port: number, tls?: Record<string, string> }>, partners: Array<{ passwordFile?: string, password?: string }> }
    assert.deepEqual(cfg.servers.map((s) => [s.port, s.tls !== undefined]), tls ? [[DEFAULTS.pesitPort, false], [DEFAULTS.pesitTlsPort, true]] : [[DEFAULTS.pesitPort, false]],
      'the PeSIT server listens on the pesit port, and over TLS on the pesit-tls port')
    // What the daemon will read: its own parser accepts it (files are not read here).
    validatePesitConfig(parsePesitConfig(cfg, env.get('VECTIS_SHARED_DIR')!.value!, () => 'secret'))
    if (tls) {
      // The certificate files come from the TLS Secret mounted as a directory (no subPath: renewals reach the pod).
      const tlsVol = pod.volumes.find((v: Obj) => v.name === 'tls')
      assert.equal(tlsVol?.secret?.optional, false)
      const tlsMount = (c.volumeMounts as Obj[]).find((m) => m.name === 'tls')!
      assert.equal(tlsMount.subPath, undefined)
      const t = cfg.servers[1]!.tls!
      for (const f of [t.certFile, t.keyFile, t.caFile]) assert.ok(f?.startsWith(`${String(tlsMount.mountPath)}/`), `${f} is in the TLS Secret`)
      assert.equal(env.get('VECTIS_HTTP_TLS_CERT_FILE')?.value, t.certFile)
      assert.equal(env.get('VECTIS_HTTP_TLS_KEY_FILE')?.value, t.keyFile)
      assert.equal(cfg.servers[0]!.id, cfg.servers[1]!.id, 'the same server id, plain and over TLS')
    }
    const secretVol = pod.volumes.find((v: Obj) => v.name === 'secrets')
    assert.equal(secretVol.secret.optional, false, 'the Secret is required')
    const secretDir = mounts.get(secretVol.name)!
    const fileVars = [...env.entries()].filter(([k]) => k.endsWith('_FILE') && !k.startsWith('VECTIS_HTTP_TLS_'))
    assert.ok(fileVars.some(([k]) => k === 'VECTIS_API_PASSWORD_FILE'))
    for (const [k, v] of fileVars) assert.ok(v.value?.startsWith(`${secretDir}/`), `${k} points into the mounted Secret`)
    for (const p of cfg.partners) {
      assert.equal(p.password, undefined, 'no partner password in the ConfigMap')
      assert.ok(p.passwordFile?.startsWith(`${secretDir}/`))
    }
    const secret = objs.find((o) => o.kind === 'Secret' && o.metadata.name === secretVol.secret.secretName)
    if (overlay === 'dev') {
      assert.ok(secret !== undefined, 'the dev overlay ships throw-away credentials')
      const keys = Object.keys(secret.data as Record<string, string>)
      for (const [, v] of fileVars) assert.ok(keys.includes(v.value!.slice(secretDir.length + 1)), `${v.value} exists in the dev Secret`)
      for (const p of cfg.partners) assert.ok(keys.includes(p.passwordFile!.slice(secretDir.length + 1)))
    } else {
      assert.equal(secret, undefined, 'production credentials are created by the operator, not committed')
    }

    // Disruption, isolation, placement.
    const pdb = one(objs, 'PodDisruptionBudget')
    assert.ok(matchesSelector(parseLabelSelector(Object.entries(pdb.spec.selector.matchLabels as Record<string, string>).map(([k, v]) => `${k}=${v}`).join(',')), podLabels))
    if (overlay === 'production') {
      assert.equal(pdb.spec.minAvailable, 2, 'a majority of 3 stays up')
      assert.ok(pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution.length > 0, 'one member per node')
    }
    const np = one(objs, 'NetworkPolicy')
    assert.ok(np.spec.ingress.some((r: Obj) => r.ports.some((p: Obj) => p.port === 'pesit-tls')), 'partners reach the TLS port')
    const clusterRule = np.spec.ingress.find((r: Obj) => r.ports.some((p: Obj) => p.port === 'cluster'))
    assert.ok(clusterRule.from.length > 0 && clusterRule.from.every((f: Obj) => f.podSelector !== undefined && f.namespaceSelector === undefined && f.ipBlock === undefined), 'cluster port only from peer pods')
    assert.ok(clusterRule.from.every((f: Obj) => matchesSelector(parseLabelSelector(Object.entries(f.podSelector.matchLabels as Record<string, string>).map(([k, v]) => `${k}=${v}`).join(',')), podLabels)))
    assert.ok(np.spec.ingress.every((r: Obj) => r === clusterRule || !r.ports.some((p: Obj) => p.port === 'cluster' || p.port === DEFAULTS.clusterPort)), 'no other rule opens the cluster port')

    if (overlay === 'production') {
      const sm = one(objs, 'ServiceMonitor')
      assert.ok(Object.entries(sm.spec.selector.matchLabels as Record<string, string>).every(([k, v]) => headless.metadata.labels?.[k] === v), 'ServiceMonitor selects the headless Service')
      assert.ok(sm.spec.endpoints.every((e: Obj) => headless.spec.ports.some((p: Obj) => p.name === e.port) && e.path === '/metrics'))
      assert.ok(sm.spec.endpoints.every((e: Obj) => e.scheme === 'https' && e.tlsConfig?.ca?.secret?.name === 'vectis-tls'), 'metrics scraped over HTTPS')
      const rules = one(objs, 'PrometheusRule').spec.groups.flatMap((g: Obj) => g.rules) as Obj[]
      const byName = new Map(rules.map((r) => [r.alert as string, r]))
      assert.match(byName.get('VectisTwoLeaders')?.expr ?? '', /sum.*\(vectis_cluster_is_leader\) > 1/)
      assert.equal(byName.get('VectisNoLeader')?.for, '30s')
      assert.ok(byName.has('VectisMembersBelowExpected') && byName.has('VectisFrequentLeaderChanges') && byName.has('VectisLabelErrors'))
    }
  })
}

function equalitySelector (): Record<string, string> {
  return equalityLabels(parseLabelSelector(DEFAULT_POD_SELECTOR))
}
