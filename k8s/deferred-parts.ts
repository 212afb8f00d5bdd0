/**
 * The Kubernetes parts of the daemon (leader label controller, pod watch), loaded with `import()` only when the
 * Kubernetes part is on, and only once the cluster has started: `@kubernetes/client-node` takes longer to load than
 * the rest of the daemon, and a member must answer on its cluster port as soon as it can (a container restarted in
 * place proves its predecessor dead only by answering). Loading it alongside libp2p would not help: both compete for
 * the one thread that compiles modules, so the transport would listen later by about the client's load time.
 *
 * The parts keep their places in the start order (labels and pod watch before the cluster) but their `start()`
 * returns at once; `loadedPart`, right after the cluster, begins the load, and the real parts start as soon as
 * their code is there. What still holds:
 *   - No leader-only effect happens before the label controller runs: the PeSIT servers start only after
 *     `waitLabelsReady()`, which waits for the controller to be started and then for its labels; label writes are
 *     the controller's own.
 *   - A leadership won before the controller started is picked up by its `start()`, with that leadership's signal
 *     (a controller always did this for a leadership that began before it subscribed).
 *   - The daemon's start fails as a whole, stopping what was started, when this code cannot be loaded or configured
 *     (`loadedPart` waits for both parts): a bad KUBECONFIG still exits with code 2 before `vectisd started`.
 * NOT guaranteed: that the pod watch reports deaths from the first moment the cluster runs; it starts once loaded
 * (the membership's own failure detection is the primary path; the watch only makes it faster).
 */
import type { Startable } from '../common/lifecycle.js'
import { raceAbort } from '../common/abortable.js'
import type { Logger } from '../common/logger.js'
import { deferred, type Deferred } from '../common/deferred.js'
import type { K8sLabelController, K8sLabelEvents, K8sLabelMetrics } from './label-controller.js'
import type { K8sPodWatch } from './pod-watch.js'
import type { Leadership, LeaderElectedEvent } from '../cluster/leadership-api.js'
import type { K8sParts, K8sPartsInit } from './parts.js'

export interface K8sDeferredComponents {
  logger: Logger
  leadership: Leadership
  metrics: K8sLabelMetrics
  /**
   * Where the pod watch reports a member's process gone, with its incarnation when its pod was annotated (a
   * clustered member only).
   */
  verifiedDead?: (member: string, incarnation?: string) => void
  /** This process's incarnation, written on its pod for the other members' pod watches (a clustered member only). */
  incarnation?: () => string | undefined
  /** Where the label controller reports this member's pod fenced by a newer epoch: that leadership must not serve. */
  fenced?: (e: K8sLabelEvents['labels:fenced']) => void
  /** Test seam: how the parts are built. Default: `import('./parts.js')`. */
  load?: () => Promise<K8sParts>
}

export type K8sDeferredInit = Omit<K8sPartsInit, 'podWatch'>

/** Opened once the cluster has started; closed (rejected) by a stop before that. */
function gate (): Deferred {
  const g = deferred()
  // A closed gate is reported through the parts' started(); it is never an unhandled rejection.
  g.promise.catch(() => {})
  return g
}

/**
 * A part whose `start()` returns at once while the part it stands for is loaded and started in the background;
 * `started()` settles when that is done (or failed). `stop()` waits for a start in progress, then stops it.
 */
class BackgroundPart implements Startable {
  private starting: Promise<Startable | undefined> | undefined
  private stopped = false

  /** `open` runs synchronously up to its first `await` inside `start()`. */
  constructor (private readonly open: () => Promise<Startable>, private readonly onStop: () => void = () => {}) {}

  async start (): Promise<void> {
    if (this.starting !== undefined) return
    this.starting = (async () => {
      const part = await this.open()
      if (this.stopped) return undefined
      await part.start()
      return part
    })()
    // Reported by started() (the daemon's start waits for it); never an unhandled rejection.
    this.starting.catch(() => {})
  }

  async started (): Promise<void> {
    if (this.starting === undefined) throw new Error('not started')
    if (await this.starting === undefined) throw new Error('stopped before it started')
  }

  async stop (): Promise<void> {
    if (this.starting === undefined || this.stopped) return
    this.stopped = true
    this.onStop()
    const part = await this.starting.catch(() => undefined)
    await part?.stop()
  }
}

export class K8sDeferred {
  /** In the place of the label controller in the start order (before the cluster). */
  readonly labelsPart: Startable
  /** In the place of the pod watch (clustered members only). */
  readonly podWatchPart: Startable | undefined
  /** After the cluster: the daemon's start completes only once both parts run, and fails if they cannot. */
  readonly loadedPart: Startable
  private readonly labels: BackgroundPart
  private readonly podWatch: BackgroundPart | undefined
  private controller: K8sLabelController | undefined
  /** The pod watch once loaded (clustered members only). */
  private watch: K8sPodWatch | undefined
  private loading: Promise<K8sParts> | undefined
  /** Opened by `loadedPart` (the cluster has started); closed with an error if a part stops before that. */
  private readonly gate = gate()

  constructor (private readonly components: K8sDeferredComponents, private readonly init: K8sDeferredInit) {
    const leadership = components.leadership
    // The last leadership won while the controller's code loads, so that its start() gets that leadership's signal.
    let elected: LeaderElectedEvent | undefined
    let offElected: (() => void) | undefined
    this.labels = new BackgroundPart(async () => {
      // What the controller's own start does, at the time it did it (a scrape must not read "in sync" meanwhile).
      components.metrics.labelsInSync?.set(0)
      offElected = leadership.events.on('leader:elected', (e) => { elected = e })
      const { labels } = await this.load()
      const onFenced = components.fenced
      let offFenced: (() => void) | undefined
      return {
        start: async () => {
          if (onFenced !== undefined) offFenced = labels.events.on('labels:fenced', (e) => { onFenced(e) })
          try {
            await labels.start(elected)
            this.controller = labels
          } catch (err) {
            offFenced?.()
            throw err
          } finally {
            offElected?.()
            elected = undefined
          }
        },
        stop: async () => {
          offFenced?.()
          await labels.stop()
        }
      }
    }, () => {
      offElected?.()
      this.closeGate()
    })
    this.labelsPart = this.labels
    const verifiedDead = components.verifiedDead
    this.podWatch = verifiedDead === undefined
      ? undefined
      : new BackgroundPart(async () => {
        const { podWatch } = await this.load()
        if (podWatch === undefined) throw new Error('the Kubernetes parts were built without a pod watch')
        this.watch = podWatch
        return reportingDeaths(podWatch, verifiedDead)
      }, () => { this.closeGate() })
    this.podWatchPart = this.podWatch
    this.loadedPart = {
      start: async () => {
        this.gate.resolve()
        await this.labels.started()
        await this.podWatch?.started()
      },
      stop: async () => {}
    }
  }

  /**
   * Whether member `name`'s pod carries the leader label, as this member's pod watch last saw it; null when it has
   * no pod watch (a standalone member), before the watch is loaded and has listed the pods, and for a pod it has
   * not seen.
   */
  leaderLabelled (name: string): boolean | null {
    return this.watch?.leaderLabelled(name) ?? null
  }

  /** For the PeSIT servers' `beforeStart`: the controller is running, and this leadership's labels are right. */
  async waitLabelsReady (signal: AbortSignal): Promise<void> {
    await raceAbort(this.labels.started(), signal)
    if (this.controller === undefined) throw new Error('the label controller is not running')
    await this.controller.waitReady(signal)
  }

  private async load (): Promise<K8sParts> {
    this.loading ??= this.gate.promise.then(async () => {
      if (this.components.load !== undefined) return await this.components.load()
      const { createK8sParts } = await import('./parts.js')
      return createK8sParts(
        { logger: this.components.logger, leadership: this.components.leadership, metrics: this.components.metrics },
        { ...this.init, podWatch: this.components.verifiedDead !== undefined, incarnation: this.components.incarnation?.() })
    })
    return await this.loading
  }

  private closeGate (): void {
    // No effect once opened. A part stopped before the cluster started must not wait for a load that never begins.
    this.gate.reject(new Error('stopped before the Kubernetes parts were loaded'))
  }
}

/** The Kubernetes API's word that a member's process is gone is a verified death (the fast failover path). */
function reportingDeaths (watch: K8sPodWatch, verifiedDead: (member: string, incarnation?: string) => void): Startable {
  const offs: Array<() => void> = []
  return {
    start: async () => {
      offs.push(
        watch.events.on('pod:deleted', (e) => { verifiedDead(e.name, e.incarnation) }),
        watch.events.on('pod:restarted', (e) => { verifiedDead(e.name, e.incarnation) })
      )
      await watch.start()
    },
    stop: async () => {
      for (const off of offs.splice(0)) off()
      await watch.stop()
    }
  }
}
