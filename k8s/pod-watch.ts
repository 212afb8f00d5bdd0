/**
 * Verified death through the Kubernetes API, for the leadership part (docs/design.md §3.5): watches the pods of
 * the selector and reports, by pod name, a pod deleted (or replaced by a new pod of the same name: another uid)
 * and a container restarted (restartCount went up, or the containerID changed).
 *
 * Either means the process that ran there is gone: a deleted pod's containers are killed, a restarted container is
 * a new process (a new incarnation of the member). A pod that is merely terminating (`deletionTimestamp` set) is
 * NOT reported: its process still runs through its grace period and may still be leader.
 *
 * Each member writes its incarnation on its own pod (annotation `vectis.io/incarnation`, `annotate`), so that a
 * report names the process that died, not only the pod: a report can come late (a re-list after a gap in the
 * watch), when the process that replaced the dead one is already a member, and must not be taken for its death.
 * The annotation a report names is the one the pod carried before the change, with one race handled: a new process
 * may write its annotation before the kubelet reports the restart; a changed annotation itself reports the process
 * that wrote the previous one dead, and the restart that follows is counted as that same death
 * (`IncarnationTracker`).
 *
 * It also remembers which pods carry the leader label (`leaderLabelled`), for the status: what this member saw, as
 * late as the watch is.
 *
 * NOT guaranteed: timeliness. Events arrive when the kubelet and the API report them (a node that dies silently
 * shows nothing until the node controller acts, minutes later); the membership's own failure detection stays the
 * primary path. The first snapshot is a baseline: restarts that happened before `start()` are not reported.
 */
import type { KubeConfig, V1Pod } from '@kubernetes/client-node'
import { jitter } from '../common/clock.js'
import type { Logger } from '../common/logger.js'
import type { Startable } from '../common/lifecycle.js'
import { TypedEmitter } from '../common/typed-events.js'
import { K8sPodClient, type PodWatchHandle } from './client.js'
import { K8sApiError, K8sConfigError } from './errors.js'
import { parseLabelSelector } from './label-selector.js'
import { DEFAULT_LEADER_LABEL, DEFAULT_POD_SELECTOR, INCARNATION_ANNOTATION } from './defaults.js'


export interface ContainerIncarnation { restartCount: number, containerID?: string }

/** What identifies the process(es) of a pod at one moment. */
export interface PodIncarnation {
  name: string
  uid: string
  podIP?: string
  terminating: boolean
  containers: Record<string, ContainerIncarnation>
  /** The incarnation its last process wrote (`INCARNATION_ANNOTATION`), if any. */
  incarnation?: string
}

export type K8sPodWatchEvents = {
  /** The pod (this uid) no longer exists; `incarnation`: the process it last ran, when it wrote its annotation. */
  'pod:deleted': { name: string, uid: string, incarnation?: string }
  /**
   * The process of the pod is a new one (a container restarted, or a new incarnation annotated); `incarnation`: the
   * one that died, when known.
   */
  'pod:restarted': { name: string, uid: string, container?: string, restartCount?: number, containerID?: string, incarnation?: string }
}

export interface K8sPodWatchComponents {
  logger: Logger
}

export interface K8sPodWatchInit {
  namespace: string
  selector?: string
  kubeConfig: KubeConfig
  /** Full re-list (repairs anything a watch gap missed); default 60 s ± 20 %. */
  resyncMs?: number
  requestTimeoutMs?: number
  backoffBaseMs?: number
  backoffMaxMs?: number
  watchTimeoutSeconds?: number
  /** Write this process's incarnation on its own pod (a clustered member). */
  annotate?: { podName: string, incarnation: string }
  /** `VECTIS_LEADER_LABEL`, whose value `"true"` marks the leader's pod; default `vectis-leader`. */
  leaderLabel?: string
}

export function podIncarnation (pod: V1Pod): PodIncarnation | undefined {
  const name = pod.metadata?.name
  const uid = pod.metadata?.uid
  if (name === undefined || uid === undefined) return undefined
  const containers: Record<string, ContainerIncarnation> = {}
  for (const c of pod.status?.containerStatuses ?? []) {
    containers[c.name] = { restartCount: c.restartCount, ...(c.containerID !== undefined && c.containerID !== '' ? { containerID: c.containerID } : {}) }
  }
  const incarnation = pod.metadata?.annotations?.[INCARNATION_ANNOTATION]
  return {
    name, uid, terminating: pod.metadata?.deletionTimestamp !== undefined && pod.metadata.deletionTimestamp !== null, containers,
    ...(pod.status?.podIP !== undefined ? { podIP: pod.status.podIP } : {}),
    ...(incarnation !== undefined && incarnation !== '' ? { incarnation } : {})
  }
}

/** The containers of `now` that are new processes compared to `before` (same pod uid). */
export function restartedContainers (before: PodIncarnation, now: PodIncarnation): Array<{ container: string } & ContainerIncarnation> {
  const out: Array<{ container: string } & ContainerIncarnation> = []
  for (const [name, c] of Object.entries(now.containers)) {
    const b = before.containers[name]
    if (b === undefined) continue
    const idChanged = b.containerID !== undefined && c.containerID !== undefined && b.containerID !== c.containerID
    if (c.restartCount > b.restartCount || idChanged) out.push({ container: name, ...c })
  }
  return out
}

/**
 * Which processes of one pod (one uid) died between two snapshots, by the incarnation they annotated. Only one
 * process of a pod runs at a time, so a new annotation reports the previous one's writer dead, and counts as one
 * restart not yet seen; a restart seen later is matched against those first. A restart beyond them reports the
 * current annotation's writer dead, unless the annotation changed in the same snapshot (the restarts then belong
 * to processes before it: which of them, if any, was its writer is unknown, and an unknown is not a death).
 */
export class IncarnationTracker {
  private unmatched = 0
  private readonly reported = new Set<string>()

  /**
   * The incarnations that died from `before` to `now` (same uid, `restarts` restarts apart), each reported once, and
   * whether a restart is left that none of them accounts for (a process that died without annotating, or whose
   * death was reported already: the report can then name the pod only).
   */
  diff (before: PodIncarnation, now: PodIncarnation, restarts: number): { dead: string[], unaccounted: boolean } {
    const dead: string[] = []
    const changed = before.incarnation !== now.incarnation
    if (changed && before.incarnation !== undefined && !this.reported.has(before.incarnation)) {
      this.reported.add(before.incarnation)
      dead.push(before.incarnation)
      this.unmatched++
    }
    const matched = Math.min(restarts, this.unmatched)
    this.unmatched -= matched
    const left = restarts - matched
    if (left > 0 && !changed && now.incarnation !== undefined && !this.reported.has(now.incarnation)) {
      this.reported.add(now.incarnation)
      dead.push(now.incarnation)
      return { dead, unaccounted: false }
    }
    return { dead, unaccounted: left > 0 && dead.length === 0 }
  }
}

export class K8sPodWatch implements Startable {
  readonly events = new TypedEmitter<K8sPodWatchEvents>()
  private readonly log: Logger
  private readonly client: K8sPodClient
  private readonly selector: string
  private readonly cfg: { resyncMs: number, backoffBaseMs: number, backoffMaxMs: number, watchTimeoutSeconds: number }
  private readonly pods = new Map<string, PodIncarnation>()
  private readonly trackers = new Map<string, IncarnationTracker>()
  /** By pod name: whether it carries the leader label, as last seen. */
  private readonly labelled = new Map<string, boolean>()
  private readonly leaderLabel: string
  private readonly annotate: { podName: string, incarnation: string } | undefined
  private annotating = false
  private annotateFailed = false
  private state: 'idle' | 'started' | 'stopped' = 'idle'
  private watch: PodWatchHandle | undefined
  private timer: NodeJS.Timeout | undefined
  private resyncTimer: NodeJS.Timeout | undefined
  private failures = 0
  private synced = false
  private resyncing = false
  private abort = new AbortController()

  constructor (components: K8sPodWatchComponents, init: K8sPodWatchInit) {
    this.log = components.logger.child({ component: 'cluster:k8s-pod-watch' })
    this.selector = init.selector ?? DEFAULT_POD_SELECTOR
    try {
      parseLabelSelector(this.selector)
    } catch (err) {
      throw new K8sConfigError(`VECTIS_POD_SELECTOR: ${(err as Error).message}`, { cause: err })
    }
    this.cfg = {
      resyncMs: init.resyncMs ?? 60_000,
      backoffBaseMs: init.backoffBaseMs ?? 200,
      backoffMaxMs: init.backoffMaxMs ?? 5_000,
      watchTimeoutSeconds: init.watchTimeoutSeconds ?? 300
    }
    this.client = new K8sPodClient(init.kubeConfig, { namespace: init.namespace, requestTimeoutMs: init.requestTimeoutMs ?? 5_000 })
    this.annotate = init.annotate
    this.leaderLabel = init.leaderLabel ?? DEFAULT_LEADER_LABEL
  }

  /** Never fails for API trouble: the first list is retried in the background. */
  async start (): Promise<void> {
    if (this.state !== 'idle') return
    this.state = 'started'
    this.abort = new AbortController()
    this.relist()
  }

  async stop (): Promise<void> {
    if (this.state !== 'started') return
    this.state = 'stopped'
    this.abort.abort()
    this.watch?.abort()
    this.watch = undefined
    clearTimeout(this.timer)
    clearTimeout(this.resyncTimer)
  }

  /** True once a first list succeeded (events are meaningful only after that). */
  get isSynced (): boolean { return this.synced }

  /**
   * Whether pod `name` carries the leader label (value `"true"`, what the Service selects) as this watch last saw it;
   * undefined before the first list, or for a pod of the selector it has not seen (or saw deleted).
   */
  leaderLabelled (name: string): boolean | undefined {
    return this.synced ? this.labelled.get(name) : undefined
  }

  /** The last known incarnation of a pod. */
  pod (name: string): PodIncarnation | undefined {
    const p = this.pods.get(name)
    return p === undefined ? undefined : structuredClone(p)
  }

  /**
   * Asks the API now: is the process that `before` described gone (pod deleted, replaced, or container
   * restarted)? Throws a K8sApiError when the API cannot answer (no verdict is not a verdict of death).
   */
  async verifyDead (before: PodIncarnation, signal?: AbortSignal): Promise<boolean> {
    try {
      const now = podIncarnation(await this.client.getPod(before.name, signal !== undefined ? { signal } : {}))
      if (now === undefined || now.uid !== before.uid) return true
      return restartedContainers(before, now).length > 0
    } catch (err) {
      if (err instanceof K8sApiError && err.isNotFound) return true
      throw err
    }
  }

  private relist (): void {
    if (this.state !== 'started') return
    this.client.listPods(this.selector, { signal: this.abort.signal }).then((list) => {
      if (this.state !== 'started') return
      const seen = new Set<string>()
      for (const p of list.items) {
        const inc = podIncarnation(p)
        if (inc === undefined) continue
        seen.add(inc.name)
        this.noteLabel(p)
        this.observe(inc)
      }
      for (const [name, prev] of this.pods) {
        if (!seen.has(name)) this.gone(prev)
      }
      // The baseline is taken: from now on a crash of any of these pods is reported (the fast failover path).
      if (!this.synced) this.log.info({ pods: seen.size }, 'pod watch synced')
      this.synced = true
      this.failures = 0
      this.openWatch(list.metadata?.resourceVersion)
      clearTimeout(this.resyncTimer)
      this.resyncTimer = setTimeout(() => {
        // Our own abort ends the watch with an "aborted" error: a planned re-list, not an API failure.
        if (this.watch === undefined) return
        this.resyncing = true
        this.watch.abort()
      }, jitter(this.cfg.resyncMs, 0.2))
    }, (err: unknown) => { this.retry(err) })
  }

  private retry (err: unknown): void {
    if (this.state !== 'started') return
    this.failures++
    const delay = jitter(Math.min(this.cfg.backoffMaxMs, this.cfg.backoffBaseMs * 2 ** Math.min(this.failures - 1, 20)), 0.2)
    if (this.failures === 1) this.log.warn({ err }, 'pod list/watch failed; retrying')
    else this.log.debug({ err, failures: this.failures }, 'pod list/watch failed again')
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { this.relist() }, delay)
  }

  private openWatch (resourceVersion: string | undefined): void {
    if (this.state !== 'started') return
    let needRelist = false
    this.client.watchPods(this.selector, {
      timeoutSeconds: Math.round(jitter(this.cfg.watchTimeoutSeconds, 0.2)),
      ...(resourceVersion !== undefined ? { resourceVersion } : {})
    }, (type, obj) => {
      if (type === 'BOOKMARK') return
      if (type === 'ERROR') { needRelist = true; return } // e.g. 410 Expired: our resourceVersion is too old
      const inc = podIncarnation(obj as V1Pod)
      if (inc === undefined) return
      if (type === 'DELETED') this.gone(inc)
      else {
        this.noteLabel(obj as V1Pod)
        this.observe(inc)
      }
    }, (err) => {
      this.watch = undefined
      const planned = this.resyncing
      this.resyncing = false
      if (this.state !== 'started') return
      // Every end of the watch goes through a fresh LIST: whatever happened during the gap shows up in the diff.
      if (err !== undefined && !planned) this.retry(err)
      else {
        if (needRelist) this.log.debug('watch reported an error event (resourceVersion expired?): listing again')
        this.relist()
      }
    }).then((h) => {
      if (this.state !== 'started') h.abort()
      else this.watch = h
    }, (err: unknown) => { this.retry(err) })
  }

  private observe (now: PodIncarnation): void {
    const prev = this.pods.get(now.name)
    this.pods.set(now.name, now)
    this.annotateOwn(now)
    if (prev === undefined) return
    if (prev.uid !== now.uid) {
      this.log.info({ pod: now.name, uid: prev.uid }, 'pod replaced (old one deleted)')
      this.trackers.delete(prev.uid)
      this.events.emit('pod:deleted', { name: prev.name, uid: prev.uid, ...incarnationOf(prev) })
      return
    }
    const restarted = restartedContainers(prev, now)
    const restarts = restarted.reduce((n, r) => n + Math.max(1, r.restartCount - (prev.containers[r.container]?.restartCount ?? 0)), 0)
    let tracker = this.trackers.get(now.uid)
    if (tracker === undefined) this.trackers.set(now.uid, tracker = new IncarnationTracker())
    const { dead, unaccounted } = tracker.diff(prev, now, restarts)
    for (const r of restarted) {
      this.log.info({ pod: now.name, container: r.container, restartCount: r.restartCount }, 'container restarted')
    }
    const first = restarted[0]
    const container = first === undefined
      ? {}
      : { container: first.container, restartCount: first.restartCount, ...(first.containerID !== undefined ? { containerID: first.containerID } : {}) }
    if (unaccounted) this.events.emit('pod:restarted', { name: now.name, uid: now.uid, ...container })
    for (const incarnation of dead) {
      this.log.info({ pod: now.name, incarnation }, 'process of the pod gone')
      this.events.emit('pod:restarted', { name: now.name, uid: now.uid, ...container, incarnation })
    }
  }

  /** Writes this process's incarnation on its own pod when the pod does not carry it (again after a failure). */
  private annotateOwn (pod: PodIncarnation): void {
    const a = this.annotate
    if (a === undefined || pod.name !== a.podName || pod.incarnation === a.incarnation || this.annotating) return
    this.annotating = true
    const body = { metadata: { annotations: { [INCARNATION_ANNOTATION]: a.incarnation } } }
    this.client.patchPod(a.podName, 'merge', body, { signal: this.abort.signal }).then(() => {
      if (this.annotateFailed) this.log.info({ incarnation: a.incarnation }, 'own pod annotated with this incarnation')
      this.annotateFailed = false
    }, (err: unknown) => {
      if (this.state !== 'started') return
      // Retried at the next event of the pod or the next re-list; meanwhile reports of this member name no incarnation.
      if (!this.annotateFailed) this.log.warn({ err }, `could not write ${INCARNATION_ANNOTATION} on the own pod; retrying`)
      this.annotateFailed = true
    }).finally(() => { this.annotating = false })
  }

  private noteLabel (pod: V1Pod): void {
    const name = pod.metadata?.name
    if (name !== undefined) this.labelled.set(name, pod.metadata?.labels?.[this.leaderLabel] === 'true')
  }

  private gone (prev: PodIncarnation): void {
    const cur = this.pods.get(prev.name)
    if (cur === undefined || cur.uid !== prev.uid) return
    this.pods.delete(prev.name)
    this.labelled.delete(prev.name)
    this.trackers.delete(prev.uid)
    this.log.info({ pod: prev.name, uid: prev.uid }, 'pod deleted')
    this.events.emit('pod:deleted', { name: prev.name, uid: prev.uid, ...incarnationOf(prev) })
  }
}

function incarnationOf (p: PodIncarnation): { incarnation?: string } {
  return p.incarnation !== undefined ? { incarnation: p.incarnation } : {}
}
