/**
 * The Kubernetes objects and answers the API emulator (k8s-api-emulator.ts) serves: the pod as it keeps it, what
 * tests configure (pods, faults) and read back (label changes, requests), the `Status` bodies and the validation a
 * real API server applies to a patched pod.
 */
import { randomBytes } from 'node:crypto'
import { labelKeyError, labelValueError } from '../k8s/label-selector.js'
import { deepEqual } from './patch-apply.js'

export type Verb = 'get' | 'list' | 'watch' | 'patch'

export const MERGE_PATCH = 'application/merge-patch+json'
export const JSON_PATCH = 'application/json-patch+json'
export const STRATEGIC_MERGE_PATCH = 'application/strategic-merge-patch+json'

/** The subset of a Pod the emulator keeps; served as real Pod JSON. */
export interface PodObject {
  apiVersion: 'v1'
  kind: 'Pod'
  metadata: {
    name: string
    namespace: string
    uid: string
    resourceVersion: string
    creationTimestamp: string
    deletionTimestamp?: string
    labels?: Record<string, string>
    annotations?: Record<string, string>
    [k: string]: unknown
  }
  spec: { containers: Array<{ name: string, image: string }>, nodeName?: string, [k: string]: unknown }
  status: {
    phase: string
    podIP?: string
    podIPs?: Array<{ ip: string }>
    startTime: string
    containerStatuses: ContainerStatus[]
    [k: string]: unknown
  }
}

export interface ContainerStatus {
  name: string
  ready: boolean
  started: boolean
  restartCount: number
  image: string
  imageID: string
  containerID: string
  state: { running?: { startedAt: string } }
  lastState: { terminated?: { exitCode: number, reason: string, startedAt: string, finishedAt: string, containerID: string } }
}

export interface CreatePodInit {
  labels?: Record<string, string>
  annotations?: Record<string, string>
  podIP?: string
  /** Container names; one `vectisd` container by default. */
  containers?: string[]
  nodeName?: string
}

/** One change of one pod's labels. `before`/`after` are null when the pod did not / does not exist. */
export interface LabelChange {
  seq: number
  /** `process.hrtime.bigint()`: the same clock for every process of the machine. */
  atNs: bigint
  wallTime: string
  namespace: string
  pod: string
  uid: string
  cause: 'create' | 'patch' | 'delete'
  resourceVersion: string
  before: Record<string, string> | null
  after: Record<string, string> | null
}

export interface FaultRule {
  /** HTTP status to answer with a proper `Status` body; omitted with `reset`. */
  status?: 401 | 403 | 404 | 409 | 422 | 429 | 500 | 503
  /** Destroy the connection instead of answering (a reset mid-request). */
  reset?: boolean
  /**
   * Hold matching requests (unanswered, unprocessed) until `releaseHeld()`; then they are processed normally.
   * Lets a test place a write exactly after another one (a stale write landing late).
   */
  hold?: boolean
  /** Verbs hit; all when omitted. */
  verbs?: Verb[]
  /** Pod names hit (GET/PATCH only); any when omitted. */
  pods?: string[]
  /** Only requests carrying this bearer token (one member's client); any when omitted. */
  token?: string
  /** Number of matching requests to hit, then the rule retires itself; unlimited when omitted. */
  times?: number
  /** For 429 (and 503): the `Retry-After` header and `details.retryAfterSeconds`. */
  retryAfterSeconds?: number
}

export interface RequestRecord {
  seq: number
  method: string
  path: string
  verb: Verb | 'other'
  pod?: string
  contentType?: string
  status: number | 'reset'
  token?: string
  /** Date.now() when the request arrived. */
  at: number
}

export function statusBody (code: number, reason: string, message: string, details?: Record<string, unknown>): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, details: details ?? {}, code }
}

export function containerId (): string { return `containerd://${randomBytes(32).toString('hex')}` }

export function conflictMessage (name: string): string {
  return `Operation cannot be fulfilled on pods "${name}": the object has been modified; please apply your changes to the latest version and try again`
}

/** What the API server's validation would refuse in a patched pod (metadata only; spec is immutable here). */
export function validatePatched (cur: PodObject, next: PodObject): { code: 400 | 422, message: string, field: string } | undefined {
  if (typeof next !== 'object' || next === null || typeof next.metadata !== 'object' || next.metadata === null) {
    return { code: 400, message: 'the patched object has no metadata', field: 'metadata' }
  }
  const m = next.metadata
  if (m.name !== cur.metadata.name) return { code: 400, message: `the name of the object (${String(m.name)}) does not match the name on the URL (${cur.metadata.name})`, field: 'metadata.name' }
  if (m.namespace !== cur.metadata.namespace) return { code: 400, message: 'the namespace of the provided object does not match the namespace sent on the request', field: 'metadata.namespace' }
  if (m.uid !== cur.metadata.uid) return { code: 422, message: 'metadata.uid: Invalid value: field is immutable', field: 'metadata.uid' }
  if (next.kind !== 'Pod' || next.apiVersion !== 'v1') return { code: 400, message: 'kind and apiVersion cannot change', field: 'kind' }
  for (const [field, map] of [['metadata.labels', m.labels], ['metadata.annotations', m.annotations]] as const) {
    if (map === undefined) continue
    if (typeof map !== 'object' || map === null || Array.isArray(map)) return { code: 422, message: `${field}: must be a map of strings`, field }
    for (const [k, v] of Object.entries(map as Record<string, unknown>)) {
      if (typeof v !== 'string') return { code: 422, message: `${field}: Invalid value: ${JSON.stringify(v)}: values must be strings`, field: `${field}[${k}]` }
      const err = labelKeyError(k) ?? (field === 'metadata.labels' ? labelValueError(v) : undefined)
      if (err !== undefined) return { code: 422, message: `${field}: Invalid value: "${k}": ${err}`, field: `${field}[${k}]` }
    }
  }
  if (!deepEqual(next.spec, cur.spec)) {
    return { code: 422, message: 'spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` (only additions to existing tolerations)', field: 'spec' }
  }
  return undefined
}
