import { PassThrough } from 'node:stream'
import type { CliIo } from '../../cli/requester-cli.js'

/** Captures what a CLI command writes. */
export function captureIo (env: NodeJS.ProcessEnv = {}): CliIo & { out: () => string, err: () => string } {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let o = ''
  let e = ''
  stdout.on('data', (c: Buffer) => { o += c.toString() })
  stderr.on('data', (c: Buffer) => { e += c.toString() })
  return { stdout, stderr, env, out: () => o, err: () => e }
}
