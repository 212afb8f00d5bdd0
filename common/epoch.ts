/**
 * A leadership's epoch, `(number, leader)`: the number is the highest ever seen + 1 at each election, persisted
 * before use and never reused (docs/design.md §3.7). The store remembers it, the cluster elects with it, the label
 * controller writes it on the leader's pod, the journal stamps transfers with it.
 */
export interface Epoch {
  number: number
  leader: string
}

export const ZERO_EPOCH: Epoch = Object.freeze({ number: 0, leader: '' })

/** Total order on epochs: number first, then the leader's name. */
export function compareEpochs (a: Epoch, b: Epoch): number {
  if (a.number !== b.number) return a.number - b.number
  return a.leader < b.leader ? -1 : a.leader > b.leader ? 1 : 0
}

export function sameEpoch (a: Epoch | undefined, b: Epoch | undefined): boolean {
  return a !== undefined && b !== undefined && compareEpochs(a, b) === 0
}
