/**
 * The receiving side's write buffer, shared by the server of a push (receive-store.ts) and `vectis receive`
 * (pull.ts): article bytes are copied into a buffer; a full buffer is hashed and written while the other buffer
 * fills, one write in flight at a time (waiting for the previous one is the back-pressure). Two buffers, reused.
 */
import type { Hash } from 'node:crypto'

/** Writes all of `data` at `position`. */
export type WriteAt = (data: Uint8Array, position: number) => Promise<void>

export class WriteBehind {
  private buf: Buffer
  private spare: Buffer
  private used = 0
  /** file position where the buffer starts */
  private position: number
  private writing: Promise<void> = Promise.resolve()
  private failure: Error | undefined

  /** `hash` is updated with every byte, in order, as it is handed to the file. */
  constructor (private readonly writeAt: WriteAt, start: number, private readonly hash: Hash, bufferBytes: number, private readonly describeFailure: (err: unknown) => Error) {
    this.position = start
    this.buf = Buffer.allocUnsafe(bufferBytes)
    this.spare = Buffer.allocUnsafe(bufferBytes)
  }

  /** Copies `data` in, handing full buffers to the file. */
  async append (data: Uint8Array): Promise<void> {
    for (let off = 0; off < data.length;) {
      const n = Math.min(data.length - off, this.buf.length - this.used)
      this.buf.set(data.subarray(off, off + n), this.used)
      this.used += n
      off += n
      if (this.used === this.buf.length) await this.flush()
    }
  }

  /** Hands the buffered bytes to the file (written behind; `written()` waits for them). */
  async flush (): Promise<void> {
    if (this.used === 0) return
    const data = this.buf.subarray(0, this.used)
    const at = this.position
    this.hash.update(data)
    this.position += this.used
    // Once the previous write is done its buffer takes the next bytes while this one is written.
    await this.written()
    const filled = this.buf
    this.buf = this.spare
    this.spare = filled
    this.used = 0
    this.writing = this.writeAt(data, at).catch((err: unknown) => { this.failure ??= this.describeFailure(err) })
  }

  /**
   * Waits until every byte handed to the file so far is written (not yet durable); rethrows the first failed
   * write. Writes are issued in order, one at a time: once the last one is done, all are.
   */
  async written (): Promise<void> {
    await this.writing
    if (this.failure !== undefined) throw this.failure
  }

  /** Waits for the write in flight, whatever its outcome (before closing the file). */
  async settled (): Promise<void> {
    await this.writing
  }
}
