/**
 * What `vectis send` and `vectis receive` share (docs/contract.md §1.3): the connection options, the password
 * (given or read from a file), the restart state files, progress on a terminal and the error report.
 *
 * Restart state: a small JSON file per transfer in `--state-dir` (default `$VECTIS_SEND_STATE_DIR` or
 * `$VECTIS_RECEIVE_STATE_DIR`, else `~/.vectis/<command>`), keyed by the PeSIT identities and the local path, never by the address: a restart may
 * reach the same server id on another member (a new leader).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { createHash } from 'node:crypto'
import { mkdir, open, readFile, rename } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { describeDiagnostic } from '../transfer/diagnostics.js'
import { PesitError } from '../transfer/errors.js'
import { syncDirectory } from '../store/durable-fs.js'
import { tlsConnector, type RequesterOptions, type RequesterTls } from '../transfer/requester-session.js'
import { UsageError } from './args.js'

export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean }
  stderr: NodeJS.WritableStream & { isTTY?: boolean }
  env: NodeJS.ProcessEnv
}

export const defaultIo = (): CliIo => ({ stdout: process.stdout, stderr: process.stderr, env: process.env })

/** The options of both commands, in the form node:util's parseArgs takes. */
export const CONNECTION_OPTIONS = {
  host: { type: 'string' },
  port: { type: 'string' },
  partner: { type: 'string' },
  password: { type: 'string' },
  'password-file': { type: 'string' },
  server: { type: 'string' },
  file: { type: 'string' },
  restart: { type: 'boolean' },
  'sync-kb': { type: 'string' },
  window: { type: 'string' },
  'entity-size': { type: 'string' },
  'state-dir': { type: 'string' },
  'timeout-ms': { type: 'string' },
  preconnection: { type: 'boolean' },
  quiet: { type: 'boolean' },
  tls: { type: 'boolean' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  insecure: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' }
} as const

export const CONNECTION_USAGE = `  --password-file F    read the password from a file instead of --password
  --restart            resume the interrupted transfer of PATH
  --sync-kb N          sync-point interval proposed, KB (default 1024; 0 = none)
  --window N           sync acknowledgement window proposed (default 16)
  --entity-size N      maximum entity size PI 25 proposed (default 65535)
  --state-dir DIR      where restart state is kept (default $VECTIS_<COMMAND>_STATE_DIR or ~/.vectis/<command>)
  --timeout-ms N       wait for each answer (default 30000)
  --preconnection      send the 24-byte pre-connection message first
  --quiet              no progress output
  --tls                PeSIT over TLS (the server's TLS port)
  --ca FILE            CA bundle to verify the server's certificate (default: the system's CAs)
  --cert F --key F     client certificate and key, for a server that asks for one
  --insecure           do not verify the server's certificate (tests only)
`

type Values = Partial<Record<keyof typeof CONNECTION_OPTIONS, string | boolean>> & Record<string, string | boolean | undefined>

/** Parses argv with the connection options and `extra`; usage errors throw UsageError. */
export function parseCommand (argv: string[], extra: NonNullable<ParseArgsConfig['options']> = {}): { values: Values, positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { ...CONNECTION_OPTIONS, ...extra } })
    return { values, positionals }
  } catch (err) {
    if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) throw new UsageError((err as Error).message)
    throw err
  }
}

export function intOpt (v: string | boolean | undefined, name: string, min: number, max: number, dflt?: number): number | undefined {
  if (v === undefined) return dflt
  if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new UsageError(`--${name}: "${String(v)}" is not a number`)
  const n = Number(v)
  if (n < min || n > max) throw new UsageError(`--${name}: ${n} outside ${min}..${max}`)
  return n
}

/** The connection options from parsed values: required ones present, numbers in range, the password read. */
export async function connectionOptions (values: Values): Promise<RequesterOptions> {
  for (const k of ['host', 'port', 'partner', 'server', 'file'] as const) {
    if (values[k] === undefined || values[k] === '') throw new UsageError(`--${k} is required`)
  }
  let password = values.password as string | undefined
  if (values['password-file'] !== undefined) {
    try {
      password = (await readFile(values['password-file'] as string, 'utf8')).replace(/\r?\n$/, '')
    } catch (err) {
      throw new UsageError(`--password-file: ${(err as Error).message}`)
    }
  }
  if (password === undefined) throw new UsageError('--password or --password-file is required')
  if (password.length > 8) throw new UsageError('--password: PeSIT passwords are at most 8 characters')
  const o: RequesterOptions = {
    host: values.host as string,
    port: intOpt(values.port, 'port', 1, 65535)!,
    partner: values.partner as string,
    password,
    server: values.server as string,
    file: values.file as string,
    syncIntervalKb: intOpt(values['sync-kb'], 'sync-kb', 0, 65534, 1024)!,
    syncWindow: intOpt(values.window, 'window', 0, 255, 16)!,
    maxEntitySize: intOpt(values['entity-size'], 'entity-size', 64, 65535, 65535)!,
    timeoutMs: intOpt(values['timeout-ms'], 'timeout-ms', 100, 3_600_000, 30_000)!,
    preconnection: values.preconnection === true
  }
  const tlsOnly = (['ca', 'cert', 'key', 'insecure'] as const).filter((k) => values[k] !== undefined)
  if (values.tls !== true) {
    if (tlsOnly.length > 0) throw new UsageError(`--${tlsOnly[0]} needs --tls`)
    return o
  }
  if ((values.cert === undefined) !== (values.key === undefined)) throw new UsageError('--cert and --key go together')
  const read = async (k: 'ca' | 'cert' | 'key'): Promise<Buffer | undefined> => {
    const f = values[k] as string | undefined
    if (f === undefined) return undefined
    try {
      return await readFile(f)
    } catch (err) {
      throw new UsageError(`--${k}: ${(err as Error).message}`)
    }
  }
  const tls: RequesterTls = { insecure: values.insecure === true }
  for (const k of ['ca', 'cert', 'key'] as const) {
    const b = await read(k)
    if (b !== undefined) tls[k] = b
  }
  o.connect = tlsConnector(o, tls)
  return o
}

/** The restart state file of one transfer: `<state dir>/<command>-<hash of the key parts>.json`. */
export function statePathFor (values: Values, env: NodeJS.ProcessEnv, command: 'send' | 'receive', key: string[]): string {
  const dir = (values['state-dir'] as string | undefined) ?? env[`VECTIS_${command.toUpperCase()}_STATE_DIR`] ?? join(homedir(), '.vectis', command)
  const h = createHash('sha256').update(key.join('\u0000')).digest('hex').slice(0, 24)
  return join(dir, `${command}-${h}.json`)
}

export async function readState<T> (path: string, valid: (x: unknown) => x is T): Promise<T | undefined> {
  try {
    const s: unknown = JSON.parse(await readFile(path, 'utf8'))
    return valid(s) ? s : undefined
  } catch {
    return undefined
  }
}

/** State directories made in this process: a pull writes its state at every group of sync points. */
const madeDirs = new Set<string>()

/**
 * Writes the state atomically (temporary file, rename). `durable` adds the fsyncs that make it survive a crash of
 * the machine; without them a crash may leave the previous state, which must then still be a valid one.
 */
export async function writeState (path: string, s: unknown, durable: boolean): Promise<void> {
  if (!madeDirs.has(dirname(path))) {
    await mkdir(dirname(path), { recursive: true })
    madeDirs.add(dirname(path))
  }
  const tmp = `${path}.${process.pid}.tmp`
  const fh = await open(tmp, 'w')
  try {
    await fh.writeFile(JSON.stringify(s))
    if (durable) await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, path)
  if (durable) await syncDirectory(dirname(path))
}

/** A progress line redrawn at most five times a second on a terminal (stderr), nothing otherwise. */
export function progressPrinter (io: CliIo, quiet: boolean): ((line: (elapsedMs: number) => string, final: boolean) => void) | undefined {
  if (io.stderr.isTTY !== true || quiet) return undefined
  const started = Date.now()
  let last = 0
  return (line, final) => {
    const now = Date.now()
    if (!final && now - last < 200) return
    last = now
    io.stderr.write(`\r${line(now - started)}`)
  }
}

export function mib (n: number): string { return (n / 1048576).toFixed(1) }

/** The message of a failure on stderr, with its diagnostic unless the message already names it. Returns 1. */
export function reportFailure (io: CliIo, command: string, err: unknown): number {
  if (err instanceof PesitError) {
    const d = describeDiagnostic(err.diagnostic)
    io.stderr.write(`vectis ${command}: ${err.message}${err.message.includes(d.slice(0, 6)) ? '' : ` [${d}]`}\n`)
  } else {
    io.stderr.write(`vectis ${command}: ${(err as Error).message}\n`)
  }
  return 1
}

/** Runs a command body: usage errors print the usage and give 2. */
export async function withUsage (io: CliIo, command: string, usage: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body()
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`vectis ${command}: ${err.message}\n${usage}`)
      return 2
    }
    return reportFailure(io, command, err)
  }
}
