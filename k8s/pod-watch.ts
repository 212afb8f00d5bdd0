/**
 * Verified death through the Kubernetes API, for the leadership part (DESIGN "Verified dead"): watches the pods of
 * the selector and reports, by pod name, a pod deleted (or replaced by a new pod of the same name: another uid)
 * and a container restarted (restartCount went up, or the containerID changed).
 *
 * Either means the process that ran there is gone: a deleted pod's containers are killed, a restarted container is
 * a new process (a new incarnation of the member). A pod that is merely terminating (`deletionTimestamp` set) is
 * NOT reported: its process still runs through its grace period and may still be leader.
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
import { DEFAULT_POD_SELECTOR } from './defaults.js'

export interface ContainerIncarnation { restartCount: number, containerID?: string }

/** What identifies the process(es) of a pod at one moment. */
export interface PodIncarnation {
  name: string
  uid: string
  podIP?: string
  terminating: boolean
  containers: Record<string, ContainerIncarnation>
}

export type K8sPodWatchEvents = {
  /** The pod (this uid) no longer exists. */
  'pod:deleted': { name: string, uid: string }
  /** A container of the pod was restarted: the process there is a new one. */
  'pod:restarted': { name: string, uid: string, container: string, restartCount: number, containerID?: string }
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
}

export function podIncarnation (pod: V1Pod): PodIncarnation | undefined {
  const name = pod.metadata?.name
  const uid = pod.metadata?.uid
  if (name === undefined || uid === undefined) return undefined
  const containers: Record<string, ContainerIncarnation> = {}
  for (const c of pod.status?.containerStatuses ?? []) {
    containers[c.name] = { restartCount: c.restartCount, ...(c.containerID !== undefined && c.containerID !== '' ? { containerID: c.containerID } : {}) }
  }
  return {
    name, uid, terminating: pod.metadata?.deletionTimestamp !== undefined && pod.metadata.deletionTimestamp !== null, containers,
    ...(pod.status?.podIP !== undefined ? { podIP: pod.status.podIP } : {})
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

export class K8sPodWatch implements Startable {
  readonly events = new TypedEmitter<K8sPodWatchEvents>()
  private readonly log: Logger
  private readonly client: K8sPodClient
  private readonly selector: string
  private readonly cfg: { resyncMs: number, backoffBaseMs: number, backoffMaxMs: number, watchTimeoutSeconds: number }
  private readonly pods = new Map<string, PodIncarnation>()
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
      else this.observe(inc)
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
    if (prev === undefined) return
    if (prev.uid !== now.uid) {
      this.log.info({ pod: now.name, uid: prev.uid }, 'pod replaced (old one deleted)')
      this.events.emit('pod:deleted', { name: prev.name, uid: prev.uid })
      return
    }
    for (const r of restartedContainers(prev, now)) {
      this.log.info({ pod: now.name, container: r.container, restartCount: r.restartCount }, 'container restarted')
      this.events.emit('pod:restarted', {
        name: now.name, uid: now.uid, container: r.container, restartCount: r.restartCount,
        ...(r.containerID !== undefined ? { containerID: r.containerID } : {})
      })
    }
  }

  private gone (prev: PodIncarnation): void {
    const cur = this.pods.get(prev.name)
    if (cur === undefined || cur.uid !== prev.uid) return
    this.pods.delete(prev.name)
    this.log.info({ pod: prev.name, uid: prev.uid }, 'pod deleted')
    this.events.emit('pod:deleted', { name: prev.name, uid: prev.uid })
  }
}
