/**
 * An in-memory cluster transport for tests of the membership driver: requests go through the event loop
 * (setImmediate) to the handler registered at an address, replies come back the same way; payloads are copied
 * through JSON like the real transport. Links can be blocked (requests then time out) or made to refuse.
 */
import type { ClusterTransport } from '../../cluster/transport-types.js'

export class MemoryTransportError extends Error {
  override name = 'TransportError'
  constructor (readonly code: 'refused' | 'timeout' | 'closed' | 'invalid') { super(`memory transport: ${code}`) }
}

export class MemoryNetwork {
  readonly transports = new Map<string, MemoryTransport>()
  /** "from>to" address pairs whose traffic is dropped (requests time out). */
  readonly dropped = new Set<string>()
  /** Published messages are dropped while this is true (a lossy fan-out; the receivers must repair). */
  dropPublished = false

  attach (t: MemoryTransport): void {
    this.transports.set(t.address, t)
  }

  detach (t: MemoryTransport): void {
    if (this.transports.get(t.address) !== t) return
    this.transports.delete(t.address)
    // The peers' connections to it close.
    for (const o of this.transports.values()) setImmediate(() => { o.fireDisconnect(t.peerId) })
  }
}

export class MemoryTransport implements ClusterTransport {
  private handler: ((from: { peerId: string, remoteAddress: string }, payload: unknown) => unknown) | undefined
  private readonly listeners = new Set<(peerId: string) => void>()
  private readonly topics = new Map<string, (payload: unknown, relayedBy: string) => void>()
  private readonly seen = new Set<string>()
  private running = false

  constructor (private readonly network: MemoryNetwork, readonly address: string, readonly peerId: string) {}

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    this.network.attach(this)
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    this.network.detach(this)
  }

  handle (handler: (from: { peerId: string, remoteAddress: string }, payload: unknown) => unknown): void { this.handler = handler }

  onDisconnect (listener: (peerId: string) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  /** Delivered to every other running member subscribed to the topic, once per id, like gossipsub. */
  async publish (topic: string, id: string, payload: unknown): Promise<void> {
    if (!this.running) throw new MemoryTransportError('closed')
    if (this.network.dropPublished) return
    const json = JSON.stringify(payload)
    for (const target of this.network.transports.values()) {
      if (target === this) continue
      if (this.network.dropped.has(`${this.address}>${target.address}`) || this.network.dropped.has(`${target.address}>${this.address}`)) continue
      setImmediate(() => { target.deliver(topic, id, JSON.parse(json) as unknown, this.peerId) })
    }
  }

  subscribe (topic: string, handler: (payload: unknown, relayedBy: string) => void): void { this.topics.set(topic, handler) }

  private deliver (topic: string, id: string, payload: unknown, from: string): void {
    if (!this.running || this.seen.has(`${topic}\n${id}`)) return
    this.seen.add(`${topic}\n${id}`)
    this.topics.get(topic)?.(payload, from)
  }

  fireDisconnect (peerId: string): void { if (this.running) for (const l of this.listeners) l(peerId) }

  async request (address: string, payload: unknown, opts: { timeoutMs?: number } = {}): Promise<{ peerId: string, reply: unknown }> {
    if (!this.running) throw new MemoryTransportError('closed')
    const target = this.network.transports.get(address)
    if (target === undefined) throw new MemoryTransportError('refused')
    const timeoutMs = opts.timeoutMs ?? 1000
    const dropped = this.network.dropped.has(`${this.address}>${address}`) || this.network.dropped.has(`${address}>${this.address}`)
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => { reject(new MemoryTransportError('timeout')) }, timeoutMs)
      if (dropped) return
      setImmediate(() => {
        try {
          if (target.handler === undefined || !target.running) throw new MemoryTransportError('refused')
          const reply = target.handler({ peerId: this.peerId, remoteAddress: this.address }, JSON.parse(JSON.stringify(payload)))
          setImmediate(() => {
            clearTimeout(timer)
            resolve({ peerId: target.peerId, reply: JSON.parse(JSON.stringify(reply)) as unknown })
          })
        } catch (err) {
          clearTimeout(timer)
          reject(err instanceof MemoryTransportError ? err : new MemoryTransportError('invalid'))
        }
      })
    })
  }
}
