import { pino, type Logger, type DestinationStream, type Level } from 'pino'

export type { Logger }

export interface LoggerInit {
  level?: Level | 'silent'
  /** Where JSON lines go; stdout by default. Tests pass a sink to assert on fields. */
  destination?: DestinationStream
  /** Fields on every line (e.g. the member's name). */
  base?: Record<string, unknown>
}

/**
 * The root logger: pino JSON lines, ISO timestamps, never any credential. Components take
 * `logger.child({ component: 'cluster:membership' })`.
 */
export function createLogger (init: LoggerInit = {}): Logger {
  return pino({
    level: init.level ?? 'info',
    base: { pid: process.pid, ...init.base },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // Belt and braces: a password that slips into a logged object is censored.
    redact: {
      paths: ['password', '*.password', 'authorization', '*.authorization', 'headers.authorization', 'secret', '*.secret'],
      censor: '[redacted]'
    }
  }, init.destination ?? pino.destination({ dest: 1, sync: true }))
}

/** A logger that writes nowhere, for tests that do not look at logs. */
export function silentLogger (): Logger {
  return pino({ level: 'silent' })
}
