/**
 * Packs articles into DTF entities (docs/pesit.md §11, "Packing"), for whichever side sends the data: the requester
 * of a push and the server of a pull. As many whole articles as fit go in one multi-article DTF, a lone article
 * as a mono-article DTF, an article longer than the entity is cut into DTFDA/DTFMA/DTFFA. Entities are collected
 * into socket writes of up to `batchBytes`: large batches for throughput, one entity per write where a stop must
 * take effect within one entity. A batch goes back to a small pool once the socket has handed it to the kernel, so a
 * transfer of any size reuses a few buffers instead of allocating one per write (fresh memory costs page faults).
 */
import { HEADER_SIZE, MAX_ARTICLES_PER_DTF, encodeEntity, encodeFpdu, writeHeader } from './codec.js'
import type { FpduChannel } from './fpdu-channel.js'

export const DEFAULT_BATCH_BYTES = 256 * 1024
/** batches kept for reuse; more may be in the socket's queue at once, those are left to the garbage collector */
const POOL_SIZE = 2

export class DtfPacker {
  private batch: Buffer
  private readonly pool: Buffer[] = []
  private used = 0
  /** start of the open DTF entity in `batch` (its 2-byte prefix), -1 when none */
  private open = -1
  private count = 0
  flushedSinceCheck = false

  private readonly batchBytes: number

  /** `y`: the peer's connection id (ID.DST of every FPDU). */
  constructor (private readonly ch: FpduChannel, private readonly entity: number, private readonly y: number, batchBytes = DEFAULT_BATCH_BYTES) {
    // A batch holds at least one whole entity and its prefix.
    this.batchBytes = Math.max(batchBytes, entity + 2)
    this.batch = Buffer.allocUnsafe(this.batchBytes)
  }

  private async ensure (n: number): Promise<void> {
    if (this.batchBytes - this.used >= n) return
    this.closeDtf()
    await this.flush()
  }

  async article (a: Uint8Array): Promise<void> {
    if (HEADER_SIZE + a.length > this.entity) return await this.segmented(a)
    // Fits an entity only without the 2-byte prefix of the multi-article form.
    if (HEADER_SIZE + 2 + a.length > this.entity) return await this.mono(a)
    if (this.open >= 0) {
      const entityLen = this.used - this.open - 2
      if (entityLen + 2 + a.length > this.entity || this.count === MAX_ARTICLES_PER_DTF) this.closeDtf()
    }
    if (this.open < 0) {
      await this.ensure(2 + this.entity)
      this.open = this.used
      this.used += 2 + HEADER_SIZE
      this.count = 0
    }
    this.batch[this.used] = a.length >> 8
    this.batch[this.used + 1] = a.length & 0xff
    this.batch.set(a, this.used + 2)
    this.used += 2 + a.length
    this.count++
  }

  private closeDtf (): void {
    if (this.open < 0) return
    const start = this.open
    this.open = -1
    if (this.count === 1) {
      // One article: mono-article form (ID.SRC 0, no prefix), the most widely understood.
      this.batch.copyWithin(start + 2 + HEADER_SIZE, start + 2 + HEADER_SIZE + 2, this.used)
      this.used -= 2
    }
    const fpduLen = this.used - start - 2
    this.batch[start] = fpduLen >> 8
    this.batch[start + 1] = fpduLen & 0xff
    writeHeader(this.batch, start + 2, fpduLen, 'DTF', this.y, this.count === 1 ? 0 : this.count)
  }

  private async mono (a: Uint8Array): Promise<void> {
    this.closeDtf()
    const len = HEADER_SIZE + a.length
    await this.ensure(2 + len)
    this.batch[this.used] = len >> 8
    this.batch[this.used + 1] = len & 0xff
    writeHeader(this.batch, this.used + 2, len, 'DTF', this.y, 0)
    this.batch.set(a, this.used + 2 + HEADER_SIZE)
    this.used += 2 + len
  }

  /** An article longer than an entity's room: DTFDA, DTFMA…, DTFFA (at least two pieces). */
  private async segmented (a: Uint8Array): Promise<void> {
    this.closeDtf()
    const room = this.entity - HEADER_SIZE
    for (let off = 0; off < a.length; off += room) {
      const piece = a.subarray(off, Math.min(a.length, off + room))
      const type = off === 0 ? 'DTFDA' : off + room >= a.length ? 'DTFFA' : 'DTFMA'
      await this.ensure(2 + HEADER_SIZE + piece.length)
      const len = HEADER_SIZE + piece.length
      this.batch[this.used] = len >> 8
      this.batch[this.used + 1] = len & 0xff
      writeHeader(this.batch, this.used + 2, len, type, this.y, 0)
      this.batch.set(piece, this.used + 2 + HEADER_SIZE)
      this.used += 2 + len
    }
  }

  async syn (n: number): Promise<void> {
    this.closeDtf()
    const syn = encodeEntity([encodeFpdu({ type: 'SYN', idDst: this.y, idSrc: 0, params: { 20: n } })])
    await this.ensure(syn.length)
    this.batch.set(syn, this.used)
    this.used += syn.length
    await this.flush()
  }

  async flush (): Promise<void> {
    this.closeDtf()
    if (this.used === 0) return
    const full = this.batch
    this.batch = this.pool.pop() ?? Buffer.allocUnsafe(this.batchBytes)
    const out = full.subarray(0, this.used)
    this.used = 0
    this.flushedSinceCheck = true
    await this.ch.write(out, () => { if (this.pool.length < POOL_SIZE) this.pool.push(full) })
  }
}
