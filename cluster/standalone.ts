/**
 * The member of a one-member "cluster" (`VECTIS_CLUSTER_ENABLED=false`): always its own leader, from start to stop.
 *
 * NOT guaranteed: anything about other processes. Two standalone daemons sharing a `VECTIS_SHARED_DIR` would both
 * lead; standalone mode is for one replica only.
 */
import { TypedEmitter } from '../common/typed-events.js'
import type { Logger } from '../common/logger.js'
import type { ClusterEvents, ClusterService, ClusterStatus, TransferResult } from './cluster-api.js'
import type { Epoch, Leadership } from './leadership-api.js'
import { LeadershipTransferError } from './errors.js'

export interface StandaloneInit {
  clusterName: string
  nodeName: string
  address: string
  /** Called once at start to obtain this leadership's epoch (persisted, rising across restarts). */
  nextEpoch?: (leader: string) => Epoch
}

export class StandaloneCluster implements ClusterService, Leadership {
  readonly events = new TypedEmitter<ClusterEvents>()
  private epoch: Epoch | undefined
  private running = false
  private abort: AbortController | undefined
  private readonly log: Logger

  constructor (components: { logger: Logger }, private readonly init: StandaloneInit) {
    this.log = components.logger.child({ component: 'cluster:standalone' })
  }

  get leadership (): Leadership { return this }

  async start (): Promise<void> {
    if (this.running) return
    this.epoch = this.init.nextEpoch?.(this.init.nodeName) ?? { number: 1, leader: this.init.nodeName }
    this.running = true
    this.abort = new AbortController()
    const member = { name: this.init.nodeName, address: this.init.address, isLeader: true }
    this.events.emit('view:installed', { viewId: { coordinator: this.init.nodeName, id: 1 }, members: [member] })
    this.log.info({ epoch: this.epoch }, 'standalone: this member is the leader')
    this.events.emit('leader:elected', { epoch: this.epoch, signal: this.abort.signal })
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    this.abort?.abort(new Error('shutdown'))
    this.events.emit('leader:demoted', { epoch: this.epoch!, reason: 'shutdown' })
  }

  isLeader (): boolean { return this.running }
  currentEpoch (): Epoch | undefined { return this.epoch }
  leaseRemainingMs (): number { return this.running ? Number.POSITIVE_INFINITY : 0 }

  status (): ClusterStatus {
    const leader = this.running
    return {
      clusterName: this.init.clusterName,
      nodeName: this.init.nodeName,
      isLeader: leader,
      leader: leader ? this.init.nodeName : null,
      epoch: this.epoch?.number ?? 0,
      viewId: { coordinator: this.init.nodeName, id: 1 },
      quorum: { required: 1, present: 1, ok: true },
      members: [{ name: this.init.nodeName, address: this.init.address, isLeader: leader }],
      memberCount: 1
    }
  }

  readiness (): { ready: true } | { ready: false, reason: string } {
    return this.running ? { ready: true } : { ready: false, reason: 'not started' }
  }

  heartbeatAgeMaxSeconds (): number { return 0 }
  heartbeatAgesMs (): Record<string, number> { return {} }

  async transferLeadership (to?: string): Promise<TransferResult> {
    throw new LeadershipTransferError(`standalone member: there is no other member to hand over to${to === undefined ? '' : ` (asked for ${to})`}`)
  }

  /** No other member sends requests to a standalone one. */
  serve (): void {}
}
