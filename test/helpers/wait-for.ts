import { waitFor as poll } from './wait.js'

/** `waitFor` of `wait.ts` with this module's callers' 5 s default deadline. */
export async function waitFor<T> (
  predicate: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  opts: { timeoutMs?: number, intervalMs?: number, what?: string } = {}
): Promise<T> {
  return await poll(predicate, { timeoutMs: 5000, ...opts })
}
