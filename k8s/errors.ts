/**
 * Errors of the Kubernetes part. One class for every failed API call, carrying what the retry logic needs (status,
 * reason, Retry-After) and the verb, so the log line can name the missing RBAC permission.
 */

export type K8sVerb = 'get' | 'list' | 'watch' | 'patch'

export type K8sFailure =
  | 'http' // the API answered with an error status
  | 'network' // refused, reset, DNS: no answer at all
  | 'timeout' // no answer within the request timeout
  | 'aborted' // our own signal (leadership ended, stop())
  | 'not-leader' // the lease check right before the write said no: nothing was sent

export class K8sApiError extends Error {
  override name = 'K8sApiError'
  readonly verb: K8sVerb
  readonly failure: K8sFailure
  /** HTTP status for `http` failures. */
  readonly status: number | undefined
  /** `reason` of the API's Status body (Forbidden, Conflict, Invalid, NotFound, TooManyRequests, ...). */
  readonly reason: string | undefined
  /** From the `Retry-After` header or `details.retryAfterSeconds`. */
  readonly retryAfterMs: number | undefined

  constructor (init: { verb: K8sVerb, failure: K8sFailure, message: string, status?: number, reason?: string, retryAfterMs?: number, cause?: unknown }) {
    super(init.message, init.cause !== undefined ? { cause: init.cause } : undefined)
    this.verb = init.verb
    this.failure = init.failure
    this.status = init.status
    this.reason = init.reason
    this.retryAfterMs = init.retryAfterMs
  }

  /** 401/403: retrying will not help until someone fixes the credentials or the Role. */
  get isAuth (): boolean { return this.status === 401 || this.status === 403 }
  /** 409, or 422 from a JSON patch `test`: someone wrote in between; re-read and decide again. */
  get isConflict (): boolean { return this.status === 409 || this.status === 422 }
  get isNotFound (): boolean { return this.status === 404 }
}

/** Thrown by the label controller when a newer leader fenced this member's pod: it must not label itself. */
export class FencedError extends Error {
  override name = 'FencedError'
  constructor (readonly ownEpoch: number, readonly fencedEpoch: number) {
    super(`this pod was fenced by epoch ${fencedEpoch}, newer than our epoch ${ownEpoch}`)
  }
}

export class K8sConfigError extends Error {
  override name = 'K8sConfigError'
}
