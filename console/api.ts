/**
 * What the console reads from its own member's API (docs/contract.md §3), same origin, with the credentials the
 * browser cached for it. The shapes are the server's own types (type imports of Node-free modules: no server code
 * runs here).
 */
import type { LiveTransferRecord, StatusAnswer } from '../daemon/status.js'
import type { TransferRecord } from '../store/journal-records.js'

/** The status answer (§3.5): the daemon's own type. */
export type Status = StatusAnswer

/** A row of the journal as the API answers it (§3.7): the store's own record. */
export type Transfer = TransferRecord

/** A row of a `transfer` event (§3.8): while in progress, its live byte count and the file's size when known. */
export type LiveTransfer = LiveTransferRecord

export interface TransferPage {
  transfers: Transfer[]
  next: string | null
}

/** A message of `GET /api/cluster/events` (§3.8); `transfer` ones only with `?include=transfers`. */
export interface ClusterEvent {
  type: string
  at: string
  epoch?: number
  viewId?: { coordinator: string, id: number } | null
  members?: Array<{ name: string }>
  leader?: string | null
  transfer?: LiveTransfer
}

export class ApiError extends Error {
  constructor (readonly status: number, message: string) {
    super(message)
  }
}

async function json<T> (path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(path, { credentials: 'same-origin', cache: 'no-store', ...init })
  const body: unknown = await res.json().catch(() => ({}))
  if (!res.ok) {
    const error = typeof body === 'object' && body !== null && 'error' in body ? String(body.error) : res.statusText
    throw new ApiError(res.status, error)
  }
  return body as T
}

export async function getStatus (): Promise<Status> {
  return await json<Status>('/api/cluster/status')
}

export async function getTransfers (q: { status?: string, partner?: string, before?: string, limit?: number }): Promise<TransferPage> {
  const p = new URLSearchParams()
  if (q.limit !== undefined) p.set('limit', String(q.limit))
  if (q.status !== undefined && q.status !== '') p.set('status', q.status)
  if (q.partner !== undefined && q.partner !== '') p.set('partner', q.partner)
  if (q.before !== undefined) p.set('before', q.before)
  const qs = p.toString()
  return await json<TransferPage>(`/api/transfers${qs === '' ? '' : `?${qs}`}`)
}

export async function getTransfer (id: string): Promise<Transfer> {
  return await json<Transfer>(`/api/transfers/${encodeURIComponent(id)}`)
}

/** Hand leadership over (§3.6): typed JSON even when the body names no member (§3.4). */
export async function handOver (to: string | undefined): Promise<{ from: string, to: string }> {
  return await json('/api/cluster/leadership/transfer', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(to === undefined ? {} : { to })
  })
}

/** The events WebSocket of this member, same origin (the browser sends its Basic credentials and its Origin). */
export function eventsUrl (): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${scheme}//${location.host}/api/cluster/events?include=transfers`
}
