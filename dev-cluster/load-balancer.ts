/**
 * The local stand-in for a `type: LoadBalancer` Service whose selector includes `vectis-leader: "true"`: a TCP
 * proxy that sends each NEW connection to the current endpoint (the labelled pod's address) and leaves established
 * connections where they are, as kube-proxy does. With no endpoint, a new connection is refused (closed at once),
 * as a Service without ready endpoints would.
 *
 * With `bytesPerSecond`, each connection is also slowed down, so that a transfer lasts long enough to be watched.
 * With `observe`, whoever runs it is told what crosses each connection (a benchmark measures bytes sent again).
 *
 * NOT a production component: it exists for `vectis dev-cluster` and tests.
 */
import { createServer, connect, type Server, type Socket } from 'node:net'
import { monotonicClock, type Clock } from '../common/clock.js'
import type { Logger } from '../common/logger.js'
import type { Startable } from '../common/lifecycle.js'

export interface Endpoint {
  host: string
  port: number
  /** The pod behind it, for logs. */
  name?: string
}

export interface LoadBalancerInit {
  host: string
  /** 0: any free port. */
  port: number
  /**
   * A cap on each connection, for each direction separately: at most this many bytes a second (a positive integer)
   * go from one side to the other, in bursts of at most a tenth of a second's worth. Off when undefined. While a
   * direction is over its cap, reading from its source socket is paused: the bytes wait in the kernel's buffers, then
   * in the sender's (whose writes report backpressure), and this process holds no more than the rest of the one chunk
   * it is forwarding.
   */
  bytesPerSecond?: number
  /**
   * Told of each connection's traffic: opened, every piece of bytes as it is written to the other side (the
   * buffer is valid only during the call: copy what is kept), and closed once with its totals. Off when undefined.
   */
  observe?: (e: ConnectionEvent) => void
}

/** What `observe` is told; `connection` numbers the connections routed, 1, 2, … in order of acceptance. */
export type ConnectionEvent =
  | { type: 'opened', connection: number, endpoint: string }
  | { type: 'forwarded', connection: number, toEndpoint: boolean, bytes: Buffer }
  | { type: 'closed', connection: number, toEndpoint: number, toClient: number }

export class TcpLoadBalancer implements Startable {
  private server: Server | undefined
  private endpoint: Endpoint | undefined
  private readonly sockets = new Set<Socket>()
  private readonly log: Logger
  private readonly clock: Clock
  /** Connections routed per endpoint name, for tests and the status table. */
  readonly routed = new Map<string, number>()
  refused = 0
  private connections = 0

  /** `clock`: what the rate cap measures time with (tests move it by hand); default the monotonic clock. */
  constructor (components: { logger: Logger, clock?: Clock }, private readonly init: LoadBalancerInit) {
    const rate = init.bytesPerSecond
    if (rate !== undefined && (!Number.isSafeInteger(rate) || rate <= 0)) throw new RangeError(`load balancer rate cap: expected a positive integer of bytes per second, got ${rate}`)
    this.log = components.logger.child({ component: 'dev:load-balancer' })
    this.clock = components.clock ?? monotonicClock
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
    const observe = this.init.observe
    const connection = ++this.connections
    const sent = { toEndpoint: 0, toClient: 0 }
    let closed = false
    const close = (): void => {
      client.destroy()
      upstream.destroy()
      this.sockets.delete(client)
      this.sockets.delete(upstream)
      if (closed) return
      closed = true
      observe?.({ type: 'closed', connection, ...sent })
    }
    client.on('error', close).on('close', close)
    upstream.on('error', close).on('close', close)
    observe?.({ type: 'opened', connection, endpoint: key })
    const tap = (toEndpoint: boolean): ((bytes: Buffer) => void) | undefined => observe === undefined
      ? undefined
      : (bytes) => {
          if (toEndpoint) sent.toEndpoint += bytes.length
          else sent.toClient += bytes.length
          observe({ type: 'forwarded', connection, toEndpoint, bytes })
        }
    const rate = this.init.bytesPerSecond
    if (rate === undefined) {
      client.pipe(upstream)
      upstream.pipe(client)
      const up = tap(true)
      const down = tap(false)
      if (up !== undefined && down !== undefined) {
        client.on('data', up)
        upstream.on('data', down)
      }
    } else {
      forwardCapped(client, upstream, rate, this.clock, tap(true))
      forwardCapped(upstream, client, rate, this.clock, tap(false))
    }
  }
}

/**
 * `from.pipe(to)` at `bytesPerSecond` at most: a token bucket holding a tenth of a second's worth. A chunk read goes
 * on as far as the bucket allows, the rest once it has refilled; meanwhile, and while `to` drains, `from` is paused.
 * `tap` sees each piece as it is written.
 */
function forwardCapped (from: Socket, to: Socket, bytesPerSecond: number, clock: Clock, tap?: (piece: Buffer) => void): void {
  const capacity = Math.ceil(bytesPerSecond / 10)
  let tokens = capacity
  let refilledAt = clock.now()
  /** What is left of the chunk being forwarded. */
  let held: Buffer | undefined
  let ended = false
  let timer: NodeJS.Timeout | undefined
  const pump = (): void => {
    timer = undefined
    if (held !== undefined) {
      const now = clock.now()
      tokens = Math.min(capacity, tokens + (now - refilledAt) * bytesPerSecond / 1000)
      refilledAt = now
      const n = Math.min(held.length, Math.floor(tokens))
      tokens -= n
      const piece = held.subarray(0, n)
      held = n === held.length ? undefined : held.subarray(n)
      if (n > 0 && !to.destroyed) tap?.(piece)
      if (n > 0 && !to.write(piece)) {
        to.once('drain', pump)
        return
      }
      if (held !== undefined) {
        // The bucket is empty: look again once it holds the rest, or is full (a tenth of a second at most, for a cap
        // of 10 B/s or more). Not at once: the rest would go a few bytes at a time as the clock moves on, in a loop
        // that holds the event loop until it is all through.
        const want = Math.min(held.length, capacity)
        timer = setTimeout(pump, Math.max(1, Math.ceil((want - tokens) * 1000 / bytesPerSecond)))
        return
      }
    }
    if (ended) to.end()
    else from.resume()
  }
  from.on('data', (chunk: Buffer) => {
    from.pause()
    held = chunk
    pump()
  })
  // As pipe() does: the end of one side is passed on, once everything read before it has been forwarded (while
  // `from` is paused, pump() still has some to forward and ends `to` after it).
  from.on('end', () => {
    ended = true
    if (!from.isPaused()) to.end()
  })
  const stop = (): void => { clearTimeout(timer) }
  from.once('close', stop)
  to.once('close', stop)
}
