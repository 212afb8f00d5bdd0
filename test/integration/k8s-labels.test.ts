// The label controller with the real @kubernetes/client-node against the API emulator, three members, each with
// its own bearer token (so a "crashed" member can be cut off the API alone) and a Leadership driven by the test.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { KubeConfig } from '@kubernetes/client-node'
import { K8sApiEmulator } from '../../dev-cluster/k8s-api-emulator.js'
import { K8sLabelController } from '../../k8s/label-controller.js'
import { EPOCH_ANNOTATION, FENCED_EPOCH_ANNOTATION, INCARNATION_ANNOTATION } from '../../k8s/defaults.js'
import { K8sPodWatch } from '../../k8s/pod-watch.js'
import { K8sPodClient } from '../../k8s/client.js'
import { K8sApiError, FencedError } from '../../k8s/errors.js'
import { silentLogger, type Logger } from '../../common/logger.js'
import { FakeLeadership, waitFor, captureLogger, CounterProbe, GaugeProbe } from '../helpers/k8s-fixtures.js'

const NS = 'vectis-test'
const LABEL = 'vectis-leader'
const NAMES = ['vectis-0', 'vectis-1', 'vectis-2']

interface Member {
  name: string
  token: string
  leadership: FakeLeadership
  ctl: K8sLabelController
  errors: CounterProbe
  inSync: GaugeProbe
}

interface Cluster {
  em: K8sApiEmulator
  members: Map<string, Member>
  /** Builds and starts a member's controller (again, after a crash). */
  boot (name: string, logger?: Logger): Promise<Member>
  /** kill -9: the member loses the API at once and its controller is dropped without any cleanup reaching the API. */
  crash (name: string): Promise<void>
}

function kubeConfigFor (em: K8sApiEmulator, token: string): KubeConfig {
  const kc = new KubeConfig()
  kc.loadFromString(em.kubeconfigYaml({ namespace: NS, token }))
  return kc
}

async function cluster (t: TestContext, opts: { backoffMaxMs?: number } = {}): Promise<Cluster> {
  const tokens = NAMES.map((n) => `token-${n}`)
  const em = new K8sApiEmulator({ tokens: [...tokens, 'token-test'] })
  await em.start()
  NAMES.forEach((n, i) => em.createPod(NS, n, { labels: { app: 'vectis', 'statefulset.kubernetes.io/pod-name': n }, podIP: `10.0.0.${10 + i}` }))
  // Outside the selector: must never be touched even though it carries the label.
  em.createPod(NS, 'someone-else', { labels: { app: 'other', [LABEL]: 'true' } })
  const members = new Map<string, Member>()
  const crashed = new Map<string, () => void>()

  const c: Cluster = {
    em,
    members,
    async boot (name, logger = silentLogger()) {
      crashed.get(name)?.()
      crashed.delete(name)
      const token = `token-${name}`
      const leadership = new FakeLeadership(name)
      const errors = new CounterProbe()
      const inSync = new GaugeProbe()
      const ctl = new K8sLabelController({ logger, leadership, metrics: { labelErrorsTotal: errors, labelsInSync: inSync } }, {
        namespace: NS, podName: name, selector: 'app=vectis', label: LABEL, kubeConfig: kubeConfigFor(em, token),
        resyncMs: 1_000, backoffBaseMs: 50, backoffMaxMs: opts.backoffMaxMs ?? 500, requestTimeoutMs: 1_000, stopTimeoutMs: 500,
        watchTimeoutSeconds: 30
      })
      const m: Member = { name, token, leadership, ctl, errors, inSync }
      members.set(name, m)
      await ctl.start()
      return m
    },
    async crash (name) {
      const m = members.get(name)
      if (m === undefined) return
      crashed.set(name, em.inject({ token: m.token, reset: true }))
      m.leadership.expire()
      members.delete(name)
      await m.ctl.stop() // its own-label removal is cut off by the reset rule, as a dead process's would be
    }
  }
  t.after(async () => {
    for (const m of members.values()) await m.ctl.stop()
    await em.stop()
  })
  return c
}

function pod (em: K8sApiEmulator, name: string): { labels: Record<string, string>, annotations: Record<string, string> } {
  const p = em.getPod(NS, name)
  assert.ok(p !== undefined, `pod ${name} exists`)
  return { labels: p.metadata.labels ?? {}, annotations: p.metadata.annotations ?? {} }
}

function assertNeverTwoLabelled (em: K8sApiEmulator): void {
  const m = em.maxSimultaneous(LABEL, 'true', NS)
  // `someone-else` is labelled from the start and never touched: it counts as one holder throughout.
  assert.ok(m.max <= 2, `at most one vectis pod labelled at any time, saw ${m.max} at #${m.at?.seq ?? 0} (${m.holders.join(", ")})`)
  const vectisOnly = em.labelHistory().filter((h) => NAMES.includes(h.pod))
  const holding = new Set<string>()
  for (const h of vectisOnly) {
    if (h.after?.[LABEL] === 'true') holding.add(`${h.pod}#${h.uid}`)
    else holding.delete(`${h.pod}#${h.uid}`)
    assert.ok(holding.size <= 1, `two vectis pods labelled at once at change #${h.seq}: ${[...holding].join(', ')}`)
  }
}

const vectisHolders = (em: K8sApiEmulator): string[] => em.holders(LABEL, 'true', NS).filter((n) => NAMES.includes(n))

void test('exactly one pod labelled; a leader change moves the label; demotion removes it', { timeout: 60_000 }, async (t) => {
  const c = await cluster(t)
  const [m0, m1] = [await c.boot('vectis-0'), await c.boot('vectis-1'), await c.boot('vectis-2')]

  m0.leadership.elect(1)
  const ready = await m0.ctl.waitReady(AbortSignal.timeout(5_000))
  assert.equal(ready.number, 1)
  assert.deepEqual(vectisHolders(c.em), ['vectis-0'])
  assert.equal(pod(c.em, 'vectis-0').annotations[EPOCH_ANNOTATION], '1')
  assert.equal(pod(c.em, 'vectis-1').annotations[FENCED_EPOCH_ANNOTATION], '1')
  assert.equal(pod(c.em, 'vectis-2').annotations[FENCED_EPOCH_ANNOTATION], '1')
  assert.equal(pod(c.em, 'someone-else').labels[LABEL], 'true', 'pods outside the selector are not touched')
  await waitFor(() => m0.ctl.status().inSync, 5_000, 'leader in sync')
  assert.equal(m0.inSync.value, 1)

  // The wire formats a real API server needs: merge patches as merge-patch+json, the fenced self-label as JSON patch.
  const patches = c.em.requestLog().filter((r) => r.verb === 'patch' && r.token === m0.token)
  assert.ok(patches.some((r) => r.contentType === 'application/merge-patch+json' && r.pod === 'vectis-1'))
  assert.ok(patches.some((r) => r.contentType === 'application/json-patch+json' && r.pod === 'vectis-0' && r.status === 200))

  // Graceful hand-over: old leader demoted, new one elected with a higher epoch.
  m0.leadership.demote('handover')
  m1.leadership.elect(2)
  await m1.ctl.waitReady(AbortSignal.timeout(5_000))
  await waitFor(() => vectisHolders(c.em).join() === 'vectis-1', 5_000, 'label on vectis-1 only')
  assert.equal(pod(c.em, 'vectis-1').annotations[EPOCH_ANNOTATION], '2')
  assert.equal(pod(c.em, 'vectis-0').annotations[EPOCH_ANNOTATION], undefined, 'old leader lost its epoch annotation')
  assert.equal(pod(c.em, 'vectis-0').annotations[FENCED_EPOCH_ANNOTATION], '2')

  // Demotion with no successor: the label goes, nothing is labelled.
  m1.leadership.demote('lost-quorum')
  await waitFor(() => vectisHolders(c.em).length === 0, 5_000, 'no pod labelled after demotion')
  await assert.rejects(m1.ctl.waitReady(), /not leader/)
  assertNeverTwoLabelled(c.em)
})

void test('over 20 kill -9 / restart rounds the full write history never shows two pods labelled', { timeout: 60_000 }, async (t) => {
  const c = await cluster(t)
  for (const n of NAMES) await c.boot(n)
  let epoch = 0
  let leader: string | undefined
  for (let round = 0; round < 20; round++) {
    const candidates = NAMES.filter((n) => n !== leader)
    const next = candidates[round % candidates.length]!
    if (leader !== undefined) await c.crash(leader) // kill -9: no cleanup, the label stays until fenced
    const m = c.members.get(next)!
    m.leadership.elect(++epoch)
    await m.ctl.waitReady(AbortSignal.timeout(5_000))
    await waitFor(() => vectisHolders(c.em).join() === next, 5_000, `round ${round}: only ${next} labelled`)
    if (leader !== undefined) await c.boot(leader) // restarted as a standby
    leader = next
  }
  assertNeverTwoLabelled(c.em)
  const moves = c.em.labelHistory().filter((h) => NAMES.includes(h.pod) && h.after?.[LABEL] === 'true' && h.before?.[LABEL] !== 'true')
  assert.ok(moves.length >= 20, `the label moved at every round (${moves.length})`)
})

void test('API 500s and a 10 s outage during a failover end with correct labels once the API is back', { timeout: 60_000 }, async (t) => {
  const c = await cluster(t, { backoffMaxMs: 1_000 })
  for (const n of NAMES) await c.boot(n)
  const m0 = c.members.get('vectis-0')!
  const m1 = c.members.get('vectis-1')!
  m0.leadership.elect(1)
  await m0.ctl.waitReady(AbortSignal.timeout(5_000))

  // Failover while the API answers 500 to writes, then disappears for 10 s (connections refused).
  const remove500 = c.em.inject({ status: 500, verbs: ['patch'], times: 6 })
  await c.crash('vectis-0')
  m1.leadership.elect(2)
  await waitFor(() => m1.errors.value > 0, 5_000, 'the new leader hit the 500s')
  await c.em.beginOutage('refuse', 10_000)
  const outageStart = Date.now()
  await waitFor(() => !c.em.inOutage, 15_000, 'outage over')
  assert.ok(Date.now() - outageStart >= 9_000)
  remove500()
  await m1.ctl.waitReady(AbortSignal.timeout(10_000))
  await waitFor(() => vectisHolders(c.em).join() === 'vectis-1', 10_000, 'vectis-1 labelled after the outage')
  await waitFor(() => m1.ctl.status().inSync, 5_000, 'in sync again')
  assert.equal(pod(c.em, 'vectis-0').labels[LABEL], undefined, 'crashed leader fenced')
  const st = m1.ctl.status()
  assert.ok(st.lastError !== undefined && st.lastErrorAt !== undefined, 'the errors are visible in the status')
  assertNeverTwoLabelled(c.em)
})

void test('a short outage with reset connections during a failover also ends right', { timeout: 60_000 }, async (t) => {
  const c = await cluster(t)
  for (const n of NAMES) await c.boot(n)
  const m2 = c.members.get('vectis-2')!
  c.members.get('vectis-0')!.leadership.elect(1)
  await c.members.get('vectis-0')!.ctl.waitReady(AbortSignal.timeout(5_000))
  await c.em.beginOutage('reset', 1_500)
  await c.crash('vectis-0')
  m2.leadership.elect(2)
  await m2.ctl.waitReady(AbortSignal.timeout(10_000))
  await waitFor(() => vectisHolders(c.em).join() === 'vectis-2', 5_000, 'vectis-2 labelled')
  assertNeverTwoLabelled(c.em)
})

void test('a stale leader fenced by a newer epoch cannot re-label itself: its JSON patch test fails', { timeout: 60_000 }, async (t) => {
  const c = await cluster(t)
  for (const n of NAMES) await c.boot(n)
  const m0 = c.members.get('vectis-0')!
  const m1 = c.members.get('vectis-1')!
  const fenced: number[] = []
  m0.ctl.events.on('labels:fenced', (e) => fenced.push(e.fencedEpoch))

  // vectis-0's write to its own pod is held in flight: it has read its pod, fenced the others, and sent the patch.
  const unhold = c.em.inject({ hold: true, verbs: ['patch'], pods: ['vectis-0'], token: m0.token })
  m0.leadership.elect(1)
  await waitFor(() => c.em.heldCount === 1, 5_000, 'stale self-label in flight')
  // Meanwhile (a pause, a slow network) a newer leader takes over; vectis-0 still believes it leads.
  m1.leadership.elect(2)
  await m1.ctl.waitReady(AbortSignal.timeout(5_000))
  assert.equal(pod(c.em, 'vectis-0').annotations[FENCED_EPOCH_ANNOTATION], '2')
  // The stale write(s) land now: the test on the resourceVersion/fenced epoch read before must reject them.
  unhold()
  c.em.releaseHeld()
  await waitFor(() => fenced.length > 0, 5_000, 'vectis-0 learns it was fenced')
  assert.equal(fenced[0], 2)
  const stale = c.em.requestLog().filter((r) => r.token === m0.token && r.pod === 'vectis-0' && r.contentType === 'application/json-patch+json')
  assert.ok(stale.length >= 1 && stale.every((r) => r.status === 422), `stale self-label rejected with 422: ${JSON.stringify(stale)}`)
  await assert.rejects(m0.ctl.waitReady(AbortSignal.timeout(1_000)), /fenced by epoch 2/)
  // Its later passes never try again while fenced.
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.deepEqual(vectisHolders(c.em), ['vectis-1'])
  assertNeverTwoLabelled(c.em)
})

void test('a leader that finds a newer pod labelled is fenced by that pod\'s epoch, not a made-up one', { timeout: 60_000 }, async (t) => {
  const c = await cluster(t)
  // A newer leader (epoch 5) labelled vectis-1; vectis-0 still carries the fence of an older leadership (epoch 1),
  // e.g. the newer leader's fence of vectis-0 has not landed yet. vectis-1's own controller is not running here.
  // Epoch 5 is neither that older fence nor our epoch + 1, the two values a wrong report would show.
  const admin = new K8sPodClient(kubeConfigFor(c.em, 'token-test'), { namespace: NS })
  await admin.patchPod('vectis-1', 'merge', { metadata: { labels: { [LABEL]: 'true' }, annotations: { [EPOCH_ANNOTATION]: '5' } } })
  await admin.patchPod('vectis-0', 'merge', { metadata: { annotations: { [FENCED_EPOCH_ANNOTATION]: '1' } } })
  const { logger, lines } = captureLogger()
  const m0 = await c.boot('vectis-0', logger)
  const fenced: number[] = []
  m0.ctl.events.on('labels:fenced', (e) => fenced.push(e.fencedEpoch))

  m0.leadership.elect(2)
  await assert.rejects(m0.ctl.waitReady(AbortSignal.timeout(5_000)),
    (e: unknown) => e instanceof FencedError && e.ownEpoch === 2 && e.fencedEpoch === 5 && /fenced by epoch 5/.test(e.message))
  assert.deepEqual(fenced, [5], 'the event names the epoch of the labelled pod')
  const logged = lines.filter((l) => l.msg === 'this pod was fenced by a newer leader: not labelling it')
  assert.deepEqual(logged.map((l) => l.fencedEpoch), [5])
  assert.equal(pod(c.em, 'vectis-0').labels[LABEL], undefined, 'vectis-0 did not label itself')
  assert.deepEqual(vectisHolders(c.em), ['vectis-1'])
})

void test('RBAC 403 gives one clear log line naming the verb and resource, a status field and the error metric', { timeout: 60_000 }, async (t) => {
  const c = await cluster(t)
  const { logger, lines } = captureLogger()
  const m0 = await c.boot('vectis-0', logger)
  const remove = c.em.inject({ status: 403, verbs: ['patch'], token: m0.token })
  m0.leadership.elect(1)
  await waitFor(() => m0.errors.value >= 3, 5_000, 'several refused attempts')
  const rbac = lines.filter((l) => typeof l.msg === 'string' && l.msg.includes('RBAC forbids "patch" on "pods"'))
  assert.equal(rbac.length, 1, 'logged once, not at every retry')
  assert.equal(rbac[0]!.level, 'error')
  assert.match(String(rbac[0]!.msg), /Role with verbs get, list, watch, patch on resource pods/)
  const st = m0.ctl.status()
  assert.equal(st.missingPermission, 'patch pods')
  assert.equal(st.inSync, false)
  assert.match(st.lastError ?? '', /403 Forbidden/)
  assert.equal(m0.inSync.value, 0)
  assert.deepEqual(vectisHolders(c.em), [])

  remove() // the operator fixes the Role
  await m0.ctl.waitReady(AbortSignal.timeout(5_000))
  await waitFor(() => m0.ctl.status().missingPermission === undefined && m0.ctl.status().inSync, 5_000, 'permission error cleared')
})

void test('without watch permission the labels are still made right, and the status names the missing verb', { timeout: 60_000 }, async (t) => {
  const c = await cluster(t)
  c.em.inject({ status: 403, verbs: ['watch'], token: 'token-vectis-0' })
  const { logger, lines } = captureLogger()
  const m0 = await c.boot('vectis-0', logger)
  m0.leadership.elect(1)
  await m0.ctl.waitReady(AbortSignal.timeout(5_000))
  await waitFor(() => m0.ctl.status().missingPermission === 'watch pods', 5_000, 'missing watch permission reported')
  assert.equal(m0.ctl.status().inSync, true, 'labels are right even without the watch')
  await waitFor(() => m0.errors.value >= 2, 5_000, 'watch retries counted')
  assert.equal(lines.filter((l) => String(l.msg).includes('grant "watch" on "pods"')).length, 1, 'logged once')
})

void test('a standby that finds its own pod labelled removes the label; 429 Retry-After is honoured', { timeout: 60_000 }, async (t) => {
  const c = await cluster(t)
  const m2 = await c.boot('vectis-2')
  await waitFor(() => m2.ctl.status().inSync, 5_000, 'standby in sync')
  c.em.inject({ status: 429, retryAfterSeconds: 1, times: 1, token: m2.token, verbs: ['patch'] })
  c.em.setLabels(NS, 'vectis-2', { [LABEL]: 'true' }) // e.g. left over from a previous run, or an operator's mistake
  await waitFor(() => pod(c.em, 'vectis-2').labels[LABEL] === undefined, 5_000, 'standby removed its own label')
  // The write that met the 429 and the write that succeeded after it, from the emulator's own request log.
  const patches = c.em.requestLog().filter((r) => r.verb === 'patch' && r.pod === 'vectis-2' && r.token === m2.token)
  const refused = patches.findIndex((r) => r.status === 429)
  assert.ok(refused >= 0, 'a patch met the injected 429')
  const retried = patches.slice(refused + 1).find((r) => r.status === 200)
  assert.ok(retried !== undefined, 'a later patch succeeded')
  assert.ok(retried.at - patches[refused]!.at >= 900, `waited for Retry-After before retrying (${retried.at - patches[refused]!.at} ms)`)
})

void test('timeouts, injected 409s and a 404 for its own pod are retried until the labels are right', { timeout: 60_000 }, async (t) => {
  const c = await cluster(t)
  for (const n of NAMES) await c.boot(n)
  const m1 = c.members.get('vectis-1')!
  // Slower than the 1 s request timeout: every write times out until the latency goes away.
  c.em.setLatency(1_500, ['patch'])
  m1.leadership.elect(1)
  await waitFor(() => m1.errors.value >= 1, 10_000, 'a timed-out write')
  assert.match(m1.ctl.status().lastError ?? '', /within the request timeout/)
  c.em.setLatency(0)
  await m1.ctl.waitReady(AbortSignal.timeout(10_000))

  // Optimistic-concurrency conflicts are re-read and retried, not counted as errors.
  const errorsBefore = m1.errors.value
  c.em.inject({ status: 409, verbs: ['patch'], times: 3 })
  m1.leadership.demote('handover')
  m1.leadership.elect(2)
  await m1.ctl.waitReady(AbortSignal.timeout(10_000))
  assert.equal(m1.errors.value, errorsBefore, 'conflicts are not errors')
  assert.equal(pod(c.em, 'vectis-1').annotations[EPOCH_ANNOTATION], '2')

  // Its own pod reported missing for a while (e.g. the API's cache lagging a re-created pod).
  const m2 = c.members.get('vectis-2')!
  c.em.inject({ status: 404, pods: ['vectis-2'], times: 4 })
  m1.leadership.demote('handover')
  m2.leadership.elect(3)
  await m2.ctl.waitReady(AbortSignal.timeout(10_000))
  await waitFor(() => vectisHolders(c.em).join() === 'vectis-2', 5_000, 'vectis-2 labelled')
  assertNeverTwoLabelled(c.em)
})

void test('a leader whose lease lapsed writes nothing but the removal of its own label', { timeout: 60_000 }, async (t) => {
  const c = await cluster(t)
  for (const n of NAMES) await c.boot(n)
  const m0 = c.members.get('vectis-0')!
  m0.leadership.elect(1)
  await m0.ctl.waitReady(AbortSignal.timeout(5_000))
  const seqBefore = c.em.requestLog().length
  m0.leadership.expire() // no event yet: only isLeader() knows
  c.em.createPod(NS, 'vectis-3', { labels: { app: 'vectis' } }) // a new pod: a leader would fence it
  await waitFor(() => pod(c.em, 'vectis-0').labels[LABEL] === undefined, 5_000, 'vectis-0 removed its own label')
  await new Promise((resolve) => setTimeout(resolve, 200))
  const after = c.em.requestLog().slice(seqBefore).filter((r) => r.token === m0.token && r.verb === 'patch')
  assert.ok(after.length >= 1 && after.every((r) => r.pod === 'vectis-0' && r.contentType === 'application/merge-patch+json'),
    `only the own-label removal was written: ${JSON.stringify(after)}`)
  assert.equal(pod(c.em, 'vectis-3').annotations[FENCED_EPOCH_ANNOTATION], undefined, 'a lapsed leader does not fence')

  // The check sits in the client's last middleware: a refused guard sends nothing at all.
  const client = new K8sPodClient(kubeConfigFor(c.em, m0.token), { namespace: NS })
  const n = c.em.requestLog().length
  await assert.rejects(client.patchPod('vectis-0', 'json', [{ op: 'add', path: '/metadata/labels/x', value: 'y' }], { guard: () => false }),
    (e: unknown) => e instanceof K8sApiError && e.failure === 'not-leader')
  assert.equal(c.em.requestLog().length, n, 'no request reached the API')
})

void test('pod watch reports a deleted pod and a restarted container by name', { timeout: 60_000 }, async (t) => {
  const em = new K8sApiEmulator()
  await em.start()
  for (const n of NAMES) em.createPod(NS, n, { labels: { app: 'vectis' } })
  em.createPod(NS, 'unrelated', { labels: { app: 'other' } })
  const watch = new K8sPodWatch({ logger: silentLogger() }, { namespace: NS, selector: 'app=vectis', kubeConfig: kubeConfigFor(em, 'x'), backoffMaxMs: 300 })
  t.after(async () => { await watch.stop(); await em.stop() })
  const seen: string[] = []
  watch.events.on('pod:deleted', (e) => seen.push(`deleted ${e.name}`))
  watch.events.on('pod:restarted', (e) => seen.push(`restarted ${e.name} ${e.container} ${e.restartCount}`))
  await watch.start()
  await waitFor(() => watch.isSynced, 5_000, 'first list')
  const before = watch.pod('vectis-1')!
  assert.equal(await watch.verifyDead(before), false)

  em.restartContainer(NS, 'vectis-1')
  await waitFor(() => seen.includes('restarted vectis-1 vectisd 1'), 5_000, 'restart reported')
  assert.equal(await watch.verifyDead(before), true, 'a restarted container is a dead process')

  em.deletePod(NS, 'vectis-0')
  em.deletePod(NS, 'unrelated')
  await waitFor(() => seen.includes('deleted vectis-0'), 5_000, 'deletion reported')

  // A gap in the watch (API outage) during which a pod is deleted and re-created: the re-list shows the new uid.
  const old2 = watch.pod('vectis-2')!
  await em.beginOutage('refuse')
  em.deletePod(NS, 'vectis-2')
  em.createPod(NS, 'vectis-2', { labels: { app: 'vectis' } })
  await em.endOutage()
  await waitFor(() => seen.includes('deleted vectis-2'), 5_000, 're-created pod reported as the old one deleted')
  assert.equal(await watch.verifyDead(old2), true)
  assert.ok(!seen.some((s) => s.includes('unrelated')))
})

void test('pod watch: which pods carry the leader label (its value "true", under the configured key), as last seen', { timeout: 60_000 }, async (t) => {
  const em = new K8sApiEmulator()
  await em.start()
  em.createPod(NS, 'vectis-0', { labels: { app: 'vectis', 'ha-leader': 'true' } })
  em.createPod(NS, 'vectis-1', { labels: { app: 'vectis', 'ha-leader': 'false' } })
  em.createPod(NS, 'vectis-2', { labels: { app: 'vectis', [LABEL]: 'true' } })
  em.createPod(NS, 'unrelated', { labels: { app: 'other', 'ha-leader': 'true' } })
  const watch = new K8sPodWatch({ logger: silentLogger() }, { namespace: NS, selector: 'app=vectis', kubeConfig: kubeConfigFor(em, 'x'), backoffMaxMs: 300, leaderLabel: 'ha-leader' })
  t.after(async () => { await watch.stop(); await em.stop() })
  assert.equal(watch.leaderLabelled('vectis-0'), undefined, 'nothing known before the first list')
  await watch.start()
  await waitFor(() => watch.isSynced, 5_000, 'first list')
  const seen = (): Array<boolean | undefined> => ['vectis-0', 'vectis-1', 'vectis-2', 'unrelated'].map((n) => watch.leaderLabelled(n))
  assert.deepEqual(seen(), [true, false, false, undefined])
  // The label moves (as a new leader's controller moves it): the watch follows.
  em.setLabels(NS, 'vectis-0', { 'ha-leader': null })
  em.setLabels(NS, 'vectis-1', { 'ha-leader': 'true' })
  await waitFor(() => watch.leaderLabelled('vectis-1') === true && watch.leaderLabelled('vectis-0') === false, 5_000, 'label moved')
  em.deletePod(NS, 'vectis-1')
  await waitFor(() => watch.leaderLabelled('vectis-1') === undefined, 5_000, 'a deleted pod is unknown')
  assert.deepEqual(seen(), [false, undefined, false, undefined])
})

void test('pod watch names the process that died by the incarnation its pod was annotated with, never the live one', { timeout: 60_000 }, async (t) => {
  const em = new K8sApiEmulator()
  await em.start()
  for (const n of NAMES) em.createPod(NS, n, { labels: { app: 'vectis' } })
  const watches: K8sPodWatch[] = []
  const newWatch = (annotate?: { podName: string, incarnation: string }): K8sPodWatch => {
    const w = new K8sPodWatch({ logger: silentLogger() }, { namespace: NS, selector: 'app=vectis', kubeConfig: kubeConfigFor(em, 'x'), backoffMaxMs: 300, ...(annotate !== undefined ? { annotate } : {}) })
    watches.push(w)
    return w
  }
  t.after(async () => { for (const w of watches) await w.stop(); await em.stop() })
  const observer = newWatch()
  const seen: string[] = []
  observer.events.on('pod:restarted', (e) => seen.push(`restarted ${e.name} ${e.incarnation ?? '?'}`))
  observer.events.on('pod:deleted', (e) => seen.push(`deleted ${e.name} ${e.incarnation ?? '?'}`))
  await observer.start()
  await waitFor(() => observer.isSynced, 5_000, 'first list')
  const annotation = (): string | undefined => pod(em, 'vectis-1').annotations[INCARNATION_ANNOTATION]
  const member = async (incarnation: string): Promise<K8sPodWatch> => {
    const w = newWatch({ podName: 'vectis-1', incarnation })
    await w.start()
    await waitFor(() => annotation() === incarnation && observer.pod('vectis-1')?.incarnation === incarnation, 5_000, `vectis-1 annotated ${incarnation}`)
    return w
  }

  // A process annotates its pod; its container restarts: the report names it.
  await (await member('1-aaaaaaaa')).stop()
  em.restartContainer(NS, 'vectis-1')
  await waitFor(() => seen.includes('restarted vectis-1 1-aaaaaaaa'), 5_000, 'the restart of 1-aaaaaaaa reported')
  await (await member('2-bbbbbbbb')).stop()

  // The race: the next process annotates before the kubelet reports the restart. The new annotation reports
  // 2-bbbbbbbb dead; the restart that follows is that death, not the death of the live 3-cccccccc.
  await member('3-cccccccc')
  em.restartContainer(NS, 'vectis-1')
  await waitFor(() => observer.pod('vectis-1')?.containers.vectisd?.restartCount === 2, 5_000, 'the second restart seen')
  assert.deepEqual(seen, ['restarted vectis-1 1-aaaaaaaa', 'restarted vectis-1 2-bbbbbbbb'])

  em.deletePod(NS, 'vectis-1')
  await waitFor(() => seen.includes('deleted vectis-1 3-cccccccc'), 5_000, 'the deletion names the last process')
})
