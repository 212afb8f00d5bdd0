/** A binary min-heap of timed events; ties keep insertion order (a sequence number), so runs are deterministic. */
export interface Timed { at: number, seq: number }

/** `Omit` that distributes over a union of event shapes. */
export type WithoutSeq<E> = E extends unknown ? Omit<E, 'seq'> : never

export class EventQueue<E extends Timed> {
  private readonly heap: E[] = []
  private seq = 0

  get size (): number { return this.heap.length }

  push (e: WithoutSeq<E>): void {
    const item = { ...e, seq: this.seq++ } as E
    this.heap.push(item)
    let i = this.heap.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!less(this.heap[i]!, this.heap[p]!)) break
      swap(this.heap, i, p)
      i = p
    }
  }

  peek (): E | undefined { return this.heap[0] }

  pop (): E | undefined {
    const top = this.heap[0]
    if (top === undefined) return undefined
    const last = this.heap.pop()!
    if (this.heap.length > 0) {
      this.heap[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < this.heap.length && less(this.heap[l]!, this.heap[m]!)) m = l
        if (r < this.heap.length && less(this.heap[r]!, this.heap[m]!)) m = r
        if (m === i) break
        swap(this.heap, i, m)
        i = m
      }
    }
    return top
  }
}

function less (a: Timed, b: Timed): boolean { return a.at < b.at || (a.at === b.at && a.seq < b.seq) }
function swap<T> (xs: T[], i: number, j: number): void { const t = xs[i]!; xs[i] = xs[j]!; xs[j] = t }
