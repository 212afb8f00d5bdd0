/**
 * Pure helpers about views: member order, view identity, and the rank that decides which view absorbs another
 * when they meet (merge). See docs/cluster-protocol.md.
 */
import { memberKey, type MemberInfo, type ViewId, type ViewSummary } from '../messages.js'

/** Deterministic order of members that are equally old (cold start): name, then peer id, then incarnation. */
export function byNameThenPeer (a: MemberInfo, b: MemberInfo): number {
  if (a.name !== b.name) return a.name < b.name ? -1 : 1
  if (a.peerId !== b.peerId) return a.peerId < b.peerId ? -1 : 1
  return a.incarnation < b.incarnation ? -1 : a.incarnation > b.incarnation ? 1 : 0
}

export function sameViewId (a: ViewId | undefined, b: ViewId | undefined): boolean {
  return a !== undefined && b !== undefined && a.counter === b.counter && a.coordinator === b.coordinator
}

/**
 * View rank for merging: a view whose coordinator holds a lease first, then the newest committed primary view,
 * then size, then the lowest coordinator. The higher-ranked view absorbs the other, so healing a partition never
 * moves the leader.
 */
export function rankCompare (a: ViewSummary, b: ViewSummary): number {
  if (a.leading !== b.leading) return a.leading ? 1 : -1
  if (a.committedCounter !== b.committedCounter) return a.committedCounter - b.committedCounter
  const sa = a.view?.members.length ?? 0
  const sb = b.view?.members.length ?? 0
  if (sa !== sb) return sa - sb
  const ca = a.view?.members[0]
  const cb = b.view?.members[0]
  if (ca === undefined || cb === undefined) return 0
  return -byNameThenPeer(ca, cb)
}

/** Only a coordinator speaks for its view (what other members report about it may be stale). */
export function speaksForItsView (peer: MemberInfo | undefined, summary: ViewSummary | undefined): boolean {
  const c = summary?.view?.members[0]
  return c !== undefined && peer !== undefined && memberKey(c) === memberKey(peer)
}
