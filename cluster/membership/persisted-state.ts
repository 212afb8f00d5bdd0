/**
 * The membership state a member persists (`PersistedClusterState`), validated when read back: the store keeps it as
 * JSON it does not interpret, and a member must not start on a state it misreads (an epoch or a configuration taken
 * wrongly could let it vote twice or lead without a quorum).
 */
import { checkConfig, checkEpoch, checkMember, isObject, InvalidMessageError } from '../messages.js'
import type { PersistedClusterState } from './types.js'

/** Thrown for a persisted state this version cannot read; names the field. */
export class InvalidPersistedStateError extends Error {
  override name = 'InvalidPersistedStateError'
}

function checkCount (x: unknown, where: string): void {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) throw new InvalidMessageError(`${where}: expected an integer >= 0`)
}

/** `x` as a PersistedClusterState (undefined stays undefined: nothing persisted yet). */
export function decodePersistedState (x: unknown): PersistedClusterState | undefined {
  if (x === undefined) return undefined
  try {
    if (!isObject(x)) throw new InvalidMessageError('expected a JSON object')
    checkEpoch(x.highestEpoch, 'highestEpoch')
    checkCount(x.maxCounter, 'maxCounter')
    checkCount(x.maxApplied, 'maxApplied')
    if (x.committed !== undefined) checkConfig(x.committed, 'committed')
    if (x.pending !== undefined) checkConfig(x.pending, 'pending')
    if (x.member !== undefined) checkMember(x.member, 'member')
    return x as unknown as PersistedClusterState
  } catch (err) {
    throw new InvalidPersistedStateError(`the persisted membership state cannot be read: ${(err as Error).message}`, { cause: err })
  }
}
