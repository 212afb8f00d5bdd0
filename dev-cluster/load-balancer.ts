/**
 * The local stand-in for a `type: LoadBalancer` Service whose selector includes `vectis-leader: "true"`: a TCP
 * proxy that sends each NEW connection to the current endpoint (the labelled pod's address) and leaves established
 * connections where they are, as kube-proxy does. With no endpoint, a new connection is refused (closed at once),
 * as a Service without ready endpoints would.
 *
 * NOT a production component: it exists for `vectis dev-cluster` and tests.
 */
import { createServer, connect, type Server, type Socket } from 'node:net'
import type { Logger } from '../common/logger.js'
import type { Startable } from '../common/lifecycle.js'

export interface Endpoint {
  host: string
  port: number
  /** The pod behind it, for logs. */
  name?: string
}

export class TcpLoadBalancer implements Startable {
  private server: Server | undefined
  private endpoint: Endpoint | undefined
  private readonly sockets = new Set<Socket>()
  private readonly log: Logger
  /** Connections routed per endpoint name, for tests and the status table. */
  readonly routed = new Map<string, number>()
  refused = 0

  constructor (components: { logger: Logger }, private readonly init: { host: string, port: number }) {
    this.log = components.logger.child({ component: 'dev:load-balancer' })
  }

  get port (): number | undefined {
    const a = this.server?.address()
    return typeof a === 'object' && a !== null ? a.port : undefined
  }

  current (): Endpoint | undefined { return this.endpoint }

  setEndpoint (ep: Endpoint | undefined): void {
    const same = ep?.host === this.endpoint?.host && ep?.port === this.endpoint?.port
    this.endpoint = ep
    if (!same) this.log.info({ endpoint: ep ?? null }, 'load balancer endpoint changed')
  }

  async start (): Promise<void> {
    if (this.server !== undefined) return
    const server = createServer((client) => { this.accept(client) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.init.port, this.init.host, () => { server.off('error', reject); resolve() })
    })
    this.server = server
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  }

  private accept (client: Socket): void {
    const ep = this.endpoint
    if (ep === undefined) {
      this.refused++
      client.destroy()
      return
    }
    const key = ep.name ?? `${ep.host}:${ep.port}`
    this.routed.set(key, (this.routed.get(key) ?? 0) + 1)
    const upstream = connect({ host: ep.host, port: ep.port })
    this.sockets.add(client)
    this.sockets.add(upstream)
    const close = (): void => {
      client.destroy()
      upstream.destroy()
      this.sockets.delete(client)
      this.sockets.delete(upstream)
    }
    client.on('error', close).on('close', close)
    upstream.on('error', close).on('close', close)
    client.pipe(upstream)
    upstream.pipe(client)
  }
}
