/**
 * `vectis send`: push a file to a PeSIT server (docs/contract.md §1.3).
 *
 *   vectis send --host H --port P --partner ID --password PW --server SRVID --file FILEID [--restart]
 *               [--sync-kb N] [--window N] [--article-size N] [--entity-size N] [--transfer-id N]
 *               [--state-dir DIR] [--timeout-ms N] [--preconnection] [--quiet] PATH
 *
 * Exit codes: 0 transferred, 2 bad usage, 1 any other failure (refused, interrupted, I/O).
 *
 * Restart state (requester-cli.ts): before the first CREATE the transfer id, the sync spacing and the source's size
 * and mtime are written durably; `--restart` reads them back and refuses a source that changed since.
 */
import { stat, unlink } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { PesitConfigError } from '../transfer/errors.js'
import { pushFile, PushInterruptedError, type PushOptions } from '../transfer/push.js'
import { UsageError } from './args.js'
import { nextTransferId } from './transfer-ids.js'
import {
  CONNECTION_USAGE, connectionOptions, defaultIo, intOpt, mib, parseCommand, progressPrinter, readState, reportFailure,
  statePathFor, withUsage, writeState, type CliIo
} from './requester-cli.js'

export type { CliIo } from './requester-cli.js'

const USAGE = `usage: vectis send --host H --port P --partner ID --password PW --server SRVID --file FILEID [options] PATH
options:
${CONNECTION_USAGE}  --article-size N     article length PI 32 (default 4096)
  --transfer-id N      PeSIT transfer id PI 13 (default: random; with --restart: the recorded one)
`

interface SendState {
  transferId: number
  articlesPerSync: number
  articleSize: number
  size: number
  mtimeMs: number
}

function isSendState (s: unknown): s is SendState {
  const x = s as SendState
  return typeof x === 'object' && x !== null && Number.isInteger(x.transferId) && Number.isInteger(x.articlesPerSync) && Number.isInteger(x.articleSize)
}

export async function runSend (argv: string[], io: CliIo = defaultIo()): Promise<number> {
  return await withUsage(io, 'send', USAGE, async () => {
    const { values, positionals } = parseCommand(argv, { 'article-size': { type: 'string' }, 'transfer-id': { type: 'string' } })
    if (values.help === true) {
      io.stdout.write(USAGE)
      return 0
    }
    if (positionals.length !== 1) throw new UsageError('exactly one PATH to send')
    const source = resolve(positionals[0]!)
    const opts: PushOptions = {
      ...await connectionOptions(values), source,
      articleSize: intOpt(values['article-size'], 'article-size', 1, 65535, 4096)!
    }
    const tid = intOpt(values['transfer-id'], 'transfer-id', 1, 0xffffff)
    if (tid !== undefined) opts.transferId = tid
    const statePath = statePathFor(values, io.env, 'send', [opts.partner, opts.server, opts.file, source])
    return await send(opts, statePath, values.restart === true, values.quiet === true, io)
  })
}

async function send (opts: PushOptions, statePath: string, restartWanted: boolean, quiet: boolean, io: CliIo): Promise<number> {
  const st = await stat(opts.source).catch((err: Error) => { throw new PesitConfigError(`cannot read ${opts.source}: ${err.message}`) })
  if (!st.isFile()) throw new PesitConfigError(`${opts.source} is not a regular file`)
  const spacing = (syncKb: number, articleSize: number): number => syncKb === 0 ? 0 : Math.max(1, Math.floor(syncKb * 1024 / articleSize))
  if (restartWanted) {
    const saved = await readState(statePath, isSendState)
    if (saved === undefined && opts.transferId === undefined) throw new PesitConfigError(`--restart: no interrupted transfer of ${opts.source} to ${opts.file} recorded in ${statePath}`)
    if (saved !== undefined) {
      if (saved.size !== st.size || saved.mtimeMs !== st.mtimeMs) throw new PesitConfigError(`--restart: ${opts.source} changed since the interrupted attempt`)
      if (opts.transferId !== undefined && opts.transferId !== saved.transferId) throw new PesitConfigError(`--restart: transfer id ${opts.transferId} differs from the recorded ${saved.transferId}`)
      opts.transferId = saved.transferId
      opts.articleSize = saved.articleSize
      opts.restart = { articlesPerSync: saved.articlesPerSync }
    } else {
      opts.restart = { articlesPerSync: spacing(opts.syncIntervalKb!, opts.articleSize!) }
    }
  } else {
    opts.transferId ??= await nextTransferId(dirname(statePath))
    // Recorded before the transfer starts, so a crash at any point leaves what --restart needs.
    await writeState(statePath, {
      transferId: opts.transferId, articleSize: opts.articleSize!, size: st.size, mtimeMs: st.mtimeMs,
      articlesPerSync: spacing(opts.syncIntervalKb!, opts.articleSize!)
    } satisfies SendState, true)
  }
  const progress = progressPrinter(io, quiet)
  if (progress !== undefined) {
    opts.onProgress = (p) => {
      progress((ms) => {
        const pct = p.total === 0 ? 100 : Math.floor(p.bytes * 100 / p.total)
        const rate = ms > 0 ? (p.bytes / 1048576) / (ms / 1000) : 0
        return `${String(pct).padStart(3)}% ${mib(p.bytes)}/${mib(p.total)} MiB  ${rate.toFixed(1)} MiB/s  sync ${p.acknowledgedSyncPoint} acked   `
      }, p.bytes >= p.total)
    }
  }
  const started = Date.now()
  try {
    const r = await pushFile(opts)
    if (progress !== undefined) io.stderr.write('\n')
    await unlink(statePath).catch(() => {})
    const rate = (r.bytes - r.startOffset) / 1048576 / Math.max((Date.now() - started) / 1000, 0.001)
    io.stdout.write(`sent ${opts.source}: ${r.bytes} bytes, ${r.articles} articles, transfer id ${r.transferId}` +
      (r.startOffset > 0 ? `, resumed at sync point ${r.restartPoint} (byte ${r.startOffset})` : '') +
      `, ${rate.toFixed(1)} MiB/s\n`)
    if (r.closeWarning !== undefined) io.stderr.write(`vectis send: warning: ${r.closeWarning}\n`)
    return 0
  } catch (err) {
    if (progress !== undefined) io.stderr.write('\n')
    if (err instanceof PushInterruptedError) {
      io.stderr.write(`vectis send: ${err.message} (transfer id ${err.transferId}, ${err.acknowledgedBytes} bytes acknowledged)\n`)
      return 1
    }
    return reportFailure(io, 'send', err)
  }
}
