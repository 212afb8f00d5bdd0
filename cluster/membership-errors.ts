/**
 * Errors of the membership/leadership part. (The transport's errors live in `errors.ts`; these are kept apart so the
 * two parts could be built in parallel: fold them together when convenient.)
 */

/** A membership option is missing or inconsistent; the message names the fields. */
export class MembershipConfigError extends Error {
  override name = 'MembershipConfigError'
  constructor (message = 'invalid membership configuration', options?: ErrorOptions) { super(message, options) }
}
