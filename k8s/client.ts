/**
 * A thin wrapper over @kubernetes/client-node for the few pod calls Vectis makes (get, list, watch, patch), that
 * adds what the raw client lacks for a controller that must be right under failures:
 *
 * - a per-request timeout (the generated client has none: a black-holed API server would hang a call forever);
 * - the right `Content-Type` per patch dialect (client-node 1.x sends `application/json-patch+json` unless a
 *   middleware sets the header, which an API server rejects for a merge body);
 * - an optional synchronous guard evaluated in the last middleware, i.e. after authentication and right before
 *   the request goes on the wire: the lease check of a leader-only write happens as late as it can;
 * - one error class ({@link K8sApiError}) with status, `Status.reason`, Retry-After and the verb.
 */
import {
  ApiException, CoreV1Api, Observable, PatchStrategy, Watch, setHeaderOptions,
  type KubeConfig, type ObservableMiddleware, type RequestContext, type ResponseContext, type V1Pod, type V1PodList
} from '@kubernetes/client-node'
import { K8sApiError, type K8sVerb } from './errors.js'

export type PatchDialect = 'merge' | 'json'

/** One RFC 6902 operation. */
export type JsonPatchOp =
  | { op: 'add' | 'replace' | 'test', path: string, value: unknown }
  | { op: 'remove', path: string }

export interface CallOptions {
  /** Aborts the call (stop(), end of leadership). */
  signal?: AbortSignal
  /** Overrides the client's default request timeout. */
  timeoutMs?: number
}

export interface PatchOptions extends CallOptions {
  /**
   * Called synchronously right before the request is sent; `false` cancels it with a `not-leader` error and
   * nothing reaches the API. The label controller passes `leadership.isLeader`.
   */
  guard?: () => boolean
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'

export interface PodWatchHandle {
  /** Ends the watch; `onDone` is called once. */
  abort(): void
}

export interface K8sPodClientInit {
  namespace: string
  /** Per-request timeout; default 5 s. */
  requestTimeoutMs?: number
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000

/** `JSON pointer` token escaping (RFC 6901): `vectis.io/epoch` → `vectis.io~1epoch`. */
export function pointerToken (key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1')
}

export class K8sPodClient {
  readonly namespace: string
  private readonly api: CoreV1Api
  private readonly watcher: Watch
  private readonly timeoutMs: number

  constructor (private readonly kubeConfig: KubeConfig, init: K8sPodClientInit) {
    this.namespace = init.namespace
    this.timeoutMs = init.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    this.api = kubeConfig.makeApiClient(CoreV1Api)
    this.watcher = new Watch(kubeConfig)
  }

  async getPod (name: string, opts: CallOptions = {}): Promise<V1Pod> {
    return await this.call('get', opts, undefined, async (o) => await this.api.readNamespacedPod({ name, namespace: this.namespace }, o))
  }

  async listPods (labelSelector: string, opts: CallOptions = {}): Promise<V1PodList> {
    return await this.call('list', opts, undefined, async (o) => await this.api.listNamespacedPod({ namespace: this.namespace, labelSelector }, o))
  }

  /** A merge patch (RFC 7386: `null` removes a key) or a JSON patch (RFC 6902, with `test`). */
  async patchPod (name: string, dialect: PatchDialect, body: Record<string, unknown> | JsonPatchOp[], opts: PatchOptions = {}): Promise<V1Pod> {
    const contentType = dialect === 'merge' ? PatchStrategy.MergePatch : PatchStrategy.JsonPatch
    return await this.call('patch', opts, contentType, async (o) => await this.api.patchNamespacedPod({ name, namespace: this.namespace, body }, o))
  }

  /**
   * Watches the pods of `labelSelector`. `onEvent` gets every event (an `ERROR` event carries a Status object:
   * 410 Expired means list again); `onDone` is called once when the stream ends, with the error if any. A watch
   * that has not ended `timeoutSeconds` + 15 s after it started is cut on our side (a half-open connection never
   * ends by itself).
   */
  async watchPods (
    labelSelector: string,
    opts: { resourceVersion?: string, timeoutSeconds?: number },
    onEvent: (type: WatchEventType, obj: unknown) => void,
    onDone: (err: K8sApiError | undefined) => void
  ): Promise<PodWatchHandle> {
    const timeoutSeconds = opts.timeoutSeconds ?? 300
    let finished = false
    const finish = (err: unknown): void => {
      if (finished) return
      finished = true
      clearTimeout(watchdog)
      onDone(err === null || err === undefined ? undefined : this.toError('watch', err, undefined))
    }
    const path = `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/pods`
    const query: Record<string, string | number | boolean | undefined> = {
      labelSelector, timeoutSeconds, resourceVersion: opts.resourceVersion, allowWatchBookmarks: true
    }
    let controller: AbortController | undefined
    let aborted = false
    const watchdog: NodeJS.Timeout = setTimeout(() => { controller?.abort(); finish(new Error('watch exceeded its timeout; cut by the client')) }, (timeoutSeconds + 15) * 1000)
    watchdog.unref()
    try {
      controller = await this.watcher.watch(path, query, (type, obj) => { if (!finished) onEvent(type as WatchEventType, obj) }, finish)
    } catch (err) {
      finish(err)
    }
    if (aborted) controller?.abort()
    return {
      abort: () => {
        aborted = true
        controller?.abort()
        finish(undefined)
      }
    }
  }

  private async call<T> (
    verb: K8sVerb, opts: PatchOptions, contentType: string | undefined,
    fn: (o: ReturnType<typeof setHeaderOptions>) => Promise<T>
  ): Promise<T> {
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? this.timeoutMs)
    const signal = opts.signal !== undefined ? AbortSignal.any([opts.signal, timeout]) : timeout
    let refusedByGuard = false
    const last: ObservableMiddleware = {
      pre: (ctx: RequestContext) => {
        if (opts.guard !== undefined && !opts.guard()) {
          refusedByGuard = true
          throw new Error('lease check failed right before the write')
        }
        ctx.setSignal(signal)
        return new Observable(Promise.resolve(ctx))
      },
      post: (rsp: ResponseContext) => new Observable(Promise.resolve(rsp))
    }
    // A fresh options object per call: the generated client reverses its middleware array in place.
    const base = contentType !== undefined ? setHeaderOptions('Content-Type', contentType) : { middleware: [], middlewareMergeStrategy: 'append' as const }
    const options = { ...base, middleware: [...(base.middleware ?? []), last], middlewareMergeStrategy: 'append' as const }
    try {
      if (signal.aborted) throw signal.reason
      return await fn(options)
    } catch (err) {
      if (refusedByGuard) throw new K8sApiError({ verb, failure: 'not-leader', message: `${verb} pods not sent: this member is not the leader (lease check)`, cause: err })
      throw this.toError(verb, err, { timeout, outer: opts.signal })
    }
  }

  private toError (verb: K8sVerb, err: unknown, signals: { timeout: AbortSignal, outer: AbortSignal | undefined } | undefined): K8sApiError {
    if (err instanceof K8sApiError) return err
    if (err instanceof ApiException) {
      const status = (err as ApiException<unknown>).code
      let reason: string | undefined
      let message: string | undefined
      let retryAfterMs: number | undefined
      const body: unknown = (err as ApiException<unknown>).body
      let parsed: unknown = body
      if (typeof body === 'string') { try { parsed = JSON.parse(body) } catch { parsed = undefined } }
      if (typeof parsed === 'object' && parsed !== null) {
        const s = parsed as { reason?: unknown, message?: unknown, details?: { retryAfterSeconds?: unknown } }
        if (typeof s.reason === 'string') reason = s.reason
        if (typeof s.message === 'string') message = s.message
        if (typeof s.details?.retryAfterSeconds === 'number') retryAfterMs = s.details.retryAfterSeconds * 1000
      }
      const headers = (err as ApiException<unknown>).headers ?? {}
      const ra = headers['retry-after'] ?? headers['Retry-After']
      if (ra !== undefined && /^\d+$/.test(ra.trim())) retryAfterMs = Number(ra.trim()) * 1000
      if (reason === undefined && status === 401) reason = 'Unauthorized'
      return new K8sApiError({
        verb, failure: 'http', status, ...(reason !== undefined ? { reason } : {}), ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
        message: `${verb} pods in namespace ${this.namespace}: HTTP ${status}${reason !== undefined ? ` ${reason}` : ''}${message !== undefined ? `: ${message}` : ''}`,
        cause: err
      })
    }
    if (signals?.outer?.aborted === true) return new K8sApiError({ verb, failure: 'aborted', message: `${verb} pods aborted`, cause: err })
    if (signals?.timeout.aborted === true) return new K8sApiError({ verb, failure: 'timeout', message: `${verb} pods: no answer from the API server within the request timeout`, cause: err })
    const e = err as { code?: unknown, statusCode?: unknown, message?: unknown }
    if (typeof e.statusCode === 'number') {
      return new K8sApiError({ verb, failure: 'http', status: e.statusCode, message: `${verb} pods in namespace ${this.namespace}: HTTP ${e.statusCode}`, cause: err })
    }
    const code = typeof e.code === 'string' ? ` (${e.code})` : ''
    return new K8sApiError({ verb, failure: 'network', message: `${verb} pods: API server unreachable${code}: ${String(e.message ?? err)}`, cause: err })
  }
}
