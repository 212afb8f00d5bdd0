/**
 * An HTTP server that answers the pods part of the Kubernetes API the way a real API server does, for the local
 * HA cluster (`vectis dev-cluster`) and for tests that drive the real @kubernetes/client-node against it.
 *
 * Emulated: GET a pod; LIST and WATCH pods of a namespace (or of all namespaces) with `labelSelector`; PATCH as
 * `application/merge-patch+json`, `application/json-patch+json` and `application/strategic-merge-patch+json`; a
 * global `resourceVersion` bumped at every change (no-op patches do not bump it); optimistic concurrency (a patch
 * whose result carries another `metadata.resourceVersion` gets 409 Conflict); `Status` error bodies with the
 * reasons and messages an API server uses (a JSON patch that cannot be applied, e.g. a failed `test`, gets the
 * API server's generic 422 Invalid, exactly as kube-apiserver's patch handler answers it); optional bearer tokens.
 *
 * For proving safety over whole histories it records every change of every pod's labels (create, patch, delete)
 * with a sequence number and the machine-wide monotonic time, and can replay them. For fault injection it has
 * rules answering chosen verbs/pods/tokens with 401/403/404/409/422/429/500/503 or a connection reset, latency,
 * and outages in which connections are refused (listener closed) or reset.
 *
 * NOT emulated: other resources, create/delete over HTTP (use the helpers), pod spec changes (refused with 422 as
 * a real server refuses most of them), status changes through the main resource (dropped, as a real server does),
 * field selectors, watch bookmarks, chunked LIST (`limit`/`continue`), strategic-merge list merging.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { randomUUID } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { stringify as yamlStringify } from 'yaml'
import { hrtimeNs } from '../common/clock.js'
import type { Startable } from '../common/lifecycle.js'
import type { Logger } from '../common/logger.js'
import { TypedEmitter } from '../common/typed-events.js'
import { matchesSelector, parseLabelSelector, LabelSelectorError, type Requirement } from '../k8s/label-selector.js'
import {
  applyJsonPatch, applyMergePatch, applyStrategicMergePatch, deepClone, deepEqual, PatchApplyError, PatchFormatError,
  type Json
} from './patch-apply.js'
import {
  conflictMessage, containerId, statusBody, validatePatched, JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH,
  type CreatePodInit, type FaultRule, type LabelChange, type PodObject, type RequestRecord, type Verb
} from './k8s-api-objects.js'

export interface K8sApiEmulatorInit {
  host?: string
  /** 0 (default) picks a free port. */
  port?: number
  /** When set, every request needs `Authorization: Bearer <one of these>`, else 401. */
  tokens?: string[]
  logger?: Logger
  /** Watch events kept for resuming from a `resourceVersion`; older ones answer 410 Gone. */
  eventWindow?: number
}

type WatchType = 'ADDED' | 'MODIFIED' | 'DELETED'

interface StoredEvent {
  rv: number
  namespace: string
  prev: PodObject | null
  cur: PodObject | null
}

interface Watcher {
  namespace: string | undefined
  reqs: Requirement[]
  res: ServerResponse
  timer?: NodeJS.Timeout
}

interface ActiveFault extends FaultRule { id: number, hits: number }

const MAX_BODY = 1024 * 1024

function podKey (namespace: string, name: string): string { return `${namespace}/${name}` }

export type K8sApiEmulatorEvents = {
  /** Any change of a pod (create, patch, delete: `pod` is null), after it is stored; e.g. for a local load balancer. */
  'pod:changed': { namespace: string, name: string, pod: PodObject | null, labelsChanged: boolean }
}

export class K8sApiEmulator implements Startable {
  readonly events = new TypedEmitter<K8sApiEmulatorEvents>()
  private server: Server | undefined
  private readonly sockets = new Set<Socket>()
  private readonly pods = new Map<string, PodObject>()
  private readonly eventLog: StoredEvent[] = []
  private readonly watchers = new Set<Watcher>()
  private readonly history: LabelChange[] = []
  private readonly requests: RequestRecord[] = []
  private faults: ActiveFault[] = []
  private nextFaultId = 1
  private rv = 1
  private latency: { ms: number, verbs?: Verb[] } = { ms: 0 }
  private outageMode: 'refuse' | 'reset' | undefined
  private outageTimer: NodeJS.Timeout | undefined
  private boundPort = 0
  private readonly host: string
  private readonly tokens: Set<string> | undefined
  private readonly eventWindow: number
  private readonly log: Logger | undefined
  private status: 'idle' | 'started' | 'stopped' = 'idle'

  constructor (init: K8sApiEmulatorInit = {}) {
    this.host = init.host ?? '127.0.0.1'
    this.boundPort = init.port ?? 0
    this.tokens = init.tokens !== undefined ? new Set(init.tokens) : undefined
    this.eventWindow = init.eventWindow ?? 10_000
    this.log = init.logger?.child({ component: 'dev-cluster:k8s-api' })
  }

  get port (): number { return this.boundPort }
  get url (): string { return `http://${this.host}:${this.boundPort}` }

  async start (): Promise<void> {
    if (this.status === 'started') return
    await this.listen()
    this.status = 'started'
    this.log?.info({ url: this.url }, 'Kubernetes API emulator listening')
  }

  async stop (): Promise<void> {
    if (this.status !== 'started') return
    this.status = 'stopped'
    clearTimeout(this.outageTimer)
    this.outageMode = undefined
    this.releaseHeld()
    for (const w of this.watchers) this.endWatch(w)
    await this.closeListener()
  }

  private async listen (): Promise<void> {
    const server = createServer((req, res) => { void this.handle(req, res) })
    server.keepAliveTimeout = 5_000
    server.on('connection', (s: Socket) => {
      if (this.outageMode === 'reset') { s.destroy(); return }
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.boundPort, this.host, () => { server.off('error', reject); resolve() })
    })
    const addr = server.address()
    if (addr !== null && typeof addr === 'object') this.boundPort = addr.port
    this.server = server
  }

  private async closeListener (): Promise<void> {
    const server = this.server
    this.server = undefined
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  // ---------------------------------------------------------------- pods (helpers for tests and the dev cluster)

  createPod (namespace: string, name: string, init: CreatePodInit = {}): PodObject {
    const key = podKey(namespace, name)
    if (this.pods.has(key)) throw new Error(`pod ${key} already exists`)
    const now = new Date().toISOString()
    const containers = init.containers ?? ['vectisd']
    const pod: PodObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name, namespace, uid: randomUUID(), resourceVersion: '', creationTimestamp: now,
        ...(init.labels !== undefined ? { labels: { ...init.labels } } : {}),
        ...(init.annotations !== undefined ? { annotations: { ...init.annotations } } : {})
      },
      spec: { containers: containers.map((c) => ({ name: c, image: 'vectis:dev' })), ...(init.nodeName !== undefined ? { nodeName: init.nodeName } : {}) },
      status: {
        phase: 'Running',
        ...(init.podIP !== undefined ? { podIP: init.podIP, podIPs: [{ ip: init.podIP }] } : {}),
        startTime: now,
        containerStatuses: containers.map((c) => ({
          name: c, ready: true, started: true, restartCount: 0, image: 'vectis:dev', imageID: 'vectis@sha256:dev',
          containerID: containerId(), state: { running: { startedAt: now } }, lastState: {}
        }))
      }
    }
    this.commit(namespace, null, pod, 'create')
    return deepClone(pod)
  }

  deletePod (namespace: string, name: string): void {
    const prev = this.mustGet(namespace, name)
    this.commit(namespace, prev, null, 'delete')
  }

  /** Marks the pod terminating (what a graceful delete shows until the kubelet is done). */
  markTerminating (namespace: string, name: string): PodObject {
    return this.mutate(namespace, name, (p) => { p.metadata.deletionTimestamp = new Date().toISOString() })
  }

  /** The container was killed and restarted by the kubelet: restartCount + 1, a new containerID. */
  restartContainer (namespace: string, name: string, container?: string): PodObject {
    return this.mutate(namespace, name, (p) => {
      const cs = container === undefined ? p.status.containerStatuses[0] : p.status.containerStatuses.find((c) => c.name === container)
      if (cs === undefined) throw new Error(`pod ${namespace}/${name} has no container ${container ?? ''}`)
      const now = new Date().toISOString()
      cs.lastState = { terminated: { exitCode: 137, reason: 'Error', startedAt: cs.state.running?.startedAt ?? now, finishedAt: now, containerID: cs.containerID } }
      cs.restartCount += 1
      cs.containerID = containerId()
      cs.state = { running: { startedAt: now } }
    })
  }

  setPodIP (namespace: string, name: string, ip: string | undefined): PodObject {
    return this.mutate(namespace, name, (p) => {
      if (ip === undefined) { delete p.status.podIP; delete p.status.podIPs } else { p.status.podIP = ip; p.status.podIPs = [{ ip }] }
    })
  }

  /** Direct label edit, as an operator's `kubectl label` would do (recorded in the history like any write). */
  setLabels (namespace: string, name: string, labels: Record<string, string | null>): PodObject {
    return this.mutate(namespace, name, (p) => {
      const l = { ...(p.metadata.labels ?? {}) }
      for (const [k, v] of Object.entries(labels)) {
        if (v === null) {
          delete l[k]
        } else l[k] = v
      }
      p.metadata.labels = l
    })
  }

  getPod (namespace: string, name: string): PodObject | undefined {
    const p = this.pods.get(podKey(namespace, name))
    return p === undefined ? undefined : deepClone(p)
  }

  listPods (namespace?: string, selector = ''): PodObject[] {
    const reqs = parseLabelSelector(selector)
    return [...this.pods.values()]
      .filter((p) => (namespace === undefined || p.metadata.namespace === namespace) && matchesSelector(reqs, p.metadata.labels))
      .map((p) => deepClone(p))
  }

  private mustGet (namespace: string, name: string): PodObject {
    const p = this.pods.get(podKey(namespace, name))
    if (p === undefined) throw new Error(`pod ${namespace}/${name} does not exist`)
    return p
  }

  private mutate (namespace: string, name: string, fn: (p: PodObject) => void): PodObject {
    const prev = this.mustGet(namespace, name)
    const next = deepClone(prev)
    fn(next)
    this.commit(namespace, prev, next, 'patch')
    return deepClone(next)
  }

  /** The single place state changes: bumps the resourceVersion, records label changes, feeds watches. */
  private commit (namespace: string, prev: PodObject | null, next: PodObject | null, cause: LabelChange['cause']): void {
    const rv = ++this.rv
    const name = (next ?? prev)!.metadata.name
    if (next !== null) {
      next.metadata.resourceVersion = String(rv)
      this.pods.set(podKey(namespace, name), next)
    } else {
      this.pods.delete(podKey(namespace, name))
    }
    const before = prev === null ? null : { ...(prev.metadata.labels ?? {}) }
    const after = next === null ? null : { ...(next.metadata.labels ?? {}) }
    if (!deepEqual(before, after)) {
      this.history.push({
        seq: this.history.length + 1, atNs: hrtimeNs(), wallTime: new Date().toISOString(), namespace, pod: name,
        uid: (next ?? prev)!.metadata.uid, cause, resourceVersion: String(rv), before, after
      })
    }
    // A deleted object is reported with the resourceVersion of its deletion, as etcd does.
    const deleted = next === null && prev !== null ? { ...deepClone(prev), metadata: { ...deepClone(prev.metadata), resourceVersion: String(rv) } } : null
    const ev: StoredEvent = { rv, namespace, prev: prev === null ? null : deepClone(prev), cur: next === null ? null : deepClone(next) }
    if (deleted !== null) ev.prev = deleted
    this.eventLog.push(ev)
    if (this.eventLog.length > this.eventWindow) this.eventLog.splice(0, this.eventLog.length - this.eventWindow)
    for (const w of this.watchers) this.sendEvent(w, ev)
    this.events.emit('pod:changed', { namespace, name, pod: next === null ? null : deepClone(next), labelsChanged: !deepEqual(before, after) })
  }

  // ---------------------------------------------------------------- history and introspection

  /** Every change of every pod's labels, oldest first. */
  labelHistory (): LabelChange[] { return this.history.map((h) => ({ ...h })) }

  /**
   * Replays the full label history and returns the largest number of pods that carried `key=value` at the same
   * time (optionally only pods of `namespace`), with the change at which it happened.
   */
  maxSimultaneous (key: string, value = 'true', namespace?: string): { max: number, at?: LabelChange, holders: string[] } {
    const holding = new Set<string>()
    let best: { max: number, at?: LabelChange, holders: string[] } = { max: 0, holders: [] }
    for (const h of this.history) {
      if (namespace !== undefined && h.namespace !== namespace) continue
      const k = `${h.namespace}/${h.pod}#${h.uid}`
      if (h.after?.[key] === value) holding.add(k)
      else holding.delete(k)
      if (holding.size > best.max) best = { max: holding.size, at: h, holders: [...holding] }
    }
    return best
  }

  /** The pods labelled `key=value` now. */
  holders (key: string, value = 'true', namespace?: string): string[] {
    return [...this.pods.values()]
      .filter((p) => (namespace === undefined || p.metadata.namespace === namespace) && p.metadata.labels?.[key] === value)
      .map((p) => p.metadata.name).sort()
  }

  requestLog (): RequestRecord[] { return this.requests.map((r) => ({ ...r })) }

  get resourceVersion (): string { return String(this.rv) }

  // ---------------------------------------------------------------- fault injection

  /** Adds a rule; returns a function that removes it. Rules are checked in the order added. */
  inject (rule: FaultRule): () => void {
    if (rule.status === undefined && rule.reset !== true && rule.hold !== true) throw new Error('a fault rule needs a status, reset: true or hold: true')
    const f: ActiveFault = { ...rule, id: this.nextFaultId++, hits: 0 }
    this.faults.push(f)
    return () => { this.faults = this.faults.filter((x) => x.id !== f.id) }
  }

  clearFaults (): void { this.faults = [] }

  private held: Array<() => void> = []

  /** Number of requests currently held by `hold` rules. */
  get heldCount (): number { return this.held.length }

  /** Lets every held request proceed (in arrival order). */
  releaseHeld (): void {
    const h = this.held
    this.held = []
    for (const r of h) r()
  }

  /** Delays every request (of `verbs`, or all) by `ms` before it is answered. 0 turns it off. */
  setLatency (ms: number, verbs?: Verb[]): void { this.latency = verbs === undefined ? { ms } : { ms, verbs } }

  /**
   * The API becomes unreachable now: `refuse` closes the listener (connection refused), `reset` accepts and
   * destroys connections. Open connections (watches) are cut either way. With `ms`, it ends by itself.
   */
  async beginOutage (mode: 'refuse' | 'reset' = 'refuse', ms?: number): Promise<void> {
    if (this.status !== 'started') throw new Error('emulator not started')
    clearTimeout(this.outageTimer)
    this.outageMode = mode
    for (const w of this.watchers) this.endWatch(w, true)
    if (mode === 'refuse') await this.closeListener()
    else for (const s of this.sockets) s.destroy()
    if (ms !== undefined) {
      this.outageTimer = setTimeout(() => { void this.endOutage().catch((err: unknown) => this.log?.error({ err }, 'ending the outage failed')) }, ms)
    }
  }

  /** The API is back, on the same port. */
  async endOutage (): Promise<void> {
    clearTimeout(this.outageTimer)
    const mode = this.outageMode
    this.outageMode = undefined
    if (mode === 'refuse' && this.status === 'started' && this.server === undefined) await this.listen()
  }

  get inOutage (): boolean { return this.outageMode !== undefined }

  // ---------------------------------------------------------------- kubeconfig

  /** A kubeconfig for this emulator (plain http, so `insecure-skip-tls-verify` keeps the client off TLS checks). */
  kubeconfigYaml (opts: { namespace?: string, token?: string, user?: string } = {}): string {
    const user = opts.user ?? 'vectis'
    return yamlStringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'emulator', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: user, user: opts.token !== undefined ? { token: opts.token } : {} }],
      contexts: [{ name: 'emulator', context: { cluster: 'emulator', user, namespace: opts.namespace ?? 'default' } }],
      'current-context': 'emulator'
    })
  }

  async writeKubeconfig (path: string, opts: { namespace?: string, token?: string, user?: string } = {}): Promise<string> {
    await writeFile(path, this.kubeconfigYaml(opts), { mode: 0o600 })
    return path
  }

  // ---------------------------------------------------------------- HTTP

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://emulator')
    const method = req.method ?? 'GET'
    const route = this.route(method, url.pathname, url.searchParams)
    const auth = req.headers.authorization
    const token = auth?.startsWith('Bearer ') === true ? auth.slice(7) : undefined
    const contentType = req.headers['content-type']?.split(';')[0]?.trim()
    const rec: RequestRecord = {
      seq: this.requests.length + 1, method, path: url.pathname + url.search, verb: route.verb, status: 0, at: Date.now(),
      ...(route.name !== undefined ? { pod: route.name } : {}),
      ...(contentType !== undefined ? { contentType } : {}),
      ...(token !== undefined ? { token } : {})
    }
    this.requests.push(rec)
    if (this.requests.length > 100_000) this.requests.splice(0, 50_000)

    try {
      const body = method === 'PATCH' ? await readBody(req) : undefined
      if (this.latency.ms > 0 && (this.latency.verbs === undefined || (route.verb !== 'other' && this.latency.verbs.includes(route.verb)))) {
        await new Promise((resolve) => setTimeout(resolve, this.latency.ms))
      }
      if (this.outageMode !== undefined || this.status !== 'started') { rec.status = 'reset'; req.socket.destroy(); return }

      let fault = this.matchFault(route.verb, route.name, token)
      if (fault?.hold === true) {
        await new Promise<void>((resolve) => this.held.push(resolve))
        if (this.outageMode !== undefined || this.status !== 'started') { rec.status = 'reset'; req.socket.destroy(); return }
        fault = undefined
      }
      if (fault !== undefined) {
        if (fault.reset === true) { rec.status = 'reset'; req.socket.destroy(); return }
        rec.status = fault.status!
        this.sendFault(res, fault, route)
        return
      }
      if (this.tokens !== undefined && (token === undefined || !this.tokens.has(token))) {
        rec.status = 401
        this.sendJson(res, 401, statusBody(401, 'Unauthorized', 'Unauthorized'))
        return
      }
      rec.status = this.dispatch(route, url.searchParams, body, contentType, res)
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        rec.status = 413
        this.sendJson(res, 413, statusBody(413, 'RequestEntityTooLarge', 'Request entity too large: limit is 1048576'))
        return
      }
      this.log?.error({ err }, 'emulator request failed')
      rec.status = 500
      if (!res.headersSent) this.sendJson(res, 500, statusBody(500, 'InternalError', `Internal error occurred: ${(err as Error).message}`))
      else res.destroy()
    }
  }

  private route (method: string, path: string, q: URLSearchParams): { verb: Verb | 'other', namespace?: string, name?: string, kind: 'pod' | 'pods' | 'version' | 'none' } {
    const one = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(path)
    if (one !== null) {
      const namespace = decodeURIComponent(one[1]!)
      const name = decodeURIComponent(one[2]!)
      if (method === 'GET') return { verb: 'get', namespace, name, kind: 'pod' }
      if (method === 'PATCH') return { verb: 'patch', namespace, name, kind: 'pod' }
      return { verb: 'other', namespace, name, kind: 'pod' }
    }
    const many = /^\/api\/v1\/(?:namespaces\/([^/]+)\/)?pods$/.exec(path)
    if (many !== null) {
      const namespace = many[1] === undefined ? undefined : decodeURIComponent(many[1])
      const watch = q.get('watch') === 'true' || q.get('watch') === '1'
      const verb = method === 'GET' ? (watch ? 'watch' : 'list') : 'other'
      return namespace === undefined ? { verb, kind: 'pods' } : { verb, namespace, kind: 'pods' }
    }
    if (path === '/version' && method === 'GET') return { verb: 'other', kind: 'version' }
    return { verb: 'other', kind: 'none' }
  }

  private matchFault (verb: Verb | 'other', pod: string | undefined, token: string | undefined): ActiveFault | undefined {
    for (const f of this.faults) {
      if (f.verbs !== undefined && (verb === 'other' || !f.verbs.includes(verb))) continue
      if (f.pods !== undefined && (pod === undefined || !f.pods.includes(pod))) continue
      if (f.token !== undefined && f.token !== token) continue
      f.hits++
      if (f.times !== undefined && f.hits >= f.times) this.faults = this.faults.filter((x) => x.id !== f.id)
      return f
    }
    return undefined
  }

  private sendFault (res: ServerResponse, f: ActiveFault, route: { verb: Verb | 'other', namespace?: string, name?: string }): void {
    const code = f.status!
    const ns = route.namespace ?? ''
    const what = route.name !== undefined ? `pods "${route.name}"` : 'pods'
    switch (code) {
      case 401: this.sendJson(res, 401, statusBody(401, 'Unauthorized', 'Unauthorized')); return
      case 403: {
        const verb = route.verb === 'other' ? 'get' : route.verb
        const scope = ns === '' ? 'at the cluster scope' : `in the namespace "${ns}"`
        this.sendJson(res, 403, statusBody(403, 'Forbidden',
          `${what} is forbidden: User "system:serviceaccount:${ns || 'default'}:vectis" cannot ${verb} resource "pods" in API group "" ${scope}`,
          { ...(route.name !== undefined ? { name: route.name } : {}), kind: 'pods' }))
        return
      }
      case 404: this.sendJson(res, 404, statusBody(404, 'NotFound', `${what} not found`, { name: route.name ?? '', kind: 'pods' })); return
      case 409: this.sendJson(res, 409, statusBody(409, 'Conflict', conflictMessage(route.name ?? ''), { name: route.name ?? '', kind: 'pods' })); return
      case 422: this.sendJson(res, 422, statusBody(422, 'Invalid', 'the server rejected our request due to an error in our request')); return
      case 429: {
        const after = f.retryAfterSeconds ?? 1
        res.setHeader('Retry-After', String(after))
        this.sendJson(res, 429, statusBody(429, 'TooManyRequests', 'Too many requests, please try again later.', { retryAfterSeconds: after }))
        return
      }
      case 500: this.sendJson(res, 500, statusBody(500, 'InternalError', 'Internal error occurred: injected fault', { causes: [{ message: 'injected fault' }] })); return
      case 503: {
        if (f.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(f.retryAfterSeconds))
        this.sendJson(res, 503, statusBody(503, 'ServiceUnavailable', 'the server is currently unable to handle the request',
          f.retryAfterSeconds !== undefined ? { retryAfterSeconds: f.retryAfterSeconds } : undefined))
      }
    }
  }

  private dispatch (
    route: { verb: Verb | 'other', namespace?: string, name?: string, kind: string },
    q: URLSearchParams, body: Buffer | undefined, contentType: string | undefined, res: ServerResponse
  ): number {
    if (route.kind === 'version') {
      this.sendJson(res, 200, { major: '1', minor: '33', gitVersion: 'v1.33.0-vectis-emulator', platform: 'linux/amd64' })
      return 200
    }
    if (route.kind === 'none') {
      this.sendJson(res, 404, statusBody(404, 'NotFound', 'the server could not find the requested resource', { causes: [] }))
      return 404
    }
    if (route.verb === 'other') {
      this.sendJson(res, 405, statusBody(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource (emulated: GET, LIST, WATCH, PATCH of pods)'))
      return 405
    }
    let reqs: Requirement[] = []
    if (route.verb === 'list' || route.verb === 'watch') {
      try {
        reqs = parseLabelSelector(q.get('labelSelector') ?? '')
      } catch (err) {
        const msg = err instanceof LabelSelectorError ? err.message : String(err)
        this.sendJson(res, 400, statusBody(400, 'BadRequest', `unable to parse requirement: ${msg}`))
        return 400
      }
    }
    switch (route.verb) {
      case 'get': {
        const p = this.pods.get(podKey(route.namespace!, route.name!))
        if (p === undefined) return this.notFound(res, route.name!)
        this.sendJson(res, 200, p)
        return 200
      }
      case 'list': {
        const items = [...this.pods.values()]
          .filter((p) => (route.namespace === undefined || p.metadata.namespace === route.namespace) && matchesSelector(reqs, p.metadata.labels))
          .sort((a, b) => a.metadata.namespace.localeCompare(b.metadata.namespace) || a.metadata.name.localeCompare(b.metadata.name))
        this.sendJson(res, 200, { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items })
        return 200
      }
      case 'watch': return this.startWatch(route.namespace, reqs, q, res)
      case 'patch': return this.patch(route.namespace!, route.name!, body ?? Buffer.alloc(0), contentType, res)
    }
  }

  private notFound (res: ServerResponse, name: string): number {
    this.sendJson(res, 404, statusBody(404, 'NotFound', `pods "${name}" not found`, { name, kind: 'pods' }))
    return 404
  }

  private patch (namespace: string, name: string, body: Buffer, contentType: string | undefined, res: ServerResponse): number {
    if (contentType !== MERGE_PATCH && contentType !== JSON_PATCH && contentType !== STRATEGIC_MERGE_PATCH) {
      this.sendJson(res, 415, statusBody(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${JSON_PATCH}, ${MERGE_PATCH}, ${STRATEGIC_MERGE_PATCH}`))
      return 415
    }
    const cur = this.pods.get(podKey(namespace, name))
    if (cur === undefined) return this.notFound(res, name)
    let patch: unknown
    try {
      patch = JSON.parse(body.toString('utf8'))
    } catch (err) {
      this.sendJson(res, 400, statusBody(400, 'BadRequest', `error decoding patch: ${(err as Error).message}`))
      return 400
    }
    let next: PodObject
    try {
      const doc = cur as unknown as Json
      if (contentType === JSON_PATCH) next = applyJsonPatch(doc, patch) as unknown as PodObject
      else if (contentType === MERGE_PATCH) {
        if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) throw new PatchFormatError('a merge patch must be a JSON object')
        next = applyMergePatch(doc, patch as Json) as unknown as PodObject
      } else next = applyStrategicMergePatch(doc, patch as Json) as unknown as PodObject
    } catch (err) {
      if (err instanceof PatchFormatError) {
        this.sendJson(res, 400, statusBody(400, 'BadRequest', err.message))
        return 400
      }
      if (err instanceof PatchApplyError) {
        // kube-apiserver's patch handler answers any JSON patch it cannot apply with this generic 422 (no causes).
        this.sendJson(res, 422, statusBody(422, 'Invalid', 'the server rejected our request due to an error in our request'))
        return 422
      }
      throw err
    }
    const invalid = validatePatched(cur, next)
    if (invalid !== undefined) {
      if (invalid.code === 400) this.sendJson(res, 400, statusBody(400, 'BadRequest', invalid.message))
      else {
        this.sendJson(res, 422, statusBody(422, 'Invalid', `Pod "${name}" is invalid: ${invalid.message}`,
          { name, kind: 'Pod', causes: [{ reason: 'FieldValueInvalid', message: invalid.message, field: invalid.field }] }))
      }
      return invalid.code
    }
    if (String(next.metadata.resourceVersion) !== cur.metadata.resourceVersion) {
      this.sendJson(res, 409, statusBody(409, 'Conflict', conflictMessage(name), { name, kind: 'pods' }))
      return 409
    }
    next.status = deepClone(cur.status) // status changes through the main resource are dropped, as on a real server
    if (deepEqual(next, cur)) {
      this.sendJson(res, 200, cur)
      return 200
    }
    this.commit(namespace, cur, next, 'patch')
    this.sendJson(res, 200, next)
    return 200
  }

  private startWatch (namespace: string | undefined, reqs: Requirement[], q: URLSearchParams, res: ServerResponse): number {
    const fromRv = q.get('resourceVersion')
    const w: Watcher = { namespace, reqs, res }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' })
    res.flushHeaders()
    if (fromRv === null || fromRv === '' || fromRv === '0') {
      // "Start at most recent": synthetic ADDED for every current match, then live events.
      for (const p of this.pods.values()) {
        if ((namespace === undefined || p.metadata.namespace === namespace) && matchesSelector(reqs, p.metadata.labels)) {
          writeEvent(res, 'ADDED', p)
        }
      }
    } else {
      const n = Number(fromRv)
      const oldest = this.eventLog[0]?.rv ?? this.rv + 1
      if (!Number.isInteger(n) || n < 0) {
        writeEvent(res, 'ERROR', statusBody(400, 'BadRequest', `invalid resourceVersion "${fromRv}"`))
        res.end()
        return 200
      }
      if (n < oldest - 1 && n < this.rv) {
        writeEvent(res, 'ERROR', statusBody(410, 'Expired', `too old resource version: ${n} (${oldest - 1})`))
        res.end()
        return 200
      }
      for (const ev of this.eventLog) if (ev.rv > n) this.sendEvent(w, ev)
    }
    this.watchers.add(w)
    const timeout = Number(q.get('timeoutSeconds') ?? '')
    if (Number.isFinite(timeout) && timeout > 0) w.timer = setTimeout(() => this.endWatch(w), timeout * 1000)
    res.on('close', () => { clearTimeout(w.timer); this.watchers.delete(w) })
    return 200
  }

  private sendEvent (w: Watcher, ev: StoredEvent): void {
    if (w.namespace !== undefined && ev.namespace !== w.namespace) return
    const was = ev.prev !== null && matchesSelector(w.reqs, ev.prev.metadata.labels)
    const is = ev.cur !== null && matchesSelector(w.reqs, ev.cur.metadata.labels)
    // An object that stops matching the selector is reported DELETED to that watch, one that starts matching
    // ADDED, as the API server's watch cache does.
    if (was && is) writeEvent(w.res, 'MODIFIED', ev.cur!)
    else if (was && !is) writeEvent(w.res, 'DELETED', ev.cur ?? ev.prev!)
    else if (!was && is) writeEvent(w.res, 'ADDED', ev.cur!)
  }

  private endWatch (w: Watcher, abrupt = false): void {
    clearTimeout(w.timer)
    this.watchers.delete(w)
    if (abrupt) w.res.destroy()
    else w.res.end()
  }

  private sendJson (res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body)
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-cache, private' })
    res.end(text)
  }
}

function writeEvent (res: ServerResponse, type: WatchType | 'ERROR', object: unknown): void {
  if (!res.writableEnded && !res.destroyed) res.write(JSON.stringify({ type, object }) + '\n')
}

class BodyTooLarge extends Error { override name = 'BodyTooLarge' }

async function readBody (req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of req) {
    const b = c as Buffer
    size += b.length
    if (size > MAX_BODY) throw new BodyTooLarge()
    chunks.push(b)
  }
  return Buffer.concat(chunks)
}

