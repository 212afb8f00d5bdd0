// The daemon's Kubernetes parts loaded in the background once the cluster has started (k8s/deferred-parts.ts): the
// real label controller and pod watch against the API emulator, with the load held back by the test to play a slow
// `import()`.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { KubeConfig } from '@kubernetes/client-node'
import { K8sApiEmulator } from '../../dev-cluster/k8s-api-emulator.js'
import { K8sLabelController } from '../../k8s/label-controller.js'
import { EPOCH_ANNOTATION, FENCED_EPOCH_ANNOTATION } from '../../k8s/defaults.js'
import { K8sPodWatch } from '../../k8s/pod-watch.js'
import { K8sDeferred, type K8sDeferredComponents } from '../../k8s/deferred-parts.js'
import { K8sPodClient } from '../../k8s/client.js'
import type { K8sParts } from '../../k8s/parts.js'
import { ConfigError } from '../../common/config-error.js'
import { silentLogger } from '../../common/logger.js'
import { FakeLeadership, GaugeProbe, waitFor } from '../helpers/k8s-fixtures.js'

const NS = 'vectis-deferred'
const LABEL = 'vectis-leader'
const CONFIG = { kubeconfig: undefined, k8sMode: 'on' as const, podNamespace: NS, podName: 'vectis-0', podSelector: 'app=vectis', leaderLabel: LABEL }

interface Setup {
  em: K8sApiEmulator
  leadership: FakeLeadership
  /** Lets the held-back load finish (or fail). */
  release (err?: Error): void
  loads: () => number
  /** `vectis_k8s_labels_in_sync`; 1 before anything runs, as the daemon's metrics start. */
  inSync: GaugeProbe
  deferred (opts?: { verifiedDead?: (name: string) => void, fenced?: K8sDeferredComponents['fenced'] }): K8sDeferred
}

async function setup (t: TestContext): Promise<Setup> {
  const em = new K8sApiEmulator()
  await em.start()
  em.createPod(NS, 'vectis-0', { labels: { app: 'vectis' } })
  em.createPod(NS, 'vectis-1', { labels: { app: 'vectis', [LABEL]: 'true' } })
  const kubeConfig = new KubeConfig()
  kubeConfig.loadFromString(em.kubeconfigYaml({ namespace: NS }))
  const leadership = new FakeLeadership('vectis-0')
  let release!: (err?: Error) => void
  const gate = new Promise<void>((resolve, reject) => { release = (err) => { if (err === undefined) resolve(); else reject(err) } })
  let loads = 0
  const inSync = new GaugeProbe()
  inSync.set(1)
  const stops: Array<() => Promise<void>> = []
  t.after(async () => {
    release() // a test that failed early may have left the load held back: the stops below would wait for it
    for (const s of stops) await s()
    await em.stop()
  })
  return {
    em,
    leadership,
    release: (err) => { release(err) },
    loads: () => loads,
    inSync,
    deferred: (opts = {}) => {
      const d = new K8sDeferred({
        logger: silentLogger(),
        leadership,
        metrics: { labelsInSync: inSync },
        verifiedDead: opts.verifiedDead,
        fenced: opts.fenced,
        load: async (): Promise<K8sParts> => {
          loads++
          await gate
          const labels = new K8sLabelController({ logger: silentLogger(), leadership }, {
            namespace: NS, podName: 'vectis-0', selector: 'app=vectis', label: LABEL, kubeConfig, backoffBaseMs: 50, backoffMaxMs: 500, stopTimeoutMs: 1_000
          })
          const podWatch = opts.verifiedDead === undefined ? undefined : new K8sPodWatch({ logger: silentLogger() }, { namespace: NS, selector: 'app=vectis', kubeConfig, backoffBaseMs: 50 })
          return { labels, podWatch }
        }
      }, { config: CONFIG })
      stops.push(async () => {
        await d.podWatchPart?.stop()
        await d.labelsPart.stop()
      })
      return d
    }
  }
}

const labelsOf = (em: K8sApiEmulator, name: string): Record<string, string> => em.getPod(NS, name)?.metadata.labels ?? {}

void test('a leadership won while the code loads: no label and no go for the servers until the controller runs, then both', { timeout: 30_000 }, async (t) => {
  const s = await setup(t)
  const d = s.deferred()
  await d.labelsPart.start()
  assert.equal(s.loads(), 0, 'nothing is loaded before the cluster has started')
  assert.equal(s.inSync.value, 0, 'labels are not in sync before the controller made them so')
  s.leadership.elect(3) // a leadership won as soon as the cluster starts (a single member, standalone)
  let ready = false
  const waiting = d.waitLabelsReady(AbortSignal.timeout(20_000)).then(() => { ready = true })
  const loaded = d.loadedPart.start() // the cluster has started: the load begins, held back by the test
  await waitFor(() => s.loads() === 1, 5_000, 'load begun')
  // Nothing can label while the code is not there; give it the time a wrong implementation would need to show.
  await new Promise((resolve) => setTimeout(resolve, 100))
  assert.equal(ready, false, 'the servers wait for the controller')
  assert.equal(labelsOf(s.em, 'vectis-0')[LABEL], undefined)
  s.release()
  await loaded
  await waiting
  assert.equal(labelsOf(s.em, 'vectis-0')[LABEL], 'true', 'own pod labelled once the controller ran')
  assert.equal(s.em.getPod(NS, 'vectis-0')?.metadata.annotations?.[EPOCH_ANNOTATION], '3')
  assert.equal(labelsOf(s.em, 'vectis-1')[LABEL], undefined, 'the other pod fenced first')
  // The leadership picked up at start ends as one the controller saw begin.
  s.leadership.demote('handover')
  await waitFor(() => labelsOf(s.em, 'vectis-0')[LABEL] === undefined, 5_000, 'label removed at demotion')
})

void test('the leader label of each pod as the pod watch sees it: null until loaded, then followed; null without a watch', { timeout: 30_000 }, async (t) => {
  const s = await setup(t)
  const d = s.deferred({ verifiedDead: () => {} })
  await d.labelsPart.start()
  await d.podWatchPart!.start()
  assert.equal(d.leaderLabelled('vectis-1'), null, 'nothing known before the code is loaded')
  const loaded = d.loadedPart.start()
  s.release()
  await loaded
  await waitFor(() => d.leaderLabelled('vectis-1') === true, 5_000, 'the labelled pod seen')
  assert.equal(d.leaderLabelled('vectis-0'), false)
  assert.equal(d.leaderLabelled('vectis-9'), null, 'no such pod')
  // This member is elected: its controller moves the label, its pod watch sees it move.
  s.leadership.elect(5)
  await waitFor(() => d.leaderLabelled('vectis-0') === true && d.leaderLabelled('vectis-1') === false, 5_000, 'the label moved')
  // A member without a pod watch (standalone) knows nothing of labels.
  const standalone = s.deferred()
  assert.equal(standalone.leaderLabelled('vectis-0'), null)
})

void test('the wait of the servers ends with their leadership, even while the code still loads', { timeout: 30_000 }, async (t) => {
  const s = await setup(t)
  const d = s.deferred()
  await d.labelsPart.start()
  const ac = new AbortController()
  const waiting = d.waitLabelsReady(ac.signal)
  const loaded = d.loadedPart.start()
  ac.abort(new Error('leadership ended'))
  await assert.rejects(waiting, /leadership ended/)
  s.release()
  await loaded
})

void test('code that cannot be loaded or configured fails the start (configuration errors keep their class)', { timeout: 30_000 }, async (t) => {
  const s = await setup(t)
  const d = s.deferred({ verifiedDead: () => {} })
  await d.labelsPart.start()
  await d.podWatchPart!.start()
  const loaded = d.loadedPart.start()
  s.release(new ConfigError('KUBECONFIG', '/nowhere', 'no such file'))
  await assert.rejects(loaded, (err: unknown) => err instanceof ConfigError && /KUBECONFIG/.test(err.message))
  await assert.rejects(d.waitLabelsReady(AbortSignal.timeout(5_000)), ConfigError)
  assert.equal(s.loads(), 1, 'one load serves both parts')
  await d.podWatchPart!.stop()
  await d.labelsPart.stop()
})

void test('stopped before the cluster started (its start failed): nothing is loaded, nothing waits', { timeout: 30_000 }, async (t) => {
  const s = await setup(t)
  const d = s.deferred({ verifiedDead: () => {} })
  await d.labelsPart.start()
  await d.podWatchPart!.start()
  await d.podWatchPart!.stop()
  await d.labelsPart.stop() // resolves although the test never releases the load
  assert.equal(s.loads(), 0)
})

void test('stopped while the code loads: the controller never starts, and stop waits for the load', { timeout: 30_000 }, async (t) => {
  const s = await setup(t)
  s.em.setLabels(NS, 'vectis-0', { [LABEL]: 'true' }) // a started standby controller would remove it
  const d = s.deferred()
  await d.labelsPart.start()
  const loaded = d.loadedPart.start()
  let stopped = false
  const stopping = d.labelsPart.stop().then(() => { stopped = true })
  await new Promise((resolve) => setTimeout(resolve, 50))
  assert.equal(stopped, false)
  s.release()
  await stopping
  await assert.rejects(loaded, /stopped before it started/)
  // A started controller would have patched the pod by now (it removes a standby's own label at once).
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.equal(labelsOf(s.em, 'vectis-0')[LABEL], 'true')
  assert.equal(s.em.requestLog().filter((r) => r.verb === 'patch').length, 0)
})

void test('the pod watch, once loaded, reports a restarted container as a verified death', { timeout: 30_000 }, async (t) => {
  const s = await setup(t)
  const dead: string[] = []
  const d = s.deferred({ verifiedDead: (name) => { dead.push(name) } })
  await d.labelsPart.start()
  await d.podWatchPart!.start()
  const loaded = d.loadedPart.start()
  s.release()
  await loaded
  // The watch's first list is its baseline; poll until it has one, then restart a container.
  await waitFor(() => s.em.requestLog().some((r) => r.verb === 'watch'), 5_000, 'pod watch open')
  s.em.restartContainer(NS, 'vectis-1')
  await waitFor(() => dead.includes('vectis-1'), 5_000, 'restart reported')
})

void test('a leader whose pod a newer epoch fences, after its labels were ready, is reported so that it stops serving', { timeout: 30_000 }, async (t) => {
  const s = await setup(t)
  const fenced: Array<{ epoch: number, fencedEpoch: number }> = []
  const d = s.deferred({ fenced: (e) => { fenced.push({ epoch: e.epoch.number, fencedEpoch: e.fencedEpoch }) } })
  await d.labelsPart.start()
  const loaded = d.loadedPart.start()
  s.release()
  await loaded
  s.leadership.elect(3)
  await d.waitLabelsReady(AbortSignal.timeout(5_000))
  assert.deepEqual(fenced, [])
  // A newer leader (epoch 4, e.g. elected on the other side of a partition) fences vectis-0; vectis-0's lease runs on.
  const kubeConfig = new KubeConfig()
  kubeConfig.loadFromString(s.em.kubeconfigYaml({ namespace: NS }))
  await new K8sPodClient(kubeConfig, { namespace: NS }).patchPod('vectis-0', 'merge',
    { metadata: { labels: { [LABEL]: null }, annotations: { [EPOCH_ANNOTATION]: null, [FENCED_EPOCH_ANNOTATION]: '4' } } })
  await waitFor(() => fenced.length > 0, 5_000, 'fence reported')
  assert.deepEqual(fenced, [{ epoch: 3, fencedEpoch: 4 }])
  assert.equal(labelsOf(s.em, 'vectis-0')[LABEL], undefined, 'vectis-0 did not label itself again')
})
