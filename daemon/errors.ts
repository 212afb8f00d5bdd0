/** Errors of the daemon's own area (start-up). Other areas have their own `errors.ts`; bad configuration is common/config-error.ts. */

/** A start-up step failed for a reason that is not configuration (port in use, disk full). Exit code 1. */
export class StartupError extends Error {
  override name = 'StartupError'
}
