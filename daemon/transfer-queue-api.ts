/**
 * The transfer queue as the API sees it (docs/contract.md §3.11):
 *
 * - `POST /api/transfers`: queue a transfer the cluster initiates. The leader checks the request against the
 *   configuration, writes the row, and answers 202 `{id}` once the row is durable on a majority of the members
 *   (the replicated journal); 400 with the reason for a bad request. On a standby the request is forwarded to the
 *   leader over the cluster and answered with the leader's answer.
 * - `DELETE /api/transfers/{id}`: cancel a queued or running initiated transfer (a running attempt is stopped).
 *
 * `GET /api/transfers/{id}` (the row, on any member) is the journal's.
 */
import { realpathSync, statSync } from 'node:fs'
import { isAbsolute, join, relative, sep } from 'node:path'
import type { Logger } from '../common/logger.js'
import type { Startable } from '../common/lifecycle.js'
import type { Leadership } from '../cluster/leadership-api.js'
import { InvalidTransferError, NotLeaderError, TransferNotFoundError } from '../store/errors.js'
import type { InitiatedRequest, TransferRecord } from '../store/journal-records.js'
import type { EnqueueInput } from '../store/transfer-queue.js'
import type { Journal } from '../store/journal.js'
import { fileIdError, type PesitFileConfig, type PesitPartnerConfig } from '../transfer/config-types.js'
import { QUEUED_ARTICLE_SIZE, QUEUED_ARTICLES_PER_SYNC } from '../transfer/queued-send.js'
import { HttpError, type HttpServer } from './http-server.js'
import { atLeader, type ForwardedReply, type LeaderForwarding } from './leader-forwarding.js'

const SERVICE = 'transfers'
const FORWARD_TIMEOUT_MS = 15_000
/** How long a POST waits for its row to reach a majority. */
const DURABLE_TIMEOUT_MS = 10_000

const FIELDS = new Set(['direction', 'partner', 'file', 'path', 'remoteName', 'into', 'priority', 'notBefore'])

export interface TransferQueueApiComponents {
  logger: Logger
  http: HttpServer
  leadership: Leadership
  journal: () => Journal
  /** resolves once `seq` is durable on a majority (immediately on a standalone daemon) */
  durable: (seq: number, timeoutMs: number) => Promise<void>
  /** resolves once a new leader may write its journal */
  leaderReady?: () => Promise<void>
  forwarding?: LeaderForwarding
  /** the runner: something was queued, or `id` cancelled */
  queued: () => void
  cancelled: (id: string) => void
}

export interface TransferQueueApiInit {
  clusterName: string
  member: string
  sharedDir: string
  partners: ReadonlyMap<string, PesitPartnerConfig>
  files: ReadonlyMap<string, PesitFileConfig>
}

export class TransferQueueApi implements Startable {
  private readonly log: Logger

  constructor (private readonly c: TransferQueueApiComponents, private readonly init: TransferQueueApiInit) {
    this.log = c.logger.child({ component: 'daemon:queue' })
    c.http.route('POST', '/api/transfers', async (req) => {
      const r = await this.anywhere({ op: 'enqueue', body: req.body ?? null })
      return { status: r.status, json: r.json }
    }, { auth: true })
    c.http.route('DELETE', '/api/transfers/{id}', async (req) => {
      const r = await this.anywhere({ op: 'cancel', id: req.params.id! })
      return { status: r.status, json: r.json }
    }, { auth: true })
  }

  async start (): Promise<void> {
    this.c.forwarding?.serve(SERVICE, async (_from, payload) => await this.onForwarded(payload))
  }

  async stop (): Promise<void> {}

  private async anywhere (payload: { op: 'enqueue', body: unknown } | { op: 'cancel', id: string }): Promise<ForwardedReply> {
    if (this.c.leadership.isLeader() || this.c.forwarding === undefined) return await this.here(payload)
    return await atLeader(this.c.forwarding, SERVICE, { cluster: this.init.clusterName, ...payload }, {
      timeoutMs: FORWARD_TIMEOUT_MS,
      what: payload.op === 'enqueue' ? 'the request to queue a transfer' : 'the cancellation',
      ifLost: payload.op === 'enqueue'
        ? 'the transfer may have been queued: GET /api/transfers?status=queued tells'
        : 'GET /api/transfers/{id} tells whether it was cancelled'
    })
  }

  private async onForwarded (payload: Record<string, unknown>): Promise<ForwardedReply> {
    if (payload.cluster !== this.init.clusterName) return { status: 400, json: { error: 'malformed forwarded request' } }
    if (!this.c.leadership.isLeader()) return { status: 503, json: { error: 'the member asked is no longer the leader; try again' } }
    if (payload.op === 'enqueue') return await this.here({ op: 'enqueue', body: payload.body })
    if (payload.op === 'cancel' && typeof payload.id === 'string') return await this.here({ op: 'cancel', id: payload.id })
    return { status: 400, json: { error: 'malformed forwarded request' } }
  }

  private async here (payload: { op: 'enqueue', body: unknown } | { op: 'cancel', id: string }): Promise<ForwardedReply> {
    try {
      await this.c.leaderReady?.()
      return payload.op === 'enqueue' ? await this.enqueue(payload.body) : await this.cancel(payload.id)
    } catch (err) {
      if (err instanceof HttpError) return { status: err.status, json: { error: err.message } }
      if (err instanceof NotLeaderError) return { status: 503, json: { error: 'this member is not (or no longer) the leader; try again' } }
      if (err instanceof TransferNotFoundError) return { status: 404, json: { error: err.message } }
      if (err instanceof InvalidTransferError) return { status: 409, json: { error: err.message } }
      throw err
    }
  }

  private async enqueue (body: unknown): Promise<ForwardedReply> {
    const input = this.parse(body)
    const journal = this.c.journal()
    const row = journal.queue.enqueue(input)
    try {
      await this.c.durable(row.seq, DURABLE_TIMEOUT_MS)
    } catch (err) {
      // The row exists on this leader and will run; only its durability elsewhere is not confirmed.
      return { status: 503, json: { error: `queued as ${row.id} but not confirmed on a majority of the members: ${(err as Error).message}; GET /api/transfers/${row.id} tells whether it stayed`, id: row.id } }
    }
    this.log.info({ transfer: row.id, partner: row.partner, file: row.virtualFile, direction: row.direction }, 'transfer queued')
    this.c.queued()
    return { status: 202, json: { id: row.id } }
  }

  private async cancel (id: string): Promise<ForwardedReply> {
    const journal = this.c.journal()
    const row = journal.get(id)
    if (row === undefined) return { status: 404, json: { error: `no transfer ${id}` } }
    if (row.initiator !== 'cluster') return { status: 409, json: { error: `transfer ${id} was started by partner ${row.partner}: only transfers the cluster initiates can be cancelled` } }
    const done: TransferRecord = journal.queue.cancel(id, 'cancelled through the API')
    this.c.cancelled(id)
    this.log.info({ transfer: id }, 'transfer cancelled')
    try {
      await this.c.durable(done.seq, DURABLE_TIMEOUT_MS)
    } catch (err) {
      return { status: 503, json: { error: `cancelled here, but not confirmed on a majority of the members: ${(err as Error).message}; GET /api/transfers/${id} tells whether it stayed cancelled`, id } }
    }
    return { status: 200, json: done }
  }

  /** The request, checked against the configuration: every refusal is a 400 naming the field. */
  private parse (body: unknown): EnqueueInput {
    const bad = (why: string): never => { throw new HttpError(400, why) }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) bad('expected a JSON object {direction, partner, file, ...}')
    const b = body as Record<string, unknown>
    for (const k of Object.keys(b)) if (!FIELDS.has(k)) bad(`unknown field "${k.slice(0, 40)}" (known: ${[...FIELDS].join(', ')})`)
    const text = (name: string): string | undefined => {
      const v = b[name]
      if (v === undefined) return undefined
      if (typeof v !== 'string' || v === '') bad(`${name} must be a non-empty string`)
      return v as string
    }
    const direction = text('direction')
    if (direction !== 'send' && direction !== 'fetch') bad('direction must be "send" or "fetch"')
    const partnerId = text('partner') ?? bad('partner is required')
    const partner = this.init.partners.get(partnerId) ?? bad(`partner "${partnerId.slice(0, 40)}" is not configured`)
    if (partner.outbound === undefined) bad(`partner ${partnerId} has no host to call (partners[].host in the configuration)`)
    const file = text('file') ?? bad('file (the partner\'s virtual file) is required')
    const fileErr = fileIdError(file)
    if (fileErr !== undefined) bad(`file: ${fileErr}`)
    const priority = b.priority ?? 1
    if (priority !== 0 && priority !== 1 && priority !== 2) bad('priority must be 0 (urgent), 1 (medium) or 2 (low)')
    let notBefore: number | undefined
    const nb = text('notBefore')
    if (nb !== undefined) {
      notBefore = Date.parse(nb)
      if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.test(nb) || Number.isNaN(notBefore)) bad('notBefore must be an RFC 3339 time, such as 2026-12-24T08:00:00Z')
    }
    const request: InitiatedRequest = { priority: priority as number, ...(nb !== undefined ? { notBefore: new Date(notBefore!).toISOString() } : {}) }
    const epoch = this.c.leadership.currentEpoch()?.number ?? 0
    const base = { epoch, member: this.init.member, partner: partnerId, serverId: partner.outbound!.serverId, remoteFile: file, ...(notBefore !== undefined ? { notBefore } : {}) }
    if (direction === 'fetch') {
      if (b.path !== undefined) bad('path is for a send; a fetch lands in the virtual file named by "into"')
      const into = text('into') ?? bad('into (the local receive virtual file the fetched file lands in) is required')
      const local = this.init.files.get(into) ?? bad(`into: "${into.slice(0, 40)}" is not a local virtual file`)
      if (local.direction === 'send') bad(`into: ${into} is a send virtual file; a fetch needs one of direction receive or both`)
      const remoteName = text('remoteName')
      if (remoteName !== undefined) {
        const why = remoteNameError(remoteName, file)
        if (why !== undefined) bad(`remoteName: ${why}`)
      }
      return { ...base, direction: 'receive', request: { ...request, into, ...(remoteName !== undefined ? { remoteName } : {}) } }
    }
    if (b.remoteName !== undefined || b.into !== undefined) bad('remoteName and into are for a fetch')
    const path = this.sharedFile(text('path') ?? bad('path (the file to send, under VECTIS_SHARED_DIR) is required'))
    return { ...base, direction: 'send', filePath: path, request: { ...request, articleSize: QUEUED_ARTICLE_SIZE, articlesPerSync: QUEUED_ARTICLES_PER_SYNC } }
  }

  /** `p` (absolute, or relative to VECTIS_SHARED_DIR) as a regular file inside the shared directory, symlinks resolved. */
  private sharedFile (p: string): string {
    const root = realpathSync(this.init.sharedDir)
    let real: string
    try {
      real = realpathSync(isAbsolute(p) ? p : join(this.init.sharedDir, p))
    } catch (err) {
      throw new HttpError(400, `path ${p.slice(0, 200)}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`)
    }
    const rel = relative(root, real)
    if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) {
      throw new HttpError(400, `path ${p.slice(0, 200)} is not under VECTIS_SHARED_DIR (${this.init.sharedDir}): every member must be able to read it`)
    }
    if (!statSync(real).isFile()) throw new HttpError(400, `path ${p.slice(0, 200)} is not a regular file`)
    return real
  }
}

/** Why `name` cannot name one file of the partner's virtual file `file` (`FILEID/name` in PI 12), if it cannot. */
function remoteNameError (name: string, file: string): string | undefined {
  if (/[/\\]/.test(name) || name === '.' || name === '..') return 'one file name, without / or \\'
  if (name.startsWith('.')) return 'a hidden name is never offered by a server'
  if (!/^[\x20-\x7e]+$/.test(name) || file.length + 1 + name.length > 76) return `"${file}/${name.slice(0, 40)}" does not fit PI 12 (76 printable characters)`
  return undefined
}
