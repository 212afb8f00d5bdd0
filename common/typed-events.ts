import { EventEmitter } from 'node:events'

/**
 * A node:events emitter whose event names and payloads are checked by the compiler. Events are named
 * `noun:verb` (`view:installed`, `leader:elected`).
 */
export class TypedEmitter<Events extends Record<string, unknown>> {
  private readonly ee = new EventEmitter({ captureRejections: false })

  constructor () { this.ee.setMaxListeners(100) }

  on<K extends keyof Events & string> (event: K, listener: (payload: Events[K]) => void): () => void {
    this.ee.on(event, listener as (p: unknown) => void)
    return () => { this.ee.off(event, listener as (p: unknown) => void) }
  }

  once<K extends keyof Events & string> (event: K, listener: (payload: Events[K]) => void): void {
    this.ee.once(event, listener as (p: unknown) => void)
  }

  off<K extends keyof Events & string> (event: K, listener: (payload: Events[K]) => void): void {
    this.ee.off(event, listener as (p: unknown) => void)
  }

  /** Listeners run synchronously, in registration order; one that throws does not stop the others. */
  emit<K extends keyof Events & string> (event: K, payload: Events[K]): void {
    for (const l of this.ee.listeners(event)) {
      try {
        (l as (p: unknown) => void)(payload)
      } catch (err) {
        queueMicrotask(() => { throw err })
      }
    }
  }

  listenerCount (event: keyof Events & string): number { return this.ee.listenerCount(event) }
}
