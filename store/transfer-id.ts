/**
 * Transfer ids: the server-assigned PeSIT PI 13 (3 bytes, 1..16,777,215; 0 means "new transfer" in SELECT, so it
 * is never assigned), and the journal key of every transfer.
 *
 * Scheme. Each transfer gets a serial from a per-epoch counter (persisted, starting at 0 for every epoch). Its
 * journal key is `<epoch>-<serial>`: unique forever, because only the leader of an epoch creates transfers and an
 * epoch number is never reused. The PI 13 value is derived from both:
 *
 *     PI 13 = (epoch mod 256) << 16  |  (serial mod 65536)        (8 bits of epoch, 16 bits of counter)
 *
 * so a new leader, whose epoch is higher, hands out ids from a range its predecessors did not use in their last
 * 255 epochs, even if the journal entries of the old leader's last transfers never reached it (replication is
 * asynchronous). The split trades how many leader changes pass before a range comes back (256; elections are
 * rare) against how many transfers one leadership can start before its counter wraps (65,536).
 *
 * Wrap-around: when the counter passes 65,535 it continues at 0 within the same range (the epoch is the leadership
 * protocol's, never raised for this). Every candidate is skipped if it is 0 or if a transfer with that PI 13 is
 * still in progress or interrupted in the local journal, since those are the ids a partner may present again to
 * restart (docs/pesit.md §9.3, docs/design.md §5.5), and if its key is already a row's: a journal restored from
 * a backup onto a new cluster (whose epochs start again from 1) holds the keys of the old one. So an id is reused only after at least 65,535 other transfers
 * of the same leadership, or 256 elections, and never while it can be restarted here. If every id of the range is
 * held by a restartable transfer, allocation fails with TransferIdsExhaustedError rather than loop or collide.
 *
 * NOT guaranteed: uniqueness between two leaders of the same epoch number, which only `VECTIS_QUORUM=none` (split
 * brain) allows; and restart matching of transfers 256 elections old whose rows this member never received.
 * PI 13 values chosen by requesters in CREATE are stored as they come and follow no scheme.
 */
import type { Database, Statement } from 'better-sqlite3'
import { TransferIdsExhaustedError } from './errors.js'

export const EPOCH_BITS = 8
export const COUNTER_BITS = 16
export const MAX_TRANSFER_ID = 0xFFFFFF
const COUNTER_SPAN = 2 ** COUNTER_BITS
const EPOCH_SPAN = 2 ** EPOCH_BITS

/** The PI 13 value of `(epoch, serial)` before skipping (may be 0 or in use: see `TransferIds.allocate`). */
export function transferIdFor (epoch: number, serial: number): number {
  checkNonNegativeInteger('epoch', epoch)
  checkNonNegativeInteger('serial', serial)
  return (epoch % EPOCH_SPAN) * COUNTER_SPAN + (serial % COUNTER_SPAN)
}

/** The epoch range of a PI 13 value (its high 8 bits), for logs and diagnostics. */
export function epochSlotOf (transferId: number): number {
  return Math.floor(transferId / COUNTER_SPAN)
}

export function transferKey (epoch: number, serial: number): string {
  return `${epoch}-${serial}`
}

export interface AllocatedTransferId {
  epoch: number
  serial: number
  /** Journal key `<epoch>-<serial>`. */
  key: string
  /** PeSIT PI 13, 1..16,777,215. */
  transferId: number
}

export class TransferIds {
  private readonly readCounter: Statement<[number], { next_serial: number }>
  private readonly writeCounter: Statement<[number, number]>
  private readonly dropOlder: Statement<[number]>
  private readonly inUse: Statement<[number], { one: number }>
  private readonly keyTaken: Statement<[string], { one: number }>

  constructor (private readonly db: Database) {
    this.readCounter = db.prepare('SELECT next_serial FROM transfer_id_counters WHERE epoch = ?')
    this.writeCounter = db.prepare(
      'INSERT INTO transfer_id_counters (epoch, next_serial) VALUES (?, ?) ' +
      'ON CONFLICT (epoch) DO UPDATE SET next_serial = excluded.next_serial')
    this.dropOlder = db.prepare('DELETE FROM transfer_id_counters WHERE epoch < ?')
    this.inUse = db.prepare(
      "SELECT 1 AS one FROM transfers WHERE transfer_id = ? AND status IN ('queued', 'in-progress', 'interrupted') LIMIT 1")
    this.keyTaken = db.prepare('SELECT 1 AS one FROM transfers WHERE id = ?')
  }

  /**
   * Takes the next serial and PI 13 of `epoch`, committed before it returns (or inside the caller's transaction,
   * e.g. the journal's insert of the transfer row, so that a crash never leaves an id handed out but not counted).
   */
  allocate (epoch: number): AllocatedTransferId {
    checkNonNegativeInteger('epoch', epoch)
    return this.db.transaction(() => {
      const row = this.readCounter.get(epoch)
      if (row === undefined) this.dropOlder.run(epoch) // a new leadership: older counters are never used again
      let serial = row?.next_serial ?? 0
      for (let tries = 0; tries < COUNTER_SPAN; tries++, serial++) {
        const id = transferIdFor(epoch, serial)
        if (id === 0 || this.inUse.get(id) !== undefined || this.keyTaken.get(transferKey(epoch, serial)) !== undefined) continue
        this.writeCounter.run(epoch, serial + 1)
        return { epoch, serial, key: transferKey(epoch, serial), transferId: id }
      }
      throw new TransferIdsExhaustedError(epoch)
    }).immediate()
  }

  /** The serial the next allocation of `epoch` starts from (0 if none yet). */
  nextSerial (epoch: number): number {
    return this.readCounter.get(epoch)?.next_serial ?? 0
  }
}

function checkNonNegativeInteger (name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer, got ${v}`)
}
