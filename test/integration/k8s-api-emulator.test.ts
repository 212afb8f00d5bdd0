// The emulator over raw HTTP: what a real API server would answer, so the controller tests mean something.
// Answers are untyped JSON read by path.
/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-explicit-any */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { K8sApiEmulator } from '../../dev-cluster/k8s-api-emulator.js'
import { JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH } from '../../dev-cluster/k8s-api-objects.js'

interface Reply { status: number, headers: Record<string, string | string[] | undefined>, body: any }

async function call (em: K8sApiEmulator, method: string, path: string, body?: unknown, contentType?: string, token = 'good'): Promise<Reply> {
  const r = await fetch(`${em.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(contentType !== undefined ? { 'content-type': contentType } : {}) },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {})
  })
  const text = await r.text()
  return { status: r.status, headers: Object.fromEntries(r.headers.entries()), body: text === '' ? undefined : JSON.parse(text) }
}

/** Reads `n` watch events (newline-delimited JSON) from a chunked response, then closes it. */
async function watchEvents (em: K8sApiEmulator, path: string, n: number, during?: () => void): Promise<Array<{ type: string, object: any }>> {
  return await new Promise((resolve, reject) => {
    const req = request(`${em.url}${path}`, { headers: { authorization: 'Bearer good' } }, (res) => {
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['content-type'], 'application/json')
      const events: Array<{ type: string, object: any }> = []
      let buf = ''
      res.on('data', (c: Buffer) => {
        buf += c.toString('utf8')
        let i: number
        while ((i = buf.indexOf('\n')) >= 0) {
          events.push(JSON.parse(buf.slice(0, i)) as { type: string, object: unknown })
          buf = buf.slice(i + 1)
          if (events.length === n) { req.destroy(); resolve(events); return }
        }
      })
      res.on('end', () => resolve(events))
      setImmediate(() => during?.())
    })
    req.on('error', reject)
    req.setTimeout(5_000, () => { req.destroy(new Error('watch timed out')) })
    req.end()
  })
}

void test('emulator: Status errors, content types, resourceVersion, optimistic concurrency and validation', async (t) => {
  const em = new K8sApiEmulator({ tokens: ['good'] })
  await em.start()
  t.after(async () => { await em.stop() })
  em.createPod('ns', 'p0', { labels: { app: 'vectis' } })
  const pod = '/api/v1/namespaces/ns/pods/p0'

  const unauth = await call(em, 'GET', pod, undefined, undefined, 'bad')
  assert.equal(unauth.status, 401)
  assert.deepEqual([unauth.body.kind, unauth.body.reason, unauth.body.code], ['Status', 'Unauthorized', 401])

  const missing = await call(em, 'GET', '/api/v1/namespaces/ns/pods/nope')
  assert.deepEqual([missing.status, missing.body.reason, missing.body.message], [404, 'NotFound', 'pods "nope" not found'])

  const got = await call(em, 'GET', pod)
  assert.equal(got.status, 200)
  assert.equal(got.headers['content-type'], 'application/json')
  const rv0 = got.body.metadata.resourceVersion as string

  // A merge body sent as JSON patch (client-node's default Content-Type) is refused, as a real server does.
  const wrongType = await call(em, 'PATCH', pod, { metadata: { labels: { a: 'b' } } }, JSON_PATCH)
  assert.equal(wrongType.status, 400)
  const noType = await call(em, 'PATCH', pod, { metadata: { labels: { a: 'b' } } }, 'application/json')
  assert.deepEqual([noType.status, noType.body.reason], [415, 'UnsupportedMediaType'])

  const merged = await call(em, 'PATCH', pod, { metadata: { labels: { 'vectis-leader': 'true' } } }, MERGE_PATCH)
  assert.equal(merged.status, 200)
  assert.ok(Number(merged.body.metadata.resourceVersion) > Number(rv0))
  const same = await call(em, 'PATCH', pod, { metadata: { labels: { 'vectis-leader': 'true' } } }, STRATEGIC_MERGE_PATCH)
  assert.equal(same.body.metadata.resourceVersion, merged.body.metadata.resourceVersion, 'a no-op patch does not bump the resourceVersion')

  const stale = await call(em, 'PATCH', pod, { metadata: { resourceVersion: rv0, labels: { x: 'y' } } }, MERGE_PATCH)
  assert.deepEqual([stale.status, stale.body.reason], [409, 'Conflict'])
  assert.match(stale.body.message, /the object has been modified/)

  const failedTest = await call(em, 'PATCH', pod, [{ op: 'test', path: '/metadata/resourceVersion', value: rv0 }, { op: 'remove', path: '/metadata/labels/vectis-leader' }], JSON_PATCH)
  assert.deepEqual(failedTest.body, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'the server rejected our request due to an error in our request', reason: 'Invalid', details: {}, code: 422 })
  assert.equal(em.getPod('ns', 'p0')?.metadata.labels?.['vectis-leader'], 'true', 'nothing of a failed JSON patch is applied')

  const badLabel = await call(em, 'PATCH', pod, { metadata: { labels: { 'vectis-leader': 'not ok!' } } }, MERGE_PATCH)
  assert.deepEqual([badLabel.status, badLabel.body.reason], [422, 'Invalid'])
  assert.equal(badLabel.body.details.causes[0].field, 'metadata.labels[vectis-leader]')
  const spec = await call(em, 'PATCH', pod, { spec: { nodeName: 'elsewhere' } }, MERGE_PATCH)
  assert.equal(spec.status, 422)
  const rename = await call(em, 'PATCH', pod, { metadata: { name: 'p9' } }, MERGE_PATCH)
  assert.equal(rename.status, 400)
  const garbage = await call(em, 'PATCH', pod, '{not json', MERGE_PATCH)
  assert.equal(garbage.status, 400)

  em.inject({ status: 429, retryAfterSeconds: 3, times: 1 })
  const limited = await call(em, 'GET', pod)
  assert.deepEqual([limited.status, limited.headers['retry-after'], limited.body.reason, limited.body.details.retryAfterSeconds], [429, '3', 'TooManyRequests', 3])
  em.inject({ status: 403, verbs: ['list'] })
  const forbidden = await call(em, 'GET', '/api/v1/namespaces/ns/pods?labelSelector=app%3Dvectis')
  assert.deepEqual([forbidden.status, forbidden.body.reason], [403, 'Forbidden'])
  assert.match(forbidden.body.message, /cannot list resource "pods" in API group "" in the namespace "ns"/)
  em.clearFaults()

  const list = await call(em, 'GET', '/api/v1/namespaces/ns/pods?labelSelector=' + encodeURIComponent('app in (vectis),vectis-leader'))
  assert.equal(list.body.kind, 'PodList')
  assert.deepEqual(list.body.items.map((p: { metadata: { name: string } }) => p.metadata.name), ['p0'])
  assert.equal(list.body.metadata.resourceVersion, em.resourceVersion)
  const badSel = await call(em, 'GET', '/api/v1/namespaces/ns/pods?labelSelector=' + encodeURIComponent('a in (x'))
  assert.equal(badSel.status, 400)
})

void test('emulator: watch with selector transitions, resume from a resourceVersion, 410 when too old', async (t) => {
  const em = new K8sApiEmulator({ tokens: ['good'], eventWindow: 5 })
  await em.start()
  t.after(async () => { await em.stop() })
  const changes: string[] = []
  em.events.on('pod:changed', (e) => changes.push(`${e.name}:${e.labelsChanged}:${e.pod === null ? 'gone' : 'here'}`))
  em.createPod('ns', 'a', { labels: { app: 'vectis' } })
  const rv = em.resourceVersion
  const base = '/api/v1/namespaces/ns/pods?watch=true&labelSelector=' + encodeURIComponent('app=vectis,!vectis-leader')

  const live = await watchEvents(em, base, 4, () => {
    em.setLabels('ns', 'a', { 'vectis-leader': 'true' }) // leaves the selector: DELETED for this watch
    em.setLabels('ns', 'a', { 'vectis-leader': null }) // back in: ADDED
    em.restartContainer('ns', 'a')
  })
  assert.deepEqual(live.map((e) => e.type), ['ADDED', 'DELETED', 'ADDED', 'MODIFIED'])
  assert.equal(live[3]!.object.status.containerStatuses[0].restartCount, 1)

  const resumed = await watchEvents(em, `${base}&resourceVersion=${rv}`, 3)
  assert.deepEqual(resumed.map((e) => e.type), ['DELETED', 'ADDED', 'MODIFIED'], 'replayed from the resourceVersion, no synthetic ADDED')

  for (let i = 0; i < 6; i++) em.setPodIP('ns', 'a', `10.0.0.${i}`)
  const expired = await watchEvents(em, `${base}&resourceVersion=${rv}`, 1)
  assert.equal(expired[0]!.type, 'ERROR')
  assert.deepEqual([expired[0]!.object.code, expired[0]!.object.reason], [410, 'Expired'])

  assert.deepEqual(changes.slice(0, 4), ['a:true:here', 'a:true:here', 'a:true:here', 'a:false:here'])
  const history = em.labelHistory()
  assert.deepEqual(history.map((h) => h.cause), ['create', 'patch', 'patch'])
  assert.ok(history.every((h, i) => h.seq === i + 1 && (i === 0 || h.atNs >= history[i - 1]!.atNs)))
})
