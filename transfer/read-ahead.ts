/**
 * Reads a file front to back in chunks of whole articles, reading the next chunk while the caller sends the
 * current one, so the disk (or the page cache, through the thread pool) and the network work at the same time.
 * A chunk stays valid until the next call of `next()`, which starts reading into its buffer again: the two buffers
 * alternate.
 */
export type ReadAt = (buf: Buffer, position: number) => Promise<number>

export class ReadAhead {
  private readonly bufs: [Buffer, Buffer]
  private turn = 0
  private pending: Promise<Buffer | undefined>
  /** where the chunk being read ahead ends */
  private position: number

  /** Chunks hold a whole number of `articleLength`-byte articles (the last one of the file may be shorter). */
  constructor (private readonly readAt: ReadAt, private readonly size: number, articleLength: number, start: number, onShort: () => Error, chunkBytes = 1 << 20) {
    const chunk = Math.max(articleLength, Math.floor(chunkBytes / articleLength) * articleLength)
    this.bufs = [Buffer.allocUnsafe(chunk), Buffer.allocUnsafe(chunk)]
    this.onShort = onShort
    this.position = start
    this.pending = this.fill()
  }

  private readonly onShort: () => Error

  private async fill (): Promise<Buffer | undefined> {
    const position = this.position
    if (position >= this.size) return undefined
    const buf = this.bufs[this.turn]!
    this.turn ^= 1
    const want = Math.min(this.size - position, buf.length)
    this.position += want
    for (let got = 0; got < want;) {
      const n = await this.readAt(buf.subarray(got, want), position + got)
      if (n <= 0) throw this.onShort()
      got += n
    }
    return buf.subarray(0, want)
  }

  /** The next chunk, undefined at the end of the file. */
  async next (): Promise<Buffer | undefined> {
    const chunk = await this.pending
    if (chunk !== undefined) {
      this.pending = this.fill()
      // A failed read ahead is rethrown by the next call, not left unhandled meanwhile.
      this.pending.catch(() => {})
    }
    return chunk
  }
}
