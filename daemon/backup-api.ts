/**
 * Journal backups as the API and the schedule see them (docs/contract.md §3.9, docs/design.md §5.7):
 *
 * - `POST /api/backups`: this member copies its own journal (a standby's replica is as good as the leader's once
 *   its lag is 0; taking it there spares the leader) → 201 with the manifest.
 * - `GET /api/backups`: the backups in `VECTIS_SHARED_DIR/backups`, newest first (every member sees the same
 *   directory).
 * - `POST /api/backups/{id}/restore`: the leader merges the verified backup into the journal, which replicates it;
 *   a standby forwards the request to the leader over the cluster and answers with the leader's answer.
 * - `VECTIS_BACKUP_SCHEDULE`: the leader, and only while it leads, takes a backup at each time of the cron
 *   expression (UTC); the oldest beyond `VECTIS_BACKUP_KEEP` are deleted once the new one is verified.
 *
 * A restore's request may take long on a large journal: the HTTP answer comes when it ends.
 */
import { Cron } from 'croner'
import type { Logger } from '../common/logger.js'
import type { Startable } from '../common/lifecycle.js'
import { whileLeader, type Leadership } from '../cluster/leadership-api.js'
import type { Backups, BackupManifest } from '../store/backups.js'
import { BackupBusyError, BackupError, BackupNotFoundError, NotLeaderError } from '../store/errors.js'
import type { Store } from '../store/store.js'
import { HttpError, type HttpServer, type Reply } from './http-server.js'
import { atLeader, type ForwardedReply, type LeaderForwarding } from './leader-forwarding.js'

const SERVICE = 'backups'
/** A forwarded restore waits this long for the leader's answer. */
const FORWARD_TIMEOUT_MS = 10 * 60 * 1000

export interface BackupApiComponents {
  logger: Logger
  http: HttpServer
  store: Store
  backups: Backups
  leadership: Leadership
  forwarding?: LeaderForwarding
  /**
   * Resolves once a new leader may write its journal (with VECTIS_REPLICATION=sync, after it took from the members
   * what its predecessor had them acknowledge): a restore appends to the journal.
   */
  leaderReady?: () => Promise<void>
  /** Called after every scheduled or requested backup, with its outcome (metrics). */
  onBackup?: (ok: boolean, manifest?: BackupManifest) => void
}

export interface BackupApiInit {
  clusterName: string
  /** `VECTIS_BACKUP_SCHEDULE`, already checked (common/cron.ts). */
  schedule?: string
}

export class BackupApi implements Startable {
  private readonly log: Logger
  private readonly offs: Array<() => void> = []
  private job: Cron | undefined

  constructor (private readonly c: BackupApiComponents, private readonly init: BackupApiInit) {
    this.log = c.logger.child({ component: 'daemon:backups' })
    const h = c.http
    h.route('GET', '/api/backups', async () => ({ json: { backups: await c.backups.list() } }), { auth: true })
    h.route('POST', '/api/backups', async (req) => {
      noFields(req.body, 'POST /api/backups takes no fields')
      return { status: 201, json: await this.create() }
    }, { auth: true })
    h.route('POST', '/api/backups/{id}/restore', async (req): Promise<Reply> => {
      noFields(req.body, 'a restore takes no fields')
      const r = await this.restoreAnywhere(req.params.id!)
      return { status: r.status, json: r.json }
    }, { auth: true })
  }

  async start (): Promise<void> {
    this.c.forwarding?.serve(SERVICE, async (_from, payload) => await this.onForwarded(payload))
    if (this.init.schedule === undefined) return
    this.offs.push(whileLeader(this.c.leadership, { elected: () => { this.schedule() }, demoted: () => { this.unschedule() } }))
  }

  async stop (): Promise<void> {
    for (const off of this.offs.splice(0)) off()
    this.unschedule()
  }

  private schedule (): void {
    if (this.job !== undefined || this.init.schedule === undefined) return
    // `protect`: a run still going when the next is due makes that one skip, not overlap.
    this.job = new Cron(this.init.schedule, { timezone: 'UTC', protect: true, unref: true }, async () => {
      if (!this.c.leadership.isLeader()) return
      await this.create().catch((err: unknown) => {
        this.log.error({ err }, 'scheduled backup failed; the next one runs at its time')
      })
    })
    this.log.info({ schedule: this.init.schedule, next: this.job.nextRun()?.toISOString() }, 'scheduled backups on')
  }

  private unschedule (): void {
    if (this.job === undefined) return
    this.job.stop()
    this.job = undefined
    this.log.info('scheduled backups off: not the leader')
  }

  private async create (): Promise<BackupManifest> {
    const store = this.c.store
    try {
      const m = await this.c.backups.create({
        copyTo: async (d) => { await store.backup(d) },
        epoch: store.clusterState.highestEpochNumber()
      })
      this.c.onBackup?.(true, m)
      return m
    } catch (err) {
      if (err instanceof BackupBusyError) throw new HttpError(409, err.message)
      this.c.onBackup?.(false)
      throw err
    }
  }

  /** Here if this member leads, else at the leader. */
  private async restoreAnywhere (id: string): Promise<ForwardedReply> {
    if (this.c.leadership.isLeader() || this.c.forwarding === undefined) return await this.restoreHere(id)
    return await atLeader(this.c.forwarding, SERVICE, { cluster: this.init.clusterName, op: 'restore', id }, {
      timeoutMs: FORWARD_TIMEOUT_MS,
      what: 'the restore',
      ifLost: 'it may still be running: GET /api/backups and the journal tell, and running it again is safe'
    })
  }

  private async restoreHere (id: string): Promise<ForwardedReply> {
    try {
      await this.c.leaderReady?.()
      return { status: 200, json: await this.c.backups.restore(id, this.c.store.journal) }
    } catch (err) {
      if (err instanceof BackupNotFoundError) return { status: 404, json: { error: err.message } }
      if (err instanceof BackupBusyError) return { status: 409, json: { error: err.message } }
      if (err instanceof BackupError) return { status: 422, json: { error: err.message } }
      if (err instanceof NotLeaderError) {
        return { status: 409, json: { error: 'this member is not (or no longer) the leader; rows restored so far stay, and running the restore again completes it' } }
      }
      throw err
    }
  }

  private async onForwarded (payload: Record<string, unknown>): Promise<ForwardedReply> {
    if (payload.cluster !== this.init.clusterName || payload.op !== 'restore' || typeof payload.id !== 'string') {
      return { status: 400, json: { error: 'malformed forwarded request' } }
    }
    if (!this.c.leadership.isLeader()) return { status: 503, json: { error: 'the member asked is no longer the leader; try again' } }
    return await this.restoreHere(payload.id)
  }
}

function noFields (body: unknown, what: string): void {
  if (body === undefined) return
  if (typeof body !== 'object' || body === null || Array.isArray(body) || Object.keys(body).length > 0) throw new HttpError(400, what)
}
