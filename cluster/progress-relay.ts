/**
 * The leader's live transfer progress for the other members' consoles: how many bytes each transfer in progress has
 * stored or sent between its sync points, which the replicated journal does not carry (it holds the sync points).
 * The leader publishes a batch a few times a second while transfers run, on a topic of its own (gossipsub, as the
 * journal): members that do not subscribe to it, such as older versions, never receive it.
 *
 * Not durable and not needed for correctness: a lost batch is replaced by the next one. A batch of an epoch lower
 * than the one this member knows (a deposed leader's) is dropped.
 */
import type { Logger } from '../common/logger.js'
import type { Leadership } from './leadership-api.js'
import type { ClusterTransport } from './transport-types.js'

export const PROGRESS_TOPIC = 'vectis/progress/1'
/** Items per published batch: far below the transport's frame limit (an item is ~100 bytes). */
export const MAX_BATCH_ITEMS = 500

/** One transfer's progress: its journal row `id`, file bytes so far, and its size when known. */
export interface ProgressItem {
  id: string
  bytes: number
  expectedBytes?: number
}

interface ProgressMessage { kind: 'progress', cluster: string, leader: string, epoch: number, items: ProgressItem[] }

export interface ProgressRelayComponents {
  logger: Logger
  transport: Pick<ClusterTransport, 'publish' | 'subscribe'>
  leadership: Pick<Leadership, 'isLeader' | 'currentEpoch'>
}

export class ProgressRelay {
  private readonly log: Logger
  private readonly listeners = new Set<(items: ProgressItem[]) => void>()
  private sent = 0

  constructor (private readonly c: ProgressRelayComponents, private readonly init: { clusterName: string, nodeName: string }) {
    this.log = c.logger.child({ component: 'progress-relay' })
  }

  start (): void {
    this.c.transport.subscribe(PROGRESS_TOPIC, (payload) => { this.onMessage(payload) })
  }

  /** On the leader: tells the other members. Elsewhere, or with nothing to tell, does nothing. */
  publish (items: readonly ProgressItem[]): void {
    const epoch = this.c.leadership.currentEpoch()?.number
    if (items.length === 0 || epoch === undefined || !this.c.leadership.isLeader()) return
    for (let i = 0; i < items.length; i += MAX_BATCH_ITEMS) {
      const msg: ProgressMessage = { kind: 'progress', cluster: this.init.clusterName, leader: this.init.nodeName, epoch, items: items.slice(i, i + MAX_BATCH_ITEMS) }
      this.c.transport.publish(PROGRESS_TOPIC, `p:${this.init.nodeName}:${epoch}:${++this.sent}`, msg).catch((err: unknown) => {
        this.log.debug({ err }, 'could not publish transfer progress')
      })
    }
  }

  /** Calls `listener` with each batch received from the leader; returns the unsubscribe function. */
  onProgress (listener: (items: ProgressItem[]) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  private onMessage (payload: unknown): void {
    if (!isProgress(payload) || payload.cluster !== this.init.clusterName) return
    if (payload.epoch < (this.c.leadership.currentEpoch()?.number ?? 0)) return
    const items = payload.items.filter(isItem)
    if (items.length === 0) return
    for (const l of this.listeners) l(items)
  }
}

function isProgress (x: unknown): x is ProgressMessage {
  if (typeof x !== 'object' || x === null) return false
  const m = x as Partial<Record<keyof ProgressMessage, unknown>>
  return m.kind === 'progress' && typeof m.cluster === 'string' && typeof m.leader === 'string' && Number.isSafeInteger(m.epoch) && Array.isArray(m.items)
}

function isItem (x: unknown): x is ProgressItem {
  if (typeof x !== 'object' || x === null) return false
  const i = x as Partial<Record<keyof ProgressItem, unknown>>
  const count = (n: unknown): boolean => Number.isSafeInteger(n) && (n as number) >= 0
  return typeof i.id === 'string' && count(i.bytes) && (i.expectedBytes === undefined || count(i.expectedBytes))
}
