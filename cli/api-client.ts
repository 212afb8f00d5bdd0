/**
 * What the commands that talk to a member's HTTP API share: the `--url`, `--user`, `--password` options (or
 * `VECTIS_URL`, `VECTIS_API_USER`, `VECTIS_API_PASSWORD`) and a JSON request that turns an error answer into a
 * message naming the status and the server's reason.
 */
import type { OptionSpec } from './args.js'

export const API_OPTIONS: Record<string, OptionSpec> = {
  url: { type: 'string', env: 'VECTIS_URL' },
  user: { type: 'string', env: 'VECTIS_API_USER' },
  password: { type: 'string', env: 'VECTIS_API_PASSWORD' }
}

export const API_USAGE = '[--url http://host:8080] [--user U] [--password P]   (env VECTIS_URL, VECTIS_API_USER, VECTIS_API_PASSWORD)'

export interface ApiTarget {
  base: URL
  authorization: string
}

export function apiTarget (options: Record<string, string | boolean | undefined>): ApiTarget {
  const base = new URL(typeof options.url === 'string' ? options.url : 'http://127.0.0.1:8080')
  const user = typeof options.user === 'string' ? options.user : 'vectis'
  const password = typeof options.password === 'string' ? options.password : ''
  return { base, authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` }
}

export class ApiError extends Error {
  override name = 'ApiError'
  constructor (readonly status: number, message: string) { super(message) }
}

/**
 * `method path` on the member, JSON both ways; throws ApiError on any answer but 2xx. A request that changes state
 * is typed `application/json` even without a body: the member refuses it otherwise (docs/contract.md §3.4).
 */
export async function apiRequest<T> (t: ApiTarget, method: string, path: string, body?: unknown): Promise<T> {
  const json = body !== undefined || !['GET', 'HEAD'].includes(method.toUpperCase())
  const res = await fetch(new URL(path, t.base), {
    method,
    headers: { authorization: t.authorization, ...(json ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {})
  })
  const text = await res.text()
  if (res.status === 401) throw new ApiError(401, '401 unauthorized: pass --user/--password or VECTIS_API_PASSWORD')
  if (!res.ok) {
    let reason = text
    try { reason = (JSON.parse(text) as { error?: string }).error ?? text } catch { /* not JSON: the text as it is */ }
    throw new ApiError(res.status, `HTTP ${res.status}: ${reason}`)
  }
  return JSON.parse(text) as T
}
