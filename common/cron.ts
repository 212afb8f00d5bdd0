/**
 * Cron expressions (croner: 5 fields with minutes first, or 6 with seconds first; names of months and days; `L`,
 * `W`, `#`), checked once where the configuration is read, so a typo stops the start instead of a schedule that
 * never fires.
 */
import { Cron } from 'croner'

/** Why `expr` is not a usable cron expression, or undefined when it is. */
export function cronError (expr: string, timezone = 'UTC'): string | undefined {
  if (expr.trim().split(/\s+/).length > 6) return 'expected 5 fields (minute first) or 6 (second first)'
  try {
    const c = new Cron(expr, { paused: true, timezone })
    const next = c.nextRun()
    c.stop()
    if (next === null) return 'it never fires'
  } catch (err) {
    return (err as Error).message
  }
  return undefined
}
