/**
 * What each address last told this member: the process answering there (name, peer id, incarnation) and its view
 * summary, from the hellos, joins and replies it sent. Discovery (DNS, seeds) gives the addresses to greet. The
 * cold start, the merge of views and the indirect probes read it; nothing here decides anything.
 */
import { memberKey, type MemberInfo, type ViewSummary } from '../messages.js'

export interface PeerState {
  member?: MemberInfo
  summary?: ViewSummary
  lastHeard: number
  lastHello: number
}

export class PeerDirectory {
  private addresses: string[] = []
  private readonly byAddress = new Map<string, PeerState>()

  /** Addresses found by discovery, without this member's own; replaces the previous list. */
  setDiscovered (addresses: string[], own: string): void {
    this.addresses = [...new Set(addresses)].filter(a => a !== own)
  }

  get discovered (): readonly string[] { return this.addresses }

  get (address: string): PeerState | undefined { return this.byAddress.get(address) }

  values (): IterableIterator<PeerState> { return this.byAddress.values() }

  /** A request or reply came from `from`. */
  heardFrom (from: MemberInfo, now: number): void {
    const p = this.byAddress.get(from.address) ?? { lastHeard: now, lastHello: -Infinity }
    p.member = from
    p.lastHeard = now
    this.byAddress.set(from.address, p)
  }

  /** `from` told its view summary. A light one (heartbeat acknowledgement) keeps the view it reported last. */
  learned (from: MemberInfo, s: ViewSummary, now: number): void {
    const p = this.byAddress.get(from.address) ?? { lastHeard: now, lastHello: -Infinity }
    const prev = p.member !== undefined && memberKey(p.member) === memberKey(from) ? p.summary : undefined
    p.summary = s.light === true && prev !== undefined ? { ...prev, ...s } : s
    p.member = from
    p.lastHeard = now
    this.byAddress.set(from.address, p)
  }

  /**
   * Whether to greet `address` now (at most every `every` ms), noting the hello when so. A view-less member skips a
   * peer that spoke to it lately (its hello carried its summary): on a machine starting many members at once this
   * halves the discovery traffic.
   */
  helloDue (address: string, now: number, every: number, viewless: boolean): boolean {
    const p = this.byAddress.get(address) ?? { lastHeard: -Infinity, lastHello: -Infinity }
    if (now - p.lastHello < every) return false
    if (viewless && now - p.lastHeard < every) return false
    p.lastHello = now
    this.byAddress.set(address, p)
    return true
  }

  /** `address` was heard from within `windowMs`: the process answering there, else undefined. */
  heardWithin (address: string, now: number, windowMs: number): MemberInfo | undefined {
    const p = this.byAddress.get(address)
    return p?.member !== undefined && now - p.lastHeard < windowMs ? p.member : undefined
  }
}
