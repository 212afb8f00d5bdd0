/**
 * The transfer journal on every member (docs/design.md §5.6): the leader publishes each change of its log, as it
 * is committed, on a cluster topic (gossipsub: relayed member to member), and its head (the end of its log) every
 * second; the other members apply what they receive in order (`Journal.applyRun`) and repair any gap (a lost
 * message, a restart, a late join, an empty data directory) by asking the leader directly for what follows their
 * position, page by page.
 *
 * Retention is the leader's, logged as prune entries that every member applies. A member that was away longer
 * than the retention may have missed one (the leader pruned it from its log): the leader tells, in every catch-up
 * page, the highest prune entry it pruned (its horizon), and a member below it compares its whole log with the
 * leader's from the start (a resync), which removes the rows the leader no longer has.
 *
 * Fencing is on the publisher's epoch: a run or a head of an epoch lower than the one this member knows is
 * refused, and a run whose range holds newer entries here is refused by the journal itself. A new leader first
 * drops its own unconfirmed tail (entries of an earlier leadership past its position), then publishes from its
 * position on.
 *
 * Each member tells the leader how far it is (`ack`, at most every ACK_INTERVAL_MS; at once in `sync` mode): the
 * status shows it.
 *
 * `sync` mode (`VECTIS_REPLICATION=sync`): `awaitReplicated(seq)` resolves once a majority of the primary view
 * (the leader included) holds the log up to `seq` durably; the PeSIT side waits for it before ACK(SYN) and
 * ACK(TRANS.END). A new leader first catches up from the other members (any of them may hold entries acknowledged
 * by its predecessor that it lacks: a majority has every one), and only then is ready (`leaderReady`) to serve.
 *
 * NOT guaranteed in the default `async` mode: that a change the leader committed reaches any other member before
 * the leader dies. The window is the replication lag (`vectis_journal_replication_lag_entries`, a few ms on a
 * LAN); what the dead leader alone had is lost, and the members' rows follow the new leader's log.
 */
import type { Logger } from '../common/logger.js'
import type { LeaderRun, LogEntry, RunResult } from '../store/journal.js'
import { ReplicationConflictError } from '../store/errors.js'
import type { ServiceHandler } from './cluster-api.js'
import type { Leadership } from './leadership-api.js'
import type { ClusterTransport } from './transport-types.js'

export const JOURNAL_TOPIC = 'vectis/journal/1'
const SERVICE = 'journal'
/** The leader's head, so that a member that missed the last run learns it is behind. */
export const HEAD_INTERVAL_MS = 1000
/** Entries per published run and per catch-up page, and their size: well below the transport's frame limit (1 MiB). */
const RUN_ENTRIES = 200
const PAGE_ENTRIES = 500
const PAGE_BYTES = 512 * 1024
const CATCH_UP_TIMEOUT_MS = 5000
const ACK_INTERVAL_MS = 200
/** `sync` mode: how long an acknowledgement to a partner may wait for a majority */
export const DEFAULT_REPLICATION_TIMEOUT_MS = 2000

export interface ReplicationJournal {
  position(): number
  changesSince(seq: number, limit: number): LogEntry[]
  applyRun(run: LeaderRun): RunResult
  alignTo(head: { seq: number, epoch: number }): number
  truncateAfterPosition(belowEpoch: number): number
  prunedThrough(): number
  onAppended(listener: (e: LogEntry) => void): () => void
}

export interface ReplicationComponents {
  logger: Logger
  journal: ReplicationJournal
  transport: Pick<ClusterTransport, 'publish' | 'subscribe' | 'request'>
  cluster: {
    /** the cluster address ("ip:port") of the leader this member knows, if any */
    leaderAddress(): string | undefined
    /** the other members of the installed view: name and cluster address */
    peers(): Array<{ name: string, address: string }>
    /** members that make a majority of the primary view (the leader included) */
    majority(): number
    serve(name: string, handler: ServiceHandler): void
  }
  leadership: Leadership
}

export interface ReplicationInit {
  clusterName: string
  nodeName: string
  mode?: 'async' | 'sync'
  headIntervalMs?: number
  replicationTimeoutMs?: number
}

/** What this member knows of replication, for the status and the metrics. */
export interface ReplicationState {
  /** this member's position in the leader's log */
  seq: number
  /** entries between it and the leader's last known head (0 on the leader) */
  lagEntries: number
  /** the position each member last reported (on the leader; others know only their own) */
  members: Record<string, number>
  /** runs and heads refused: a deposed leader, or a run that contradicts the log here */
  refused: number
}

/** `start`: where the publisher's own history begins (its position when it became ready to lead) */
interface RunMessage { kind: 'run', cluster: string, leader: string, epoch: number, start: number, after: number, entries: LogEntry[] }
interface HeadMessage { kind: 'head', cluster: string, leader: string, epoch: number, start: number, seq: number }
/**
 * The answer to `since`: what the answering member's log holds after `after`, all of it up to `through`;
 * `leading` (with its `start`) if it leads; `horizon`: the highest prune entry it pruned from its log.
 */
interface SinceReply { epoch: number, leading: boolean, start: number, after: number, entries: LogEntry[], through: number, head: number, horizon: number }

export class JournalReplicator {
  private readonly log: Logger
  private readonly headIntervalMs: number
  /**
   * While leading: the epoch, where its own history starts, where the next run starts, the stops. `ready` once the
   * log is settled (`sync`: caught up from the others): until then it publishes nothing and answers no member as
   * leader, since members would align to a `start` that is not final and drop what is still being fetched.
   */
  private leading: { epoch: number, start: number, published: number, queue: LogEntry[], flushing: boolean, ready: boolean, offs: Array<() => void> } | undefined
  /** the newest leader epoch whose start this log was aligned to */
  private alignedEpoch = 0
  private headCounter = 0
  /** the highest leader epoch seen in runs and heads, and that leader's last head */
  private leaderEpoch = 0
  private leaderHead = 0
  private catchingUp: Promise<void> | undefined
  private catchUpAgain = false
  private readonly acks = new Map<string, number>()
  private lastAck = { at: 0, seq: -1, epoch: -1 }
  private ackTimer: NodeJS.Timeout | undefined
  private refused = 0
  private running = false
  /** `sync`: waits for a majority at `seq` */
  private waiters: Array<{ seq: number, resolve: () => void, reject: (err: Error) => void, timer: NodeJS.Timeout }> = []
  /** resolved once a new leader has caught up from the others (at once in `async` mode) */
  private ready: Promise<void> = Promise.resolve()
  private readonly sync: boolean
  private readonly offs: Array<() => void> = []

  constructor (private readonly c: ReplicationComponents, private readonly init: ReplicationInit) {
    this.log = c.logger.child({ component: 'journal:replication' })
    this.headIntervalMs = init.headIntervalMs ?? HEAD_INTERVAL_MS
    this.sync = init.mode === 'sync'
  }

  /**
   * `sync` mode: resolves once a majority of the primary view, this leader included, holds the log up to `seq`;
   * rejects after the replication timeout or when this member stops leading. `async`: resolves at once.
   */
  async awaitReplicated (seq: number): Promise<void> {
    if (this.sync) await this.awaitMajority(seq)
  }

  /**
   * Resolves once a majority of the primary view (the leader included) holds the log up to `seq` durably, in either
   * mode (in `async` the members report their position at most every ACK_INTERVAL_MS): what an API answers with
   * "durable on a majority" waits for. Rejects after `timeoutMs` or if this member stops leading.
   */
  async awaitMajority (seq: number, timeoutMs = this.init.replicationTimeoutMs ?? DEFAULT_REPLICATION_TIMEOUT_MS): Promise<void> {
    if (this.replicatedOnMajority(seq)) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.timer !== timer)
        reject(new Error(`journal entry ${seq} not on a majority of the members within ${timeoutMs} ms`))
      }, timeoutMs)
      this.waiters.push({ seq, resolve, reject, timer })
    })
  }

  /** A new leader: resolves once its log holds what the others have (`sync`), at once otherwise. */
  async leaderReady (): Promise<void> { await this.ready }

  /** Whether this member leads and may append to its log (`leaderReady` has resolved). */
  writable (): boolean { return this.leading?.ready === true }

  private replicatedOnMajority (seq: number): boolean {
    if (this.leading === undefined || this.c.journal.position() < seq) return false
    let have = 1
    for (const [, s] of this.acks) if (s >= seq) have++
    return have >= this.c.cluster.majority()
  }

  private settleWaiters (): void {
    this.waiters = this.waiters.filter((w) => {
      if (!this.replicatedOnMajority(w.seq)) return true
      clearTimeout(w.timer)
      w.resolve()
      return false
    })
  }

  private failWaiters (why: string): void {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer)
      w.reject(new Error(why))
    }
  }

  /**
   * Subscribes and starts. Call it before anything that writes the journal on election subscribes to the
   * leadership events (the PeSIT servers): a new leader drops its unconfirmed tail first.
   */
  start (): void {
    if (this.running) return
    this.running = true
    this.c.transport.subscribe(JOURNAL_TOPIC, (payload) => { this.onMessage(payload) })
    this.c.cluster.serve(SERVICE, (from, payload) => this.onRequest(from, payload))
    const ev = this.c.leadership.events
    this.offs.push(ev.on('leader:elected', (e) => { this.lead(e.epoch.number) }))
    this.offs.push(ev.on('leader:demoted', () => { this.stopLeading() }))
    if (this.c.leadership.isLeader()) this.lead(this.c.leadership.currentEpoch()?.number ?? 0)
  }

  stop (): void {
    this.running = false
    this.stopLeading()
    for (const off of this.offs.splice(0)) off()
    clearTimeout(this.ackTimer)
  }

  state (): ReplicationState {
    const seq = this.c.journal.position()
    const members: Record<string, number> = this.leading !== undefined ? Object.fromEntries(this.acks) : {}
    if (this.leading !== undefined) members[this.init.nodeName] = seq
    return { seq, lagEntries: this.leading !== undefined ? 0 : Math.max(0, this.leaderHead - seq), members, refused: this.refused }
  }

  // ---- leader ----------------------------------------------------------------------------------------------------

  private lead (epoch: number): void {
    if (!this.running) return
    this.stopLeading()
    const dropped = this.c.journal.truncateAfterPosition(epoch)
    if (dropped > 0) this.log.warn({ dropped, epoch }, 'entries of an earlier leadership that no member confirmed were dropped from this log')
    const l = { epoch, start: this.c.journal.position(), published: this.c.journal.position(), queue: [] as LogEntry[], flushing: false, ready: false, offs: [] as Array<() => void> }
    this.leading = l
    this.acks.clear()
    // `sync`: entries a majority acknowledged to the previous leader may be on members only; fetch them first.
    this.ready = this.sync ? this.catchUpFromPeers(l) : Promise.resolve()
    l.offs.push(this.c.journal.onAppended((e) => {
      l.queue.push(e)
      if (!l.flushing) {
        l.flushing = true
        // Entries committed in the same turn go in one run.
        setImmediate(() => { this.flush(l) })
      }
    }))
    void this.ready.then(() => {
      if (this.leading !== l) return
      l.ready = true
      const timer = setInterval(() => { this.publishHead(l) }, this.headIntervalMs)
      timer.unref()
      l.offs.push(() => { clearInterval(timer) })
      this.publishHead(l)
      if (l.queue.length > 0 && !l.flushing) this.flush(l)
      this.log.info({ epoch, position: l.published, mode: this.sync ? 'sync' : 'async' }, 'publishing the journal')
    })
  }

  /**
   * A new leader in `sync` mode: asks every other member of the view for what its log holds past this one's
   * position and applies the longest answer (entries of earlier leaderships), so that no entry a majority
   * acknowledged is lost. Members that do not answer in time are skipped: a majority holds every acknowledged entry,
   * and this leader's election needed a majority too, so at least one of them answered (or the entry is here).
   */
  private async catchUpFromPeers (l: NonNullable<JournalReplicator['leading']>): Promise<void> {
    try {
      await this.takeFromPeers(l)
    } finally {
      // Runs start from what this log holds now (nothing is appended before the leader is ready: the servers wait).
      if (this.leading === l && l.queue.length === 0) l.published = l.start = this.c.journal.position()
    }
  }

  private async takeFromPeers (l: NonNullable<JournalReplicator['leading']>): Promise<void> {
    for (let round = 0; round < 1000 && this.leading === l; round++) {
      const after = this.c.journal.position()
      const replies = await Promise.all(this.c.cluster.peers().map(async (p) => await this.since(p.address, after).catch(() => undefined)))
      // The most recent history wins, as in Raft: the highest epoch of the last entry, then the longest.
      const last = (r: { entries: LogEntry[] }): LogEntry => r.entries.at(-1)!
      const newer = (x: { entries: LogEntry[] }, y: { entries: LogEntry[] }): boolean =>
        last(x).epoch > last(y).epoch || (last(x).epoch === last(y).epoch && last(x).seq > last(y).seq)
      const best = replies.reduce<{ entries: LogEntry[], head: number } | undefined>((b, r) => r !== undefined && r.entries.length > 0 && (b === undefined || newer(r, b)) ? r : b, undefined)
      if (best === undefined || this.leading !== l) return
      const epoch = Math.max(...best.entries.map((e) => e.epoch))
      try {
        this.c.journal.applyRun({ after, epoch, entries: best.entries })
      } catch (err) {
        this.log.warn({ err, after }, 'could not take the entries another member holds past this leader\'s position')
        return
      }
      if (this.c.journal.position() <= after) return
    }
  }

  private stopLeading (): void {
    const l = this.leading
    if (l === undefined) return
    this.leading = undefined
    for (const off of l.offs.splice(0)) off()
    this.failWaiters('this member no longer leads')
  }

  private flush (l: NonNullable<JournalReplicator['leading']>): void {
    l.flushing = false
    if (this.leading !== l || !l.ready) return
    const entries = l.queue.splice(0)
    for (let i = 0; i < entries.length;) {
      const chunk = bySize(entries.slice(i, i + RUN_ENTRIES))
      i += chunk.length
      const after = l.published
      const last = chunk.at(-1)!.seq
      l.published = last
      const msg: RunMessage = { kind: 'run', cluster: this.init.clusterName, leader: this.init.nodeName, epoch: l.epoch, start: l.start, after, entries: chunk }
      this.c.transport.publish(JOURNAL_TOPIC, `r:${l.epoch}:${after}:${last}`, msg)
        .catch((err: unknown) => { this.log.debug({ err }, 'publishing a run failed; the members will catch up') })
    }
  }

  private publishHead (l: NonNullable<JournalReplicator['leading']>): void {
    if (this.leading !== l || !l.ready) return
    const seq = this.c.journal.position()
    const msg: HeadMessage = { kind: 'head', cluster: this.init.clusterName, leader: this.init.nodeName, epoch: l.epoch, start: l.start, seq }
    this.c.transport.publish(JOURNAL_TOPIC, `h:${l.epoch}:${seq}:${this.headCounter++}`, msg)
      .catch((err: unknown) => { this.log.debug({ err }, 'publishing the head failed') })
  }

  // ---- requests (any member answers with its own log; members ask the leader) ----------------------------------

  private onRequest (from: string, p: Record<string, unknown>): unknown {
    if (p.cluster !== this.init.clusterName) throw new ReplicationConflictError(`a request of cluster ${String(p.cluster)}`)
    if (p.op === 'since') {
      const after = p.after
      const limit = p.limit
      if (!Number.isSafeInteger(after) || (after as number) < 0 || !Number.isSafeInteger(limit) || (limit as number) < 1) {
        throw new ReplicationConflictError('since: after and limit must be non-negative integers')
      }
      const max = Math.min(limit as number, PAGE_ENTRIES)
      const page = this.c.journal.changesSince(after as number, max)
      const entries = bySize(page)
      const head = this.c.journal.position()
      // A page that holds the rest of the log covers it up to the head: pruned entries there are simply absent.
      const through = entries.length === page.length && page.length < max ? Math.max(head, after as number) : entries.at(-1)!.seq
      const l = this.leading?.ready === true ? this.leading : undefined
      const reply: SinceReply = {
        epoch: l?.epoch ?? this.c.leadership.currentEpoch()?.number ?? 0, leading: l !== undefined, start: l?.start ?? 0,
        after: after as number, entries, through, head, horizon: this.c.journal.prunedThrough()
      }
      return reply
    }
    if (p.op === 'ack') {
      // Only positions in this leadership's history count (a member not yet aligned to it reports another one).
      if (typeof p.member === 'string' && Number.isSafeInteger(p.seq) && p.epoch === this.leading?.epoch) this.acks.set(p.member, p.seq as number)
      this.settleWaiters()
      return { ok: true }
    }
    throw new ReplicationConflictError(`unknown journal request ${String(p.op)} from ${from}`)
  }

  // ---- member --------------------------------------------------------------------------------------------------

  private onMessage (payload: unknown): void {
    if (!this.running || this.leading !== undefined) return
    if (!isHead(payload) && !isRun(payload)) return
    const m = payload
    if (m.cluster !== this.init.clusterName) return
    const known = this.knownEpoch()
    if (m.epoch < known) {
      this.refused++
      this.log.debug({ epoch: m.epoch, known, leader: m.leader }, 'refused journal entries of a deposed leader')
      return
    }
    this.leaderEpoch = m.epoch
    this.align(m.epoch, m.start)
    if (m.kind === 'head') {
      this.leaderHead = m.seq
      const position = this.c.journal.position()
      if (m.seq > position) this.catchUp()
      else if (m.seq < position) this.c.journal.alignTo({ seq: m.seq, epoch: m.epoch })
      this.ack()
      return
    }
    this.leaderHead = Math.max(this.leaderHead, m.entries.at(-1)?.seq ?? m.after)
    if (m.after > this.c.journal.position() || this.catchingUp !== undefined) {
      this.catchUp()
      return
    }
    this.apply({ after: m.after, epoch: m.epoch, entries: m.entries })
  }

  /**
   * The first time this member hears from the leader of `epoch`: entries here past `start` from older epochs are
   * not in its history (a deposed leader's tail) and go. Returns whether the position moved back.
   */
  private align (epoch: number, start: number): boolean {
    if (epoch <= this.alignedEpoch || !Number.isSafeInteger(start)) return false
    this.alignedEpoch = epoch
    const before = this.c.journal.position()
    const removed = this.c.journal.alignTo({ seq: start, epoch })
    if (removed > 0) this.log.info({ removed, epoch, start }, 'dropped entries of a deposed leader that the new leader does not have')
    return this.c.journal.position() < before
  }

  private apply (run: LeaderRun): boolean {
    try {
      this.c.journal.applyRun(run)
      this.ack()
      return true
    } catch (err) {
      if (err instanceof RangeError) {
        this.catchUp()
      } else {
        this.refused++
        this.log.warn({ err, epoch: run.epoch, after: run.after }, 'refused a run of the journal')
      }
      return false
    }
  }

  /** Asks the leader for what follows this member's position until it has reached the leader's head. */
  private catchUp (): void {
    if (this.catchingUp !== undefined) {
      this.catchUpAgain = true
      return
    }
    this.catchingUp = (async () => {
      do {
        this.catchUpAgain = false
        await this.catchUpOnce()
      } while (this.catchUpAgain && this.running && this.leading === undefined)
    })().catch((err: unknown) => {
      this.log.debug({ err }, 'catching up with the leader failed; the next head retries')
    }).finally(() => { this.catchingUp = undefined })
  }

  /**
   * Pages of the leader's log from this member's position to the leader's head; from the start instead (a resync)
   * when the leader pruned a prune entry past the position. A resync keeps its own cursor: applying a page that
   * changes nothing leaves the position above it.
   */
  private async catchUpOnce (): Promise<void> {
    let resync = false
    let cursor = this.c.journal.position()
    for (let page = 0; page < 100_000 && this.running && this.leading === undefined; page++) {
      const address = this.c.cluster.leaderAddress()
      if (address === undefined || this.c.leadership.isLeader()) return
      const r = await this.since(address, cursor)
      // Stopped, or elected, while the page was on its way: it is no longer this member's to apply.
      if (!this.running || this.leading !== undefined) return
      if (!r.leading) return // not (or no longer) the leader: the next head names the right one
      if (r.epoch < this.knownEpoch()) {
        this.refused++
        return
      }
      this.leaderEpoch = r.epoch
      this.leaderHead = r.head
      if (this.align(r.epoch, r.start) && !resync) { // the position moved back: ask again from there
        cursor = this.c.journal.position()
        continue
      }
      if (!resync && cursor > 0 && Number.isSafeInteger(r.horizon) && r.horizon > cursor) {
        resync = true
        cursor = 0
        this.log.info({ position: r.after, horizon: r.horizon }, 'the leader pruned entries this member never received: comparing the whole log with the leader\'s')
        continue
      }
      if (r.entries.length === 0) this.c.journal.alignTo({ seq: r.head, epoch: r.epoch })
      // A leader that does not say how far its page covers (an earlier release) covers up to its last entry.
      const through = Number.isSafeInteger(r.through) ? r.through : (r.entries.at(-1)?.seq ?? r.after)
      if (!this.apply({ after: r.after, epoch: r.epoch, entries: r.entries, through })) return
      cursor = Math.max(r.after, through)
      if (r.entries.length === 0 && through < r.head) return // nothing more to learn from it now
      if (cursor >= r.head) return
    }
  }

  /** What the member at `address` holds past `after` (a page). */
  private async since (address: string, after: number): Promise<SinceReply> {
    const { reply } = await this.c.transport.request(address,
      { service: SERVICE, cluster: this.init.clusterName, op: 'since', after, limit: PAGE_ENTRIES }, { timeoutMs: CATCH_UP_TIMEOUT_MS })
    return reply as SinceReply
  }

  /** The highest leader epoch this member knows: from the leaders it heard, or from the membership. */
  private knownEpoch (): number {
    return Math.max(this.leaderEpoch, this.c.leadership.currentEpoch()?.number ?? 0)
  }

  /** Tells the leader how far this member is, at most every ACK_INTERVAL_MS (`sync`: at once). */
  private ack (): void {
    if (this.ackTimer !== undefined) return
    const wait = this.sync ? 0 : Math.max(0, this.lastAck.at + ACK_INTERVAL_MS - Date.now())
    this.ackTimer = setTimeout(() => {
      this.ackTimer = undefined
      const seq = this.c.journal.position()
      const epoch = this.alignedEpoch
      // Told already, to the leader of the same epoch (a leader counts only positions in its own history).
      if ((seq === this.lastAck.seq && epoch === this.lastAck.epoch) || !this.running) return
      const address = this.c.cluster.leaderAddress()
      // No leader known yet: nothing is recorded as told, so the next head or run tells it.
      if (address === undefined || this.c.leadership.isLeader()) return
      this.lastAck = { at: Date.now(), seq, epoch }
      this.c.transport.request(address, { service: SERVICE, cluster: this.init.clusterName, op: 'ack', member: this.init.nodeName, seq, epoch }, { timeoutMs: CATCH_UP_TIMEOUT_MS })
        .catch(() => { this.lastAck.seq = -1 })
    }, wait)
    this.ackTimer.unref()
  }
}

/** The first entries of `entries` that fit PAGE_BYTES (at least one). */
function bySize (entries: LogEntry[]): LogEntry[] {
  let bytes = 0
  for (let i = 0; i < entries.length; i++) {
    bytes += JSON.stringify(entries[i]).length
    if (bytes > PAGE_BYTES && i > 0) return entries.slice(0, i)
  }
  return entries
}

function isMessage (x: unknown): x is { kind: unknown, cluster: unknown, leader: unknown, epoch: number } {
  return typeof x === 'object' && x !== null && Number.isSafeInteger((x as { epoch?: unknown }).epoch)
}

function isHead (x: unknown): x is HeadMessage {
  return isMessage(x) && x.kind === 'head' && Number.isSafeInteger((x as { seq?: unknown }).seq)
}

/** The entries themselves are checked by the journal (`applyRun`). */
function isRun (x: unknown): x is RunMessage {
  return isMessage(x) && x.kind === 'run' && Number.isSafeInteger((x as { after?: unknown }).after) &&
    Array.isArray((x as { entries?: unknown }).entries)
}
