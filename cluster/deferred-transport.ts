/**
 * A cluster transport whose implementation is loaded when it starts: libp2p and its protocol stack are about 600
 * modules, a good part of the daemon's load time. The daemon begins that `import()` when it is built, so it runs
 * while the store opens and the HTTP listener starts, and a standalone daemon never loads it at all.
 *
 * It forwards everything to the real transport once `start()` has loaded and started it. A handler or disconnect
 * listener registered earlier is passed on. NOT available before `start()` resolved: `peerId` and `request()`
 * (the membership driver uses them only after starting the transport).
 */
import { TransportError } from './errors.js'
import type { ClusterTransport, RequestHandler, RequestOptions, RequestResult, TopicHandler } from './transport-types.js'

export class DeferredTransport implements ClusterTransport {
  private inner: ClusterTransport | undefined
  private opening: Promise<ClusterTransport> | undefined
  private handler: RequestHandler | undefined
  private readonly disconnectListeners = new Set<(peerId: string) => void>()
  private readonly topics = new Map<string, TopicHandler>()

  /** `open` builds the real transport (not started); called once, at the first `start()`, again only if it failed. */
  constructor (private readonly open: () => Promise<ClusterTransport>) {}

  get peerId (): string { return this.started().peerId }

  async start (): Promise<void> {
    if (this.inner === undefined) {
      this.opening ??= this.open().then((t) => {
        if (this.handler !== undefined) t.handle(this.handler)
        t.onDisconnect((peerId) => { for (const l of this.disconnectListeners) l(peerId) })
        for (const [topic, h] of this.topics) t.subscribe(topic, h)
        return t
      })
      try {
        this.inner = await this.opening
      } catch (err) {
        this.opening = undefined
        throw err
      }
    }
    await this.inner.start()
  }

  async stop (): Promise<void> {
    // A load still in progress (a start that failed or was abandoned) settles first.
    if (this.inner === undefined) await this.opening?.catch(() => {})
    await this.inner?.stop()
  }

  async request (address: string, payload: unknown, opts?: RequestOptions): Promise<RequestResult> {
    return await this.started().request(address, payload, opts)
  }

  handle (handler: RequestHandler): void {
    this.handler = handler
    this.inner?.handle(handler)
  }

  async publish (topic: string, id: string, payload: unknown): Promise<void> {
    await this.started().publish(topic, id, payload)
  }

  subscribe (topic: string, handler: TopicHandler): void {
    this.topics.set(topic, handler)
    this.inner?.subscribe(topic, handler)
  }

  onDisconnect (listener: (peerId: string) => void): () => void {
    this.disconnectListeners.add(listener)
    return () => { this.disconnectListeners.delete(listener) }
  }

  private started (): ClusterTransport {
    if (this.inner === undefined) throw new TransportError('closed', 'the transport has not been started')
    return this.inner
  }
}
