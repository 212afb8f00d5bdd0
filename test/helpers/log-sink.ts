import { createLogger, type Logger } from '../../common/logger.js'
import { waitFor } from './wait-for.js'

export type LogLine = Record<string, unknown> & { level?: string, msg?: string, component?: string }

/** A logger whose JSON lines are kept (parsed) so a test can assert on fields or wait for one. */
export class LogSink {
  readonly lines: LogLine[] = []
  readonly logger: Logger
  constructor (level: 'trace' | 'debug' | 'info' | 'warn' = 'debug', base: Record<string, unknown> = {}) {
    this.logger = createLogger({
      level,
      base,
      destination: {
        write: (s: string) => {
          for (const l of s.split('\n')) if (l.trim() !== '') this.lines.push(JSON.parse(l) as LogLine)
        }
      }
    })
  }

  find (pred: (l: LogLine) => boolean): LogLine | undefined { return this.lines.find(pred) }

  async waitFor (pred: (l: LogLine) => boolean, timeoutMs = 5000, what = 'a log line'): Promise<LogLine> {
    return waitFor(() => this.find(pred), { timeoutMs, what })
  }
}
