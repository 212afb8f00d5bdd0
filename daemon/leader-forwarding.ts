/**
 * A request that only the leader may serve, made on a standby: sent to the leader over the cluster (a `service`
 * request of the transport) and answered with the leader's own HTTP status and body. Backups' restore and the
 * transfer queue use it.
 */
import type { ServiceHandler } from '../cluster/cluster-api.js'
import type { RequestOptions, RequestResult } from '../cluster/transport-types.js'
import { HttpError } from './http-server.js'

/** The cluster as forwarding needs it (absent on a standalone daemon). */
export interface LeaderForwarding {
  leaderAddress(): string | undefined
  request(address: string, payload: unknown, opts?: RequestOptions): Promise<RequestResult>
  serve(name: string, handler: ServiceHandler): void
}

/** A reply as it crosses the cluster: the HTTP status and body the leader would have answered. */
export interface ForwardedReply { status: number, json: unknown }

/**
 * Sends `payload` to `service` on the leader and returns its reply. 503 when no leader is known; 502 when it does not
 * answer, with `ifLost` telling what may have happened.
 */
export async function atLeader (f: LeaderForwarding, service: string, payload: Record<string, unknown>, opts: { timeoutMs: number, what: string, ifLost: string }): Promise<ForwardedReply> {
  const address = f.leaderAddress()
  if (address === undefined) throw new HttpError(503, `no leader: ${opts.what} runs on the leader; try again once one is elected`)
  try {
    const { reply } = await f.request(address, { service, ...payload }, { timeoutMs: opts.timeoutMs })
    const r = reply as Partial<ForwardedReply>
    if (typeof r?.status !== 'number') throw new Error('malformed reply')
    return { status: r.status, json: r.json }
  } catch (err) {
    throw new HttpError(502, `the leader (${address}) did not answer ${opts.what}: ${(err as Error).message}; ${opts.ifLost}`)
  }
}
