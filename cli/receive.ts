/**
 * `vectis receive`: pull a file from a PeSIT server (docs/contract.md §1.4).
 *
 *   vectis receive --host H --port P --partner ID --password PW --server SRVID --file FILEID [--name NAME]
 *                  [--restart] [--sync-kb N] [--window N] [--entity-size N] [--state-dir DIR] [--timeout-ms N]
 *                  [--preconnection] [--quiet] PATH
 *
 * PATH is the file to create, or an existing directory: the file then takes the name the server gives it. An
 * existing file is never overwritten. Exit codes: 0 received, 2 bad usage, 1 any other failure.
 *
 * Restart state (requester-cli.ts): after ACK(SELECT) the server's transfer id and the destination are written
 * durably; after each sync point made durable the checkpoint is updated (atomically, without fsync: a state lost to
 * a crash is an older checkpoint, still a valid restart point). `--restart` resumes from it.
 */
import { stat, unlink } from 'node:fs/promises'
import { resolve } from 'node:path'
import { PesitConfigError } from '../transfer/errors.js'
import { pullFile, PullInterruptedError, type PullCheckpoint, type PullOptions } from '../transfer/pull.js'
import { UsageError } from './args.js'
import {
  CONNECTION_USAGE, connectionOptions, defaultIo, mib, parseCommand, progressPrinter, readState, reportFailure,
  statePathFor, withUsage, writeState, type CliIo
} from './requester-cli.js'

const USAGE = `usage: vectis receive --host H --port P --partner ID --password PW --server SRVID --file FILEID [options] PATH
PATH: the file to create, or an existing directory (the file takes the name the server gives it)
options:
  --name NAME          one file of the virtual file (PI 12 "FILEID/NAME"); default: the server's choice
${CONNECTION_USAGE}`

interface ReceiveState {
  transferId: number
  /** the file being received */
  path: string
  checkpoint: PullCheckpoint
}

function isReceiveState (s: unknown): s is ReceiveState {
  const x = s as ReceiveState
  return typeof x === 'object' && x !== null && Number.isInteger(x.transferId) && typeof x.path === 'string' &&
    typeof x.checkpoint === 'object' && x.checkpoint !== null && [x.checkpoint.syncPoint, x.checkpoint.offset, x.checkpoint.articles].every((n) => Number.isSafeInteger(n) && n >= 0)
}

export async function runReceive (argv: string[], io: CliIo = defaultIo()): Promise<number> {
  return await withUsage(io, 'receive', USAGE, async () => {
    const { values, positionals } = parseCommand(argv, { name: { type: 'string' } })
    if (values.help === true) {
      io.stdout.write(USAGE)
      return 0
    }
    if (positionals.length !== 1) throw new UsageError('exactly one PATH to receive into')
    const destination = resolve(positionals[0]!)
    const name = values.name as string | undefined
    if (name !== undefined && (name === '' || /[/\\]/.test(name))) throw new UsageError('--name: one file name, without / or \\')
    const opts: PullOptions = { ...await connectionOptions(values), destination, ...(name !== undefined ? { name } : {}) }
    const statePath = statePathFor(values, io.env, 'receive', [opts.partner, opts.server, opts.file, name ?? '', destination])
    return await receive(opts, statePath, values.restart === true, values.quiet === true, io)
  })
}

async function receive (opts: PullOptions, statePath: string, restartWanted: boolean, quiet: boolean, io: CliIo): Promise<number> {
  let state: ReceiveState | undefined
  if (restartWanted) {
    state = await readState(statePath, isReceiveState)
    if (state === undefined) throw new PesitConfigError(`--restart: no interrupted transfer of ${opts.file} into ${opts.destination} recorded in ${statePath}`)
    opts.restart = { transferId: state.transferId, checkpoint: state.checkpoint, path: state.path }
  } else if ((await stat(opts.destination).catch(() => undefined))?.isFile() === true) {
    throw new PesitConfigError(`${opts.destination} already exists; remove it or choose another PATH`)
  }
  opts.onSelected = async (s) => {
    if (state !== undefined) return
    if (await stat(s.path).catch(() => undefined) !== undefined) throw new PesitConfigError(`${s.path} already exists; remove it or choose another PATH`)
    // Durable before READ: from here on an attempt cut at any moment can be restarted.
    state = { transferId: s.transferId, path: s.path, checkpoint: { syncPoint: 0, offset: 0, articles: 0 } }
    await writeState(statePath, state, true)
  }
  opts.onCheckpoint = async (c) => {
    state = { ...state!, checkpoint: c }
    await writeState(statePath, state, false)
  }
  const progress = progressPrinter(io, quiet)
  if (progress !== undefined) {
    opts.onProgress = (p) => {
      progress((ms) => {
        const rate = ms > 0 ? (p.bytes / 1048576) / (ms / 1000) : 0
        const of = p.announced > 0 ? `/${mib(p.announced)}` : ''
        return `${mib(p.bytes)}${of} MiB  ${rate.toFixed(1)} MiB/s  sync ${p.syncPoint} durable   `
      }, false)
    }
  }
  const started = Date.now()
  try {
    const r = await pullFile(opts)
    if (progress !== undefined) io.stderr.write('\n')
    await unlink(statePath).catch(() => {})
    const rate = (r.bytes - r.startOffset) / 1048576 / Math.max((Date.now() - started) / 1000, 0.001)
    io.stdout.write(`received ${r.path}: ${r.bytes} bytes, ${r.articles} articles, transfer id ${r.transferId}` +
      (r.startOffset > 0 ? `, resumed at sync point ${r.restartPoint} (byte ${r.startOffset})` : '') +
      `, ${rate.toFixed(1)} MiB/s, sha256 ${r.sha256}\n`)
    if (r.closeWarning !== undefined) io.stderr.write(`vectis receive: warning: ${r.closeWarning}\n`)
    return 0
  } catch (err) {
    if (progress !== undefined) io.stderr.write('\n')
    if (err instanceof PullInterruptedError) {
      io.stderr.write(`vectis receive: ${err.message} (transfer id ${err.transferId}, ${err.checkpoint.offset} bytes durable)\n`)
      return 1
    }
    return reportFailure(io, 'receive', err)
  }
}
