/**
 * Checks over the logs of a `ClusterHarness` run of the real daemon: the views each member installed, in what order,
 * whether two groups ever believed themselves the cluster at once, and the leadership intervals every member logged
 * (`process.hrtime.bigint()` nanoseconds: one clock for every process of the machine, this one included).
 *
 * `track(h)` must be called before the members start: it notes when each process ended (its stdio closed), which
 * closes the view it held and bounds a leadership interval that a kill -9 left open. That bound is the moment this
 * process saw the end, so it is later than the real end: conservative for the overlap check.
 *
 * NOT checked here: anything about wall-clock times; lines are compared in the order this process received them.
 */
import assert from 'node:assert/strict'
import { appendFileSync } from 'node:fs'
import type { ClusterHarness, LogLine } from './cluster-harness.js'

export const VIEW_INSTALLED = 'view installed'
export const LEADER_ELECTED = 'leader elected: this member leads'
export const LEADER_DEMOTED = 'leader demoted: this member no longer leads'
const EXITED = 'harness: process ended'
const STARTING = 'cluster member starting'
/** The machine dropped its view (excluded while frozen, cut off): it holds none until it joins again. */
const DROPPED = 'leaving my view'

export interface InstalledView {
  coordinator: string
  counter: number
  members: string[]
}

export interface LeadershipInterval {
  member: string
  epoch: unknown
  startNs: bigint
  /** undefined while it lasts (the member still leads) */
  endNs: bigint | undefined
  /** how the interval ended: the member's demotion line, or the process ending (kill -9) */
  endedBy?: 'demoted' | 'process-end'
}

const tracked = new WeakSet<ClusterHarness>()

/**
 * Records process ends into the harness timeline (call before starting members). With `VECTIS_TEST_CLUSTER_LOG`
 * set to a file name, the whole timeline is appended there when the process exits (to study a failure).
 */
export function track (h: ClusterHarness, label = 'cluster'): void {
  if (tracked.has(h)) return
  tracked.add(h)
  const dump = process.env.VECTIS_TEST_CLUSTER_LOG
  if (dump !== undefined && dump !== '') {
    process.once('exit', () => {
      appendFileSync(dump, `=== ${label}\n` + h.timeline.map(({ member, line }) => `${member} ${JSON.stringify(line)}`).join('\n') + '\n')
    })
  }
  const start = h.start.bind(h)
  h.start = async (i: number) => {
    const m = await start(i)
    // 'close' comes after the last stdout line: the process end follows everything it logged.
    m.proc?.once('close', () => {
      const atNs = process.hrtime.bigint()
      h.timeline.push({ member: i, line: { msg: EXITED, endNs: atNs.toString() }, atNs })
    })
    return m
  }
}

export function viewOf (line: LogLine): InstalledView | undefined {
  if (line.msg !== VIEW_INSTALLED) return undefined
  const id = line.viewId as { coordinator?: unknown, counter?: unknown } | undefined
  if (id === undefined || typeof id.coordinator !== 'string' || typeof id.counter !== 'number' || !Array.isArray(line.members)) return undefined
  return { coordinator: id.coordinator, counter: id.counter, members: line.members as string[] }
}

/** The views member i installed, in order, across its restarts. */
export function viewsOf (h: ClusterHarness, i: number): InstalledView[] {
  return h.logs(i).map(viewOf).filter((v): v is InstalledView => v !== undefined)
}

/**
 * The views member i installed, one list per stretch in a cluster: a start of the process (a new incarnation) or a
 * dropped view (the member then joins again as the youngest) begins a new list.
 */
export function viewsByIncarnation (h: ClusterHarness, i: number): InstalledView[][] {
  const out: InstalledView[][] = []
  for (const line of h.logs(i)) {
    if (line.msg === STARTING || line.msg === DROPPED || out.length === 0) out.push([])
    const v = viewOf(line)
    if (v !== undefined) out.at(-1)!.push(v)
  }
  return out
}

export function lastView (h: ClusterHarness, i: number): InstalledView | undefined {
  return viewsOf(h, i).at(-1)
}

/**
 * A split: members a and b, each in a view of more than one member, where a's view excludes b and b's view
 * excludes a, and each view is a group: held by its coordinator (who leads it) and by at least one other member (two
 * groups that each believe they are the cluster). A view change in progress is not one: some members on the previous
 * view of the same lineage, a frozen member on a stale view (one view holds the other's member), a view its
 * coordinator installed before the others did, or a stale view whose coordinator has moved on (its members learn it
 * at the next view or suspicion). Returns a description of the first split from timeline index `from`, or undefined.
 */
export function findSplit (h: ClusterHarness, from = 0, to = Infinity): string | undefined {
  const held = new Map<number, InstalledView>()
  const names = h.members.map((m) => m.name)
  for (let k = 0; k < h.timeline.length; k++) {
    const e = h.timeline[k]!
    if (e.line.msg === EXITED || e.line.msg === STARTING || e.line.msg === DROPPED) { held.delete(e.member); continue }
    const v = viewOf(e.line)
    if (v === undefined) continue
    held.set(e.member, v)
    if (k < from) continue
    if (k >= to) break
    const same = (x: InstalledView | undefined, v: InstalledView): boolean => x !== undefined && x.coordinator === v.coordinator && x.counter === v.counter
    const group = (v: InstalledView): boolean => same(held.get(names.indexOf(v.coordinator)), v) && [...held.values()].filter((x) => same(x, v)).length >= 2
    for (const [a, va] of held) {
      for (const [b, vb] of held) {
        if (a >= b || va.members.length < 2 || vb.members.length < 2 || !group(va) || !group(vb)) continue
        if (!vb.members.includes(names[a]!) && !va.members.includes(names[b]!)) {
          return `at timeline line ${k}: ${names[a]} holds ${JSON.stringify(va)} while ${names[b]} holds ${JSON.stringify(vb)}`
        }
      }
    }
  }
  return undefined
}

/**
 * Age order across the views one incarnation of a member installed: members present in two consecutive views keep their relative
 * order, and members new in a view come after every member carried over (a joiner is the youngest).
 */
export function ageOrderViolation (views: InstalledView[]): string | undefined {
  for (let k = 1; k < views.length; k++) {
    const prev = views[k - 1]!.members
    const cur = views[k]!.members
    // From a view of one (a fresh start, or alone after a partition) a member joins an existing view: it is the
    // youngest there, after the members of that view, whatever its own order said.
    if (prev.length === 1) continue
    // A merge into another view (its coordinator new to this member) puts that view's members first, then the
    // absorbed ones in an order that view decides: only the same coordinator lineage is checked.
    if (!prev.includes(cur[0]!)) continue
    const kept = cur.filter((n) => prev.includes(n))
    const keptPrevOrder = prev.filter((n) => cur.includes(n))
    if (kept.join() !== keptPrevOrder.join()) return `order changed from ${JSON.stringify(prev)} to ${JSON.stringify(cur)}`
    // Joiners come last.
    const firstNew = cur.findIndex((n) => !prev.includes(n))
    if (firstNew >= 0 && cur.slice(firstNew).some((n) => prev.includes(n))) return `a joiner is not last: ${JSON.stringify(prev)} -> ${JSON.stringify(cur)}`
  }
  return undefined
}

/** Every leadership interval of every member over the whole run (across restarts). */
export function leadershipIntervals (h: ClusterHarness): LeadershipInterval[] {
  const out: LeadershipInterval[] = []
  const open = new Map<number, LeadershipInterval>()
  for (const { member, line } of h.timeline) {
    if (line.msg === LEADER_ELECTED) {
      const prev = open.get(member)
      if (prev !== undefined) throw new Error(`${h.member(member).name} logged a second election without a demotion`)
      const iv: LeadershipInterval = { member: h.member(member).name, epoch: line.epoch, startNs: BigInt(String(line.leadershipStartNs)), endNs: undefined }
      open.set(member, iv)
      out.push(iv)
    } else if (line.msg === LEADER_DEMOTED) {
      const iv = open.get(member)
      if (iv === undefined) continue
      const li = line.leadershipInterval as { startNs: string, endNs: string }
      if (BigInt(li.startNs) !== iv.startNs) throw new Error(`${iv.member}: demotion of an interval that did not start at ${iv.startNs}`)
      iv.endNs = BigInt(li.endNs)
      iv.endedBy = 'demoted'
      open.delete(member)
    } else if (line.msg === EXITED) {
      const iv = open.get(member)
      if (iv === undefined) continue
      iv.endNs = BigInt(String(line.endNs))
      iv.endedBy = 'process-end'
      open.delete(member)
    }
  }
  return out
}

/** Pairs of intervals of different members that overlap (an open interval lasts forever). */
export function overlaps (intervals: LeadershipInterval[]): string[] {
  const bad: string[] = []
  const fmt = (x: LeadershipInterval): string => `${x.member} [${x.startNs}, ${x.endNs ?? '…'}) epoch ${JSON.stringify(x.epoch)}`
  for (let a = 0; a < intervals.length; a++) {
    for (let b = a + 1; b < intervals.length; b++) {
      const x = intervals[a]!
      const y = intervals[b]!
      if (x.member === y.member) continue
      const xEndsFirst = x.endNs !== undefined && x.endNs <= y.startNs
      const yEndsFirst = y.endNs !== undefined && y.endNs <= x.startNs
      if (!xEndsFirst && !yEndsFirst) bad.push(`${fmt(x)} overlaps ${fmt(y)}`)
    }
  }
  return bad
}

/** Members (indexes) that are running and hold, in their status, a view with exactly `names` in this order. */
export async function allSee (h: ClusterHarness, which: number[], names: string[]): Promise<boolean> {
  for (const i of which) {
    const s = await h.status(i)
    const members = (s.members as Array<{ name: string }>).map((m) => m.name)
    if (members.join() !== names.join()) return false
  }
  return true
}

/** Names in member i's current view (status API). */
export async function viewNames (h: ClusterHarness, i: number): Promise<string[]> {
  return ((await h.status(i)).members as Array<{ name: string }>).map((m) => m.name)
}

/** Waits until every listed member's status shows one same view holding exactly the set `names`; returns its order. */
export async function waitOneView (h: ClusterHarness, which: number[], names: string[], timeoutMs = 30_000): Promise<string[]> {
  const want = [...names].sort().join()
  let seen: string[] = []
  await h.waitFor(async () => {
    const views = await Promise.all(which.map(async (i) => await viewNames(h, i)))
    seen = views[0] ?? []
    return views.every((v) => [...v].sort().join() === want && v.join() === seen.join())
  }, { timeoutMs, what: `one view of ${names.join(',')} on members ${which.join(',')}` })
  return seen
}

/**
 * Waits until every member of `which` last logged `names` as its view and as the primary (committed) one: the
 * leader's commit round is over. A leader killed inside that round leaves the previous primary view in force (a
 * limitation in the README), so tests that kill the leader of a view that just grew wait for this first.
 */
export async function waitCommittedView (h: ClusterHarness, which: number[], names: string[], timeoutMs = 30_000): Promise<void> {
  const want = [...names].sort().join()
  await h.waitFor(() => which.every((i) => {
    const last = h.logs(i).findLast((l) => viewOf(l) !== undefined)
    const v = last === undefined ? undefined : viewOf(last)
    return last?.primary === true && v !== undefined && [...v.members].sort().join() === want
  }), { timeoutMs, what: `the committed view of ${names.join(',')} on members ${which.join(',')}` })
}

/** The member indexes whose status says isLeader, among `which` (unreachable members count as not leading). */
export async function leadersAmong (h: ClusterHarness, which: number[]): Promise<number[]> {
  const out: number[] = []
  for (const i of which) {
    const s = await h.status(i).catch(() => undefined)
    if (s?.isLeader === true) out.push(i)
  }
  return out
}

/** Waits until exactly one of `which` leads, the others name it as their leader and all are in its primary view; returns its index. */
export async function waitOneLeader (h: ClusterHarness, which: number[], timeoutMs = 30_000): Promise<number> {
  let leader = -1
  await h.waitFor(async () => {
    const st = await Promise.all(which.map(async (i) => await h.status(i)))
    const leading = which.filter((_, k) => st[k]!.isLeader === true)
    if (leading.length !== 1) return false
    leader = leading[0]!
    const name = h.member(leader).name
    // Every member also in the primary view: the leader's commit round is over (see waitCommittedView).
    return st.every((s) => s.leader === name && (s.quorum as { ok?: boolean } | undefined)?.ok === true)
  }, { timeoutMs, what: `one leader among ${which.join(',')}, all in its primary view` })
  return leader
}

/**
 * The timeline line at which every member's logged view first held all `names` (the end of the cold start), read
 * from the logs themselves: log lines may arrive after the status API already showed one view.
 */
export function coldStartEnd (h: ClusterHarness, names: string[]): number {
  const held = new Map<number, InstalledView>()
  for (let k = 0; k < h.timeline.length; k++) {
    const e = h.timeline[k]!
    const v = viewOf(e.line)
    if (v === undefined) continue
    held.set(e.member, v)
    const full = (x: InstalledView | undefined): boolean => x !== undefined && names.every((n) => x.members.includes(n))
    if (h.members.every((m) => !names.includes(m.name) || full(held.get(m.index)))) return k + 1
  }
  return h.timeline.length
}

/** No moment, during the cold start or after it, where two multi-member views coexisted (from the members' logs). */
export function checkNoSplit (h: ClusterHarness, coldStartEnd: number): void {
  const during = findSplit(h, 0, coldStartEnd)
  assert.equal(during, undefined, `two groups believed themselves the cluster during the cold start: ${during}`)
  const after = findSplit(h, coldStartEnd)
  assert.equal(after, undefined, `two groups believed themselves the cluster after the cold start: ${after}`)
}
