/**
 * `vectis send`: push a file to a PeSIT server (docs/contract.md §1.3).
 *
 *   vectis send --host H --port P --partner ID --password PW --server SRVID --file FILEID [--restart]
 *               [--sync-kb N] [--window N] [--article-size N] [--entity-size N] [--transfer-id N]
 *               [--state-dir DIR] [--timeout-ms N] [--preconnection] [--quiet] PATH
 *
 * Exit codes: 0 transferred, 2 bad usage, 1 any other failure (refused, interrupted, I/O).
 *
 * Restart state: before the first CREATE the transfer id and the sync spacing are written to a small JSON file
 * in `--state-dir` (default `$VECTIS_SEND_STATE_DIR` or `~/.vectis/send`), keyed by partner, server id, virtual
 * file and source path,
 * and removed after success; `--restart` reads it back. The source's size and mtime are recorded too, and a
 * restart of a file that changed is refused.
 */
import { parseArgs } from 'node:util'
import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { describeDiagnostic } from '../transfer/diagnostics.js'
import { PesitConfigError, PesitError } from '../transfer/errors.js'
import { pushFile, PushInterruptedError, type PushOptions, type PushProgress } from '../transfer/push.js'

export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean }
  stderr: NodeJS.WritableStream & { isTTY?: boolean }
  env: NodeJS.ProcessEnv
}

const USAGE = `usage: vectis send --host H --port P --partner ID --password PW --server SRVID --file FILEID [options] PATH
options:
  --password-file F    read the password from a file instead
  --restart            resume the interrupted transfer of PATH to this destination
  --sync-kb N          sync-point interval proposed, KB (default 1024; 0 = none)
  --window N           sync acknowledgement window (default 4)
  --article-size N     article length PI 32 (default 4096)
  --entity-size N      maximum entity size PI 25 proposed (default 65535)
  --transfer-id N      PeSIT transfer id PI 13 (default: random; with --restart: the recorded one)
  --state-dir DIR      where restart state is kept (default ~/.vectis/send)
  --timeout-ms N       wait for each answer (default 30000)
  --preconnection      send the 24-byte pre-connection message first
  --quiet              no progress output
`

class UsageError extends Error { override name = 'UsageError' }

interface SendState {
  transferId: number
  articlesPerSync: number
  articleSize: number
  size: number
  mtimeMs: number
}

function intOpt (v: string | undefined, name: string, min: number, max: number, dflt?: number): number | undefined {
  if (v === undefined) return dflt
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name}: "${v}" is not a number`)
  const n = Number(v)
  if (n < min || n > max) throw new UsageError(`--${name}: ${n} outside ${min}..${max}`)
  return n
}

export async function runSend (argv: string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  let opts: PushOptions
  let statePath: string
  let restartWanted: boolean
  let quiet: boolean
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        host: { type: 'string' }, port: { type: 'string' }, partner: { type: 'string' }, password: { type: 'string' },
        'password-file': { type: 'string' }, server: { type: 'string' }, file: { type: 'string' },
        restart: { type: 'boolean' }, 'sync-kb': { type: 'string' }, window: { type: 'string' },
        'article-size': { type: 'string' }, 'entity-size': { type: 'string' }, 'transfer-id': { type: 'string' },
        'state-dir': { type: 'string' }, 'timeout-ms': { type: 'string' }, preconnection: { type: 'boolean' },
        quiet: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }
      }
    })
    if (values.help === true) {
      io.stdout.write(USAGE)
      return 0
    }
    if (positionals.length !== 1) throw new UsageError('exactly one PATH to send')
    for (const k of ['host', 'port', 'partner', 'server', 'file'] as const) {
      if (values[k] === undefined || values[k] === '') throw new UsageError(`--${k} is required`)
    }
    let password = values.password
    if (values['password-file'] !== undefined) {
      try {
        password = (await readFile(values['password-file'], 'utf8')).replace(/\r?\n$/, '')
      } catch (err) {
        throw new UsageError(`--password-file: ${(err as Error).message}`)
      }
    }
    if (password === undefined) throw new UsageError('--password or --password-file is required')
    if (password.length > 8) throw new UsageError('--password: PeSIT passwords are at most 8 characters')
    const source = resolve(positionals[0]!)
    opts = {
      host: values.host!, port: intOpt(values.port, 'port', 1, 65535)!, partner: values.partner!, password,
      server: values.server!, file: values.file!, source,
      syncIntervalKb: intOpt(values['sync-kb'], 'sync-kb', 0, 65534, 1024)!,
      syncWindow: intOpt(values.window, 'window', 0, 255, 4)!,
      articleSize: intOpt(values['article-size'], 'article-size', 1, 65535, 4096)!,
      maxEntitySize: intOpt(values['entity-size'], 'entity-size', 64, 65535, 65535)!,
      timeoutMs: intOpt(values['timeout-ms'], 'timeout-ms', 100, 3_600_000, 30_000)!,
      preconnection: values.preconnection === true
    }
    const tid = intOpt(values['transfer-id'], 'transfer-id', 1, 0xffffff)
    if (tid !== undefined) opts.transferId = tid
    const stateDir = values['state-dir'] ?? io.env.VECTIS_SEND_STATE_DIR ?? join(homedir(), '.vectis', 'send')
    // Keyed by PeSIT identities, not the address: a restart may reach the same server id elsewhere (a new leader).
    const key = createHash('sha256').update([opts.partner, opts.server, opts.file, source].join('\u0000')).digest('hex').slice(0, 24)
    statePath = join(stateDir, `send-${key}.json`)
    restartWanted = values.restart === true
    quiet = values.quiet === true
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      io.stderr.write(`vectis send: ${(err as Error).message}\n${USAGE}`)
      return 2
    }
    throw err
  }

  try {
    const st = await stat(opts.source).catch((err: Error) => { throw new PesitConfigError(`cannot read ${opts.source}: ${err.message}`) })
    if (!st.isFile()) throw new PesitConfigError(`${opts.source} is not a regular file`)
    if (restartWanted) {
      const saved = await readState(statePath)
      if (saved === undefined && opts.transferId === undefined) throw new PesitConfigError(`--restart: no interrupted transfer of ${opts.source} to ${opts.file} recorded in ${statePath}`)
      if (saved !== undefined) {
        if (saved.size !== st.size || saved.mtimeMs !== st.mtimeMs) throw new PesitConfigError(`--restart: ${opts.source} changed since the interrupted attempt`)
        if (opts.transferId !== undefined && opts.transferId !== saved.transferId) throw new PesitConfigError(`--restart: transfer id ${opts.transferId} differs from the recorded ${saved.transferId}`)
        opts.transferId = saved.transferId
        opts.articleSize = saved.articleSize
        opts.restart = { articlesPerSync: saved.articlesPerSync }
      } else {
        opts.restart = { articlesPerSync: opts.syncIntervalKb === 0 ? 0 : Math.max(1, Math.floor(opts.syncIntervalKb! * 1024 / opts.articleSize!)) }
      }
    } else {
      opts.transferId ??= 1 + (createHash('sha256').update(`${process.pid}${Date.now()}${Math.random()}`).digest().readUInt32BE(0) % 0xffffff)
      // Recorded before the transfer starts, so a crash at any point leaves what --restart needs.
      const syncKb = opts.syncIntervalKb!
      await writeState(statePath, {
        transferId: opts.transferId, articleSize: opts.articleSize!, size: st.size, mtimeMs: st.mtimeMs,
        articlesPerSync: syncKb === 0 ? 0 : Math.max(1, Math.floor(syncKb * 1024 / opts.articleSize!))
      })
    }
    const tty = io.stderr.isTTY === true && !quiet
    const started = Date.now()
    let lastDraw = 0
    if (tty) {
      opts.onProgress = (p: PushProgress) => {
        const now = Date.now()
        if (now - lastDraw < 200 && p.bytes < p.total) return
        lastDraw = now
        io.stderr.write(`\r${progressLine(p, now - started)}`)
      }
    }
    try {
      const r = await pushFile(opts)
      if (tty) io.stderr.write('\n')
      await unlink(statePath).catch(() => {})
      const secs = Math.max((Date.now() - started) / 1000, 0.001)
      const rate = (r.bytes - r.startOffset) / 1048576 / secs
      io.stdout.write(`sent ${opts.source}: ${r.bytes} bytes, ${r.articles} articles, transfer id ${r.transferId}` +
        (r.startOffset > 0 ? `, resumed at sync point ${r.restartPoint} (byte ${r.startOffset})` : '') +
        `, ${rate.toFixed(1)} MiB/s\n`)
      if (r.closeWarning !== undefined) io.stderr.write(`vectis send: warning: ${r.closeWarning}\n`)
      return 0
    } catch (err) {
      if (tty) io.stderr.write('\n')
      if (err instanceof PushInterruptedError) {
        io.stderr.write(`vectis send: ${err.message} (transfer id ${err.transferId}, ${err.acknowledgedBytes} bytes acknowledged)\n`)
        return 1
      }
      throw err
    }
  } catch (err) {
    if (err instanceof PesitError) {
      io.stderr.write(`vectis send: ${err.message}${err.message.includes(describeDiagnostic(err.diagnostic).slice(0, 6)) ? '' : ` [${describeDiagnostic(err.diagnostic)}]`}\n`)
    } else {
      io.stderr.write(`vectis send: ${(err as Error).message}\n`)
    }
    return 1
  }
}

function progressLine (p: PushProgress, ms: number): string {
  const pct = p.total === 0 ? 100 : Math.floor(p.bytes * 100 / p.total)
  const mib = (n: number): string => (n / 1048576).toFixed(1)
  const rate = ms > 0 ? (p.bytes / 1048576) / (ms / 1000) : 0
  return `${String(pct).padStart(3)}% ${mib(p.bytes)}/${mib(p.total)} MiB  ${rate.toFixed(1)} MiB/s  sync ${p.acknowledgedSyncPoint} acked   `
}

async function readState (path: string): Promise<SendState | undefined> {
  try {
    const s = JSON.parse(await readFile(path, 'utf8')) as SendState
    if (!Number.isInteger(s.transferId) || !Number.isInteger(s.articlesPerSync) || !Number.isInteger(s.articleSize)) return undefined
    return s
  } catch {
    return undefined
  }
}

async function writeState (path: string, s: SendState): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true })
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, JSON.stringify(s))
  await rename(tmp, path)
}
