/**
 * The label controller: makes the Kubernetes API say which pod is the leader, so the `LoadBalancer` Service whose
 * selector includes `vectis-leader: "true"` routes new connections to it (docs/contract.md §6.1,
 * docs/design.md §3.10).
 *
 * As leader of epoch E, one pass of the reconcile loop does, in this order:
 *   1. LIST the pods of the selector (`VECTIS_POD_SELECTOR`).
 *   2. Every other pod that carries the label, or whose `vectis.io/fenced-epoch` is below E, gets a merge patch
 *      that removes the label (and `vectis.io/epoch`) and writes `vectis.io/fenced-epoch: "E"`, conditional on the
 *      resourceVersion seen in the LIST (409 if it changed: re-list). Fencing every other pod, not only the
 *      labelled ones, closes the window of a deposed leader's label write still in flight: that write either lands
 *      before our fence (and our fence removes it) or after (and its `test` fails, below).
 *   3. Its own pod gets a JSON patch: `test` of the resourceVersion seen and of the `vectis.io/fenced-epoch` value
 *      seen, then `add` of the label and of `vectis.io/epoch: "E"`. If a newer leader fenced this pod in between,
 *      the `test` fails (422) and the next pass finds the pod fenced by a newer epoch: this member never labels
 *      itself again for E ('labels:fenced').
 *   4. Only then is the leadership's label "ready" ('labels:ready', `waitReady()`): the PeSIT servers wait for it.
 * As a standby (or a leader whose lease has expired), a pass removes the label from its own pod if it is there.
 * On `leader:demoted` and in `stop()` the removal of its own label is the first thing done.
 *
 * Every write of a leader calls `leadership.isLeader()` synchronously in the client's last middleware, right before
 * the request goes on the wire (the removal of its own label is exempt: it is always safe).
 *
 * The loop runs on every leadership event, on every watch event, and on a jittered periodic resync, until the
 * labels are right; failures back off exponentially (capped, jittered, honouring Retry-After) and never stop it.
 *
 * NOT guaranteed: that the API's view matches traffic at every instant (kube-proxy and load balancers apply a label
 * change about a second later), nor anything about pods outside the selector. Fencing relies on the leadership's
 * lease: a member whose clock runs so fast that its lease outlives the new leader's takeover could write before
 * being fenced; the `test` operations still keep it from re-labelling itself after the fence has landed.
 */
import type { KubeConfig, V1Pod } from '@kubernetes/client-node'
import { monotonicClock, jitter, type Clock } from '../common/clock.js'
import type { Logger } from '../common/logger.js'
import type { Startable } from '../common/lifecycle.js'
import { TypedEmitter } from '../common/typed-events.js'
import { deferred, type Deferred } from '../common/deferred.js'
import type { Epoch, LeaderElectedEvent, Leadership } from '../cluster/leadership-api.js'
import { K8sPodClient, pointerToken, type JsonPatchOp, type PatchOptions } from './client.js'
import { FencedError, K8sApiError, K8sConfigError, type K8sVerb } from './errors.js'
import { DEFAULT_LEADER_LABEL, DEFAULT_POD_SELECTOR, EPOCH_ANNOTATION, FENCED_EPOCH_ANNOTATION } from './defaults.js'
import { labelKeyError, matchesSelector, validatePodSelector, type Requirement } from './label-selector.js'

/** Defaults; each trades reaction time against API load. */
export const LABEL_DEFAULTS = {
  /** Periodic full check even without events (a missed watch event is repaired within this, ±20 %). */
  resyncMs: 30_000,
  /** First retry after a failure; doubles per consecutive failure. */
  backoffBaseMs: 200,
  /** Cap of the retry delay: after a long API outage the labels are right at most this long after it ends. */
  backoffMaxMs: 5_000,
  /** One API call that takes longer is abandoned and retried. */
  requestTimeoutMs: 5_000,
  /** stop(): how long the removal of its own label may take before giving up. */
  stopTimeoutMs: 3_000,
  /** Server-side timeout of one watch request; it is re-opened after. */
  watchTimeoutSeconds: 300
} as const

/** Narrow metric handles: a prom-client Counter / Gauge (without labels) fits. */
export interface K8sLabelMetrics {
  /** `vectis_k8s_label_errors_total` */
  labelErrorsTotal?: { inc(): void }
  /** `vectis_k8s_labels_in_sync` */
  labelsInSync?: { set(value: number): void }
}

export interface K8sLabelComponents {
  logger: Logger
  leadership: Leadership
  clock?: Clock
  metrics?: K8sLabelMetrics
}

export interface K8sLabelInit {
  namespace: string
  podName: string
  /** `VECTIS_POD_SELECTOR`; default `app=vectis`. */
  selector?: string
  /** `VECTIS_LEADER_LABEL`; default `vectis-leader`. */
  label?: string
  kubeConfig: KubeConfig
  resyncMs?: number
  backoffBaseMs?: number
  backoffMaxMs?: number
  requestTimeoutMs?: number
  stopTimeoutMs?: number
  watchTimeoutSeconds?: number
  random?: () => number
}

export interface K8sLabelStatus {
  enabled: boolean
  inSync: boolean
  role?: 'leader' | 'standby'
  /** Epoch of the leadership the labels were last made right for. */
  epoch?: number
  lastError?: string
  lastErrorAt?: string
  /** Set while the API refuses us for lack of RBAC, e.g. `patch pods`. */
  missingPermission?: string
}

export type K8sLabelEvents = {
  /** This leadership's own pod is labelled and every other pod fenced: the servers may start. */
  'labels:ready': { epoch: Epoch }
  /** In-sync state changed. */
  'labels:sync': { inSync: boolean }
  /**
   * Our pod was fenced by a newer epoch: this leadership must not serve, even while its lease runs (the daemon
   * stops its PeSIT servers). Errors have no event: they are logged, counted and shown in `status()`.
   */
  'labels:fenced': { epoch: Epoch, fencedEpoch: number }
}

interface LabelledLeadership {
  epoch: Epoch
  signal: AbortSignal
  ready: boolean
  /** The newer epoch that fenced this leadership's pod, once seen: it never labels itself again. */
  fencedBy: number | undefined
  waiters: Array<{ resolve: (e: Epoch) => void, reject: (err: Error) => void }>
}

function annotation (pod: V1Pod, key: string): string | undefined { return pod.metadata?.annotations?.[key] }
function epochValue (v: string | undefined): number | undefined {
  if (v === undefined || !/^\d+$/.test(v)) return undefined
  return Number(v)
}

export class K8sLabelController implements Startable {
  readonly events = new TypedEmitter<K8sLabelEvents>()
  private readonly log: Logger
  private readonly leadership: Leadership
  private readonly clock: Clock
  private readonly metrics: K8sLabelMetrics
  private readonly client: K8sPodClient
  private readonly namespace: string
  private readonly podName: string
  private readonly selector: string
  private readonly selectorReqs: Requirement[]
  private readonly label: string
  private readonly cfg: Required<Omit<K8sLabelInit, 'namespace' | 'podName' | 'selector' | 'label' | 'kubeConfig'>>

  private state: 'idle' | 'started' | 'stopping' | 'stopped' = 'idle'
  private lead: LabelledLeadership | undefined
  private leadAbort: AbortController | undefined
  private runAbort = new AbortController()
  private kick: Deferred = deferred()
  private loopDone: Promise<void> | undefined
  private timer: NodeJS.Timeout | undefined
  private timerDue = Infinity
  private inBackoff = false
  /** No API write before this (monotonic ms): the server's Retry-After. */
  private notBefore = 0
  /** A leadership change woke the loop since the current pass began. */
  private urgentPending = false
  private failures = 0
  private conflicts = 0
  private inSync = false
  private syncedEpoch: number | undefined
  private lastError: { message: string, at: string } | undefined
  private missingPermission: string | undefined
  private readonly reportedAuth = new Set<string>()
  private unsubscribe: Array<() => void> = []
  private watch: { abort(): void } | undefined
  private watchTimer: NodeJS.Timeout | undefined
  private watchFailures = 0
  private watchMissingPermission: string | undefined

  constructor (components: K8sLabelComponents, init: K8sLabelInit) {
    this.log = components.logger.child({ component: 'cluster:k8s-labels' })
    this.leadership = components.leadership
    this.clock = components.clock ?? monotonicClock
    this.metrics = components.metrics ?? {}
    if (init.namespace === '') throw new K8sConfigError('POD_NAMESPACE must not be empty')
    if (init.podName === '') throw new K8sConfigError('POD_NAME must not be empty')
    this.namespace = init.namespace
    this.podName = init.podName
    this.selector = init.selector ?? DEFAULT_POD_SELECTOR
    this.label = init.label ?? DEFAULT_LEADER_LABEL
    const keyErr = labelKeyError(this.label)
    if (keyErr !== undefined) throw new K8sConfigError(`VECTIS_LEADER_LABEL: ${keyErr}`)
    // The daemon's configuration already ran the same check (exit code 2 before anything starts).
    try {
      this.selectorReqs = validatePodSelector(this.selector, this.label)
    } catch (err) {
      throw new K8sConfigError(`VECTIS_POD_SELECTOR: ${(err as Error).message}`, { cause: err })
    }
    this.cfg = {
      resyncMs: init.resyncMs ?? LABEL_DEFAULTS.resyncMs,
      backoffBaseMs: init.backoffBaseMs ?? LABEL_DEFAULTS.backoffBaseMs,
      backoffMaxMs: init.backoffMaxMs ?? LABEL_DEFAULTS.backoffMaxMs,
      requestTimeoutMs: init.requestTimeoutMs ?? LABEL_DEFAULTS.requestTimeoutMs,
      stopTimeoutMs: init.stopTimeoutMs ?? LABEL_DEFAULTS.stopTimeoutMs,
      watchTimeoutSeconds: init.watchTimeoutSeconds ?? LABEL_DEFAULTS.watchTimeoutSeconds,
      random: init.random ?? Math.random
    }
    if (this.cfg.backoffBaseMs <= 0 || this.cfg.backoffMaxMs < this.cfg.backoffBaseMs) {
      throw new K8sConfigError('label controller: backoffBaseMs must be > 0 and backoffMaxMs >= backoffBaseMs')
    }
    this.client = new K8sPodClient(init.kubeConfig, { namespace: this.namespace, requestTimeoutMs: this.cfg.requestTimeoutMs })
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * `elected`: the event of a leadership won before this start (when the daemon started the controller late), so
   * that the pickup below ends with that leadership's signal; without it the pickup relies on `leader:demoted`.
   */
  async start (elected?: LeaderElectedEvent): Promise<void> {
    if (this.state !== 'idle') return
    this.state = 'started'
    this.runAbort = new AbortController()
    this.unsubscribe = [
      this.leadership.events.on('leader:elected', (e) => { this.onElected(e.epoch, e.signal) }),
      this.leadership.events.on('leader:demoted', (e) => { this.onDemoted(e.epoch, e.reason) })
    ]
    this.metrics.labelsInSync?.set(0)
    this.loopDone = this.loop()
    this.openWatch()
    // A leadership that began before we subscribed (the parts start in order) is picked up here.
    const epoch = this.leadership.currentEpoch()
    if (epoch !== undefined && this.leadership.isLeader()) {
      const same = elected !== undefined && !elected.signal.aborted && elected.epoch.number === epoch.number && elected.epoch.leader === epoch.leader
      this.onElected(epoch, same ? elected.signal : new AbortController().signal)
    }
    else this.wake(true)
    this.log.info({ namespace: this.namespace, pod: this.podName, selector: this.selector, label: this.label }, 'label controller started')
  }

  /** Removes its own label first (bounded by stopTimeoutMs), then releases the watch and timers. */
  async stop (): Promise<void> {
    if (this.state !== 'started') return
    this.state = 'stopping'
    for (const u of this.unsubscribe) u()
    this.unsubscribe = []
    this.endLead(new Error('label controller stopped'))
    this.runAbort.abort()
    this.kick.resolve()
    await this.loopDone
    try {
      await this.removeOwnLabel(AbortSignal.timeout(this.cfg.stopTimeoutMs))
      this.log.info('own leader label removed at stop')
    } catch (err) {
      this.log.warn({ err }, 'could not remove the own leader label at stop (the next leader fences it)')
    }
    this.watch?.abort()
    this.watch = undefined
    clearTimeout(this.watchTimer)
    clearTimeout(this.timer)
    this.setInSync(false)
    this.state = 'stopped'
  }

  status (): K8sLabelStatus {
    const s: K8sLabelStatus = { enabled: true, inSync: this.inSync, role: this.lead !== undefined ? 'leader' : 'standby' }
    if (this.syncedEpoch !== undefined) s.epoch = this.syncedEpoch
    if (this.lastError !== undefined) { s.lastError = this.lastError.message; s.lastErrorAt = this.lastError.at }
    const missing = this.missingPermission ?? this.watchMissingPermission
    if (missing !== undefined) s.missingPermission = missing
    return s
  }

  /**
   * Resolves once the current leadership's labels are ready (own pod labelled, others fenced). Rejects when the
   * leadership ends first, when this member is fenced, or when `signal` aborts.
   */
  async waitReady (signal?: AbortSignal): Promise<Epoch> {
    const lead = this.lead
    if (lead === undefined) throw new Error('not leader: no labels to wait for')
    if (lead.ready) return lead.epoch
    if (lead.fencedBy !== undefined) throw new FencedError(lead.epoch.number, lead.fencedBy)
    signal?.throwIfAborted()
    return await new Promise<Epoch>((resolve, reject) => {
      const onAbort = (): void => { reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted')) }
      signal?.addEventListener('abort', onAbort, { once: true })
      lead.waiters.push({
        resolve: (e) => { signal?.removeEventListener('abort', onAbort); resolve(e) },
        reject: (err) => { signal?.removeEventListener('abort', onAbort); reject(err) }
      })
    })
  }

  // ---------------------------------------------------------------- leadership events

  private onElected (epoch: Epoch, signal: AbortSignal): void {
    if (this.state !== 'started') return
    this.endLead(new Error(`superseded by epoch ${epoch.number}`))
    const abort = new AbortController()
    const lead: LabelledLeadership = { epoch, signal: AbortSignal.any([signal, abort.signal]), ready: false, fencedBy: undefined, waiters: [] }
    this.lead = lead
    this.leadAbort = abort
    signal.addEventListener('abort', () => { if (this.lead === lead) this.onDemoted(epoch, 'shutdown') }, { once: true })
    this.setInSync(false)
    this.log.info({ epoch: epoch.number }, 'elected: fencing other pods, then labelling this one')
    this.wake(true)
  }

  private onDemoted (epoch: Epoch, reason: string): void {
    if (this.lead === undefined) return
    // A late event about an older leadership must not end the current one (its own signal ends it).
    if (epoch.number < this.lead.epoch.number) return
    this.log.info({ epoch: epoch.number, reason }, 'demoted: removing the leader label from this pod')
    this.endLead(new Error(`leadership of epoch ${epoch.number} ended (${reason})`))
    this.setInSync(false)
    this.wake(true)
  }

  private endLead (reason: Error): void {
    const lead = this.lead
    if (lead === undefined) return
    this.lead = undefined
    this.leadAbort?.abort(reason)
    this.leadAbort = undefined
    for (const w of lead.waiters) w.reject(reason)
    lead.waiters = []
  }

  // ---------------------------------------------------------------- the loop

  /** `urgent` (leadership changes): run now even during a backoff. Otherwise (watch events) respect the backoff. */
  private wake (urgent = false): void {
    if (this.state !== 'started') return
    if (this.inBackoff && !urgent) return
    if (urgent) { this.inBackoff = false; this.failures = 0; this.conflicts = 0; this.urgentPending = true }
    this.kick.resolve()
  }

  private schedule (ms: number, backoff: boolean): void {
    const due = this.clock.now() + ms
    if (!backoff && !this.inBackoff && due >= this.timerDue) return // an earlier wake-up is already set
    clearTimeout(this.timer)
    this.inBackoff = backoff
    this.timerDue = due
    this.timer = setTimeout(() => {
      this.timerDue = Infinity
      this.inBackoff = false
      this.kick.resolve()
    }, Math.max(0, ms))
  }

  private async loop (): Promise<void> {
    while (this.state === 'started') {
      await this.kick.promise
      if (this.state !== 'started') break
      this.kick = deferred()
      // The API server asked us to wait (429/503 Retry-After): no pass writes before then, whatever woke the loop
      // (a leadership change, a watch event, one that arrived while the refused pass ran); it would only be
      // refused again and add to the overload.
      const wait = this.notBefore - this.clock.now()
      if (wait > 0) { this.schedule(wait, true); continue }
      this.urgentPending = false
      try {
        const lead = this.lead
        if (lead !== undefined && lead.fencedBy === undefined && !lead.signal.aborted && this.leadership.isLeader()) {
          await this.reconcileLeader(lead)
        } else {
          await this.reconcileStandby()
        }
        this.onPassOk()
      } catch (err) {
        this.onPassFailed(err)
      }
    }
  }

  private onPassOk (): void {
    if (this.failures > 0) this.log.info({ failures: this.failures }, 'labels reconciled after API errors')
    this.failures = 0
    this.conflicts = 0
    this.missingPermission = undefined
    this.reportedAuth.clear()
    this.setInSync(true)
    this.schedule(jitter(this.cfg.resyncMs, 0.2, this.cfg.random), false)
  }

  private onPassFailed (err: unknown): void {
    this.setInSync(false)
    if (this.state !== 'started') return
    if (err instanceof K8sApiError && (err.failure === 'aborted' || err.failure === 'not-leader')) {
      // Leadership ended mid-pass: the next pass (already kicked by the event) runs as standby.
      this.log.debug({ err }, 'pass interrupted by a leadership change')
      this.schedule(0, false)
      return
    }
    if (err instanceof FencedError) return // handled where it was detected; next pass runs as standby
    if (err instanceof K8sApiError && err.isConflict) {
      // Someone wrote between our read and our write: read again soon. Not an error unless it keeps happening.
      this.conflicts++
      if (this.conflicts <= 5) {
        this.log.debug({ err }, 'write conflict: reading again')
        this.schedule(jitter(this.cfg.backoffBaseMs / 4, 0.5, this.cfg.random), true)
        return
      }
    }
    this.failures++
    const e = err instanceof K8sApiError || err instanceof K8sConfigError
      ? err
      : new K8sConfigError(`label reconcile failed: ${(err as Error).message}`, { cause: err })
    this.recordError(e)
    let delay = Math.min(this.cfg.backoffMaxMs, this.cfg.backoffBaseMs * 2 ** Math.min(this.failures - 1, 20))
    delay = jitter(delay, 0.2, this.cfg.random)
    if (e instanceof K8sApiError && e.retryAfterMs !== undefined) {
      delay = Math.max(delay, e.retryAfterMs)
      this.notBefore = this.clock.now() + e.retryAfterMs
    }
    // Watch events during the failed pass do not cut the backoff short; a leadership change does.
    if (!this.urgentPending) this.kick = deferred()
    this.schedule(delay, true)
  }

  private recordError (e: K8sApiError | K8sConfigError): void {
    this.metrics.labelErrorsTotal?.inc()
    this.lastError = { message: e.message, at: new Date(this.clock.wallNow()).toISOString() }
    if (e instanceof K8sApiError && e.isAuth) {
      const perm = `${e.verb} pods`
      this.missingPermission = perm
      if (!this.reportedAuth.has(perm)) {
        this.reportedAuth.add(perm)
        const what = e.status === 401
          ? 'the API server does not accept this pod\'s credentials (401): check the ServiceAccount token / KUBECONFIG'
          : `RBAC forbids "${e.verb}" on "pods" in namespace "${this.namespace}": bind the pod's ServiceAccount to a Role with verbs get, list, watch, patch on resource pods (deploy/base/rbac.yaml)`
        this.log.error({ verb: e.verb, resource: 'pods', namespace: this.namespace, status: e.status }, `leader label cannot be managed: ${what}`)
      }
      return
    }
    if (this.failures === 1) this.log.warn({ err: e }, 'label reconcile failed; retrying with backoff')
    else this.log.debug({ err: e, failures: this.failures }, 'label reconcile failed again')
  }

  private setInSync (v: boolean): void {
    if (v) this.syncedEpoch = this.lead?.epoch.number
    if (v === this.inSync) return
    this.inSync = v
    this.metrics.labelsInSync?.set(v ? 1 : 0)
    this.events.emit('labels:sync', { inSync: v })
  }

  // ---------------------------------------------------------------- reconcile

  private async reconcileStandby (): Promise<void> {
    const pod = await this.client.getPod(this.podName, { signal: this.runAbort.signal })
    if (this.hasLeaderMarks(pod)) {
      await this.removeOwnLabel(this.runAbort.signal)
      this.log.info('this member is not leader: removed the leader label from its own pod')
    }
  }

  private hasLeaderMarks (pod: V1Pod): boolean {
    return pod.metadata?.labels?.[this.label] !== undefined || annotation(pod, EPOCH_ANNOTATION) !== undefined
  }

  /** Always allowed (no lease check): removing our own label can only ever make things safer. */
  private async removeOwnLabel (signal: AbortSignal): Promise<void> {
    await this.client.patchPod(this.podName, 'merge', {
      metadata: { labels: { [this.label]: null }, annotations: { [EPOCH_ANNOTATION]: null } }
    }, { signal })
  }

  private guarded (lead: LabelledLeadership): PatchOptions {
    return { signal: AbortSignal.any([lead.signal, this.runAbort.signal]), guard: () => this.leadership.isLeader() && !lead.signal.aborted }
  }

  private async reconcileLeader (lead: LabelledLeadership): Promise<void> {
    const E = lead.epoch.number
    const signal = AbortSignal.any([lead.signal, this.runAbort.signal])
    const list = await this.client.listPods(this.selector, { signal })
    let own = list.items.find((p) => p.metadata?.name === this.podName)
    if (own === undefined) {
      const pod = await this.client.getPod(this.podName, { signal })
      if (!matchesSelector(this.selectorReqs, pod.metadata?.labels)) {
        throw new K8sConfigError(`this pod (${this.podName}) does not match VECTIS_POD_SELECTOR "${this.selector}": the leader label would never be routed`)
      }
      own = pod
    }

    // A newer leader already fenced us, or labelled itself with a newer epoch: we must not take the label.
    // The epoch reported is the one that did it: our pod's fence if newer than E, else the labelled pod's epoch.
    const ownFenced = epochValue(annotation(own, FENCED_EPOCH_ANNOTATION))
    const newerLabelled = list.items.flatMap((p) => {
      if (p.metadata?.name === this.podName || p.metadata?.labels?.[this.label] === undefined) return []
      const epoch = epochValue(annotation(p, EPOCH_ANNOTATION))
      return epoch !== undefined && epoch > E ? [epoch] : []
    })[0]
    const fencedBy = ownFenced !== undefined && ownFenced > E ? ownFenced : newerLabelled
    if (fencedBy !== undefined) {
      this.onFenced(lead, fencedBy)
      throw new FencedError(E, fencedBy)
    }

    // 1. Fence every other pod of the selector, in parallel (the hand-over waits for the slowest one only).
    const fences = list.items.flatMap((p) => {
      const name = p.metadata?.name
      if (name === undefined || name === this.podName) return []
      const labelled = p.metadata?.labels?.[this.label] !== undefined
      const fenced = epochValue(annotation(p, FENCED_EPOCH_ANNOTATION))
      if (!labelled && annotation(p, EPOCH_ANNOTATION) === undefined && fenced !== undefined && fenced >= E) return []
      return [this.client.patchPod(name, 'merge', {
        metadata: {
          resourceVersion: p.metadata?.resourceVersion,
          labels: { [this.label]: null },
          annotations: { [FENCED_EPOCH_ANNOTATION]: String(E), [EPOCH_ANNOTATION]: null }
        }
      }, this.guarded(lead)).then(() => {
        if (labelled) this.log.info({ pod: name, epoch: E }, 'removed the leader label from another pod (fenced)')
      })]
    })
    const failed = (await Promise.allSettled(fences)).flatMap((r) => r.status === 'rejected' ? [r.reason as Error] : [])
    // A pod deleted meanwhile has nothing left to route to; any other failure stops this pass before we label.
    const blocking = failed.find((e) => !(e instanceof K8sApiError && e.isNotFound))
    if (blocking !== undefined) throw blocking

    // 2. Label our own pod, unless a newer epoch fenced it since we read it.
    const labelledNow = own.metadata?.labels?.[this.label] === 'true' && annotation(own, EPOCH_ANNOTATION) === String(E)
    if (!labelledNow) {
      const ops: JsonPatchOp[] = [{ op: 'test', path: '/metadata/resourceVersion', value: own.metadata?.resourceVersion }]
      if (ownFenced !== undefined) {
        ops.push({ op: 'test', path: `/metadata/annotations/${pointerToken(FENCED_EPOCH_ANNOTATION)}`, value: annotation(own, FENCED_EPOCH_ANNOTATION) })
      }
      if (own.metadata?.labels === undefined) ops.push({ op: 'add', path: '/metadata/labels', value: { [this.label]: 'true' } })
      else ops.push({ op: 'add', path: `/metadata/labels/${pointerToken(this.label)}`, value: 'true' })
      if (own.metadata?.annotations === undefined) ops.push({ op: 'add', path: '/metadata/annotations', value: { [EPOCH_ANNOTATION]: String(E) } })
      else ops.push({ op: 'add', path: `/metadata/annotations/${pointerToken(EPOCH_ANNOTATION)}`, value: String(E) })
      await this.client.patchPod(this.podName, 'json', ops, this.guarded(lead))
      this.log.info({ epoch: E }, 'labelled this pod as the leader')
    }

    if (!lead.ready && this.lead === lead) {
      lead.ready = true
      for (const w of lead.waiters) w.resolve(lead.epoch)
      lead.waiters = []
      this.events.emit('labels:ready', { epoch: lead.epoch })
    }
  }

  private onFenced (lead: LabelledLeadership, fencedEpoch: number): void {
    if (lead.fencedBy !== undefined) return
    lead.fencedBy = fencedEpoch
    const err = new FencedError(lead.epoch.number, fencedEpoch)
    this.log.error({ epoch: lead.epoch.number, fencedEpoch }, 'this pod was fenced by a newer leader: not labelling it')
    for (const w of lead.waiters) w.reject(err)
    lead.waiters = []
    this.events.emit('labels:fenced', { epoch: lead.epoch, fencedEpoch })
    this.wake(true)
  }

  // ---------------------------------------------------------------- watch

  private openWatch (): void {
    if (this.state !== 'started') return
    this.client.watchPods(this.selector, { timeoutSeconds: Math.round(jitter(this.cfg.watchTimeoutSeconds, 0.2, this.cfg.random)) },
      (type, obj) => {
        this.watchFailures = 0
        this.watchMissingPermission = undefined
        if (type === 'BOOKMARK') return
        const name = (obj as V1Pod | undefined)?.metadata?.name
        // A standby only cares about its own pod; the leader about all of them.
        if (this.lead !== undefined || name === this.podName || type === 'ERROR') this.wake()
      },
      (err) => {
        this.watch = undefined
        if (this.state !== 'started') return
        if (err !== undefined) {
          this.watchFailures++
          if (err.isAuth) {
            if (this.watchMissingPermission === undefined) {
              this.log.error({ verb: 'watch', resource: 'pods', namespace: this.namespace, status: err.status },
                `pod watch refused (${err.status ?? ''}): grant "watch" on "pods" to the pod's ServiceAccount; labels are still reconciled periodically`)
            }
            this.watchMissingPermission = 'watch pods'
            this.metrics.labelErrorsTotal?.inc()
          } else this.log.debug({ err }, 'pod watch ended with an error; re-opening')
        }
        const delay = err === undefined ? 0 : Math.min(this.cfg.backoffMaxMs, this.cfg.backoffBaseMs * 2 ** Math.min(this.watchFailures, 20))
        this.watchTimer = setTimeout(() => { this.openWatch() }, jitter(delay, 0.2, this.cfg.random))
      }
    ).then((h) => {
      if (this.state !== 'started') h.abort()
      else this.watch = h
    }, (err: unknown) => {
      this.log.warn({ err }, 'pod watch could not be opened')
      this.watchTimer = setTimeout(() => { this.openWatch() }, this.cfg.backoffMaxMs)
    })
  }
}

export type { K8sVerb }
