/**
 * `vectis transfer send|fetch|list|cancel`: the transfers the cluster initiates, through a member's API
 * (docs/contract.md §1.8, §3.7, §3.11). `send` and `fetch` queue one (`POST /api/transfers`) and print its id;
 * with `--wait` they follow it (`GET /api/transfers/{id}`) until it ends. `list` prints the journal, `cancel` cancels.
 * Only what is cheap is checked here (required options, the priority); the server judges the rest and its reason
 * is shown as it is.
 */
import { intOption, parseArgs, UsageError, type OptionSpec } from './args.js'
import { ApiError, API_OPTIONS, API_USAGE, apiRequest, apiTarget, type ApiTarget } from './api-client.js'

const USAGE = `usage: vectis transfer send --partner P --file F [--priority 0|1|2] [--not-before T] [--wait [--timeout-ms N]] PATH
       vectis transfer fetch --partner P --file F --into LOCALFILE [--name REMOTENAME] [--priority 0|1|2] [--not-before T]
                             [--wait [--timeout-ms N]]
       vectis transfer list [--status S] [--partner P] [--limit N] [--before ID] [--json]
       vectis transfer cancel ID
  each with ${API_USAGE}

  send     queue a send of PATH to partner P's virtual file F (the leader calls the partner) and print its id.
           PATH is read by the members, not by this command: absolute, or relative to the members'
           VECTIS_SHARED_DIR (not to the current directory), and inside that directory
  fetch    queue a fetch of partner P's virtual file F (with --name, the one file REMOTENAME of it) into the
           local receive virtual file LOCALFILE, and print its id
  --priority    0 urgent, 1 medium (the default), 2 low
  --not-before  an RFC 3339 time (2026-12-24T08:00:00Z) before which it does not start
  --wait        follow it until it ends: exit 0 completed; 1 failed, cancelled or unconfirmed (with the
                diagnostic), or not ended within --timeout-ms (default 600000). Ctrl-C stops the waiting only
  list     the journal of the member asked, newest first: --status queued|in-progress|interrupted|completed|failed|
           cancelled|unconfirmed, --partner (exact id), --limit 1-1000 (default 100), --before ID (the next page),
           --json (the server's answer as it is)
  cancel   cancel a queued or running transfer the cluster initiated and print its new status`

/** Between two looks at a transfer followed with --wait. */
const POLL_MS = 500
const DEFAULT_WAIT_MS = 600_000
const FINAL = new Set(['completed', 'failed', 'cancelled', 'unconfirmed'])
/** Longest diagnostic shown whole in the list. */
const DIAGNOSTIC_WIDTH = 60

/** A journal row as GET /api/transfers returns it (docs/contract.md §3.7): the fields shown here. */
export interface TransferRow {
  id: string
  partner: string
  virtualFile: string
  direction: string
  status: string
  bytes: number
  sha256: string | null
  diagnostic: string | null
  createdAt: string
  initiator: string
  attempts: number
  nextAttemptAt: string | null
}

const QUEUE_OPTIONS: Record<string, OptionSpec> = {
  partner: { type: 'string' },
  file: { type: 'string' },
  priority: { type: 'string' },
  'not-before': { type: 'string' },
  wait: { type: 'boolean' },
  'timeout-ms': { type: 'string' }
}
const SPECS: Record<string, Record<string, OptionSpec>> = {
  send: QUEUE_OPTIONS,
  fetch: { ...QUEUE_OPTIONS, into: { type: 'string' }, name: { type: 'string' } },
  list: { status: { type: 'string' }, partner: { type: 'string' }, limit: { type: 'string' }, before: { type: 'string' }, json: { type: 'boolean' } },
  cancel: {}
}
const COMMON: Record<string, OptionSpec> = { ...API_OPTIONS, help: { type: 'boolean' } }

export async function runTransfer (argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  // Every action's options, to find the action; then the action's own, so that another action's option is refused.
  const all = parseArgs(argv, Object.assign({}, COMMON, ...Object.values(SPECS)) as Record<string, OptionSpec>)
  const action = all.positionals[0]
  if (action === undefined || all.options.help === true) {
    if (all.options.help === true) { out(`${USAGE}\n`); return 0 }
    throw new UsageError(USAGE)
  }
  const spec = SPECS[action]
  if (spec === undefined) throw new UsageError(`unknown action "${action}"\n${USAGE}`)
  const { options, positionals } = parseArgs(argv, { ...COMMON, ...spec })
  const args = positionals.slice(1)
  const target = apiTarget(options)
  switch (action) {
    case 'send':
    case 'fetch': {
      const body = queueRequest(action, options, args)
      if (options['timeout-ms'] !== undefined && options.wait !== true) throw new UsageError(`--timeout-ms is the limit of --wait: add --wait\n${USAGE}`)
      const waitMs = intOption('timeout-ms', options['timeout-ms'], DEFAULT_WAIT_MS, 1, 604_800_000)
      const { id } = await apiRequest<{ id: string }>(target, 'POST', '/api/transfers', body)
      out(`${id}\n`)
      return options.wait === true ? await waitFor(target, id, waitMs) : 0
    }
    case 'list': {
      if (args.length > 0) throw new UsageError(`list takes no argument\n${USAGE}`)
      const query = new URLSearchParams()
      if (options.limit !== undefined) query.set('limit', String(intOption('limit', options.limit, 100, 1, 1000)))
      for (const k of ['status', 'partner', 'before'] as const) if (typeof options[k] === 'string') query.set(k, options[k])
      const res = await apiRequest<{ transfers: TransferRow[], next: string | null }>(target, 'GET', `/api/transfers${query.size > 0 ? `?${query.toString()}` : ''}`)
      if (options.json === true) { out(`${JSON.stringify(res, null, 2)}\n`); return 0 }
      out(`${formatTransfers(res.transfers)}\n`)
      if (res.next !== null) out(`(more: add --before ${res.next})\n`)
      return 0
    }
    default: { // cancel
      if (args.length !== 1) throw new UsageError(`${args.length === 0 ? 'cancel needs the transfer\'s ID (vectis transfer list)' : `unexpected argument ${args[1]!}`}\n${USAGE}`)
      const row = await apiRequest<TransferRow>(target, 'DELETE', `/api/transfers/${encodeURIComponent(args[0]!)}`)
      out(`${row.id} ${row.status}\n`)
      return 0
    }
  }
}

/** The POST body of `send` or `fetch` (docs/contract.md §3.11), after the checks that need no server. */
function queueRequest (action: 'send' | 'fetch', options: Record<string, string | boolean | undefined>, args: string[]): Record<string, unknown> {
  const required = (name: string): string => {
    const v = options[name]
    if (typeof v !== 'string' || v === '') throw new UsageError(`${action} needs --${name}\n${USAGE}`)
    return v
  }
  const body: Record<string, unknown> = { direction: action, partner: required('partner'), file: required('file') }
  if (action === 'send') {
    if (args.length === 0 || args[0] === '') throw new UsageError(`send needs the PATH of the file to send\n${USAGE}`)
    if (args.length > 1) throw new UsageError(`unexpected argument ${args[1]!}\n${USAGE}`)
    body.path = args[0]
  } else {
    if (args.length > 0) throw new UsageError(`unexpected argument ${args[0]!} (fetch lands in the virtual file of --into)\n${USAGE}`)
    body.into = required('into')
    if (options.name !== undefined) body.remoteName = required('name')
  }
  if (options.priority !== undefined) body.priority = intOption('priority', options.priority, 1, 0, 2)
  if (options['not-before'] !== undefined) body.notBefore = required('not-before')
  return body
}

/**
 * Follows transfer `id` until it ends or `waitMs` passes: a line on stderr at each change, exit code 0 for
 * `completed`, 1 otherwise. A 404 is a member that has not applied the row yet (it answers from its replica).
 */
async function waitFor (target: ApiTarget, id: string, waitMs: number): Promise<number> {
  const deadline = Date.now() + waitMs
  const path = `/api/transfers/${encodeURIComponent(id)}`
  let last = 'not yet in the journal of the member asked'
  for (;;) {
    let row: TransferRow | undefined
    try {
      row = await apiRequest<TransferRow>(target, 'GET', path)
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err
    }
    if (row !== undefined) {
      const now = describe(row)
      if (now !== last) process.stderr.write(`${now}\n`)
      last = now
      if (FINAL.has(row.status)) return row.status === 'completed' ? 0 : 1
    }
    const left = deadline - Date.now()
    if (left <= 0) {
      process.stderr.write(`vectis transfer: ${id} did not end within ${waitMs} ms (last seen: ${last}); it goes on: vectis transfer list, or cancel ${id}\n`)
      return 1
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(POLL_MS, left)))
  }
}

/** `4-17 completed: 1048576 bytes, sha256 …, 1 attempt` or `4-17 failed after 1 attempt: D3-304 …`. */
export function describe (r: TransferRow): string {
  const attempts = `${r.attempts} attempt${r.attempts === 1 ? '' : 's'}`
  switch (r.status) {
    case 'completed': return `${r.id} completed: ${r.bytes} bytes${r.sha256 === null ? '' : `, sha256 ${r.sha256}`}, ${attempts}`
    case 'queued': return `${r.id} queued${r.attempts > 0 ? ` after ${attempts}` : ''}${r.nextAttemptAt === null ? '' : `, next attempt at ${r.nextAttemptAt}`}${r.diagnostic === null ? '' : `: ${r.diagnostic}`}`
    case 'in-progress': return `${r.id} in progress, attempt ${r.attempts}`
    default: return `${r.id} ${r.status} after ${attempts}${r.diagnostic === null ? '' : `: ${r.diagnostic}`}`
  }
}

export function formatTransfers (list: TransferRow[]): string {
  if (list.length === 0) return 'no transfers'
  const clip = (s: string | null): string => s === null ? '-' : s.length > DIAGNOSTIC_WIDTH ? `${s.slice(0, DIAGNOSTIC_WIDTH - 1)}…` : s
  const rows = list.map((t) => [t.id, t.createdAt.replace(/\.\d+Z$/, 'Z'), t.direction, t.initiator, t.partner, t.virtualFile, t.status,
    String(t.bytes), String(t.attempts), clip(t.diagnostic)])
  const head = ['ID', 'CREATED', 'DIRECTION', 'INITIATOR', 'PARTNER', 'FILE', 'STATUS', 'BYTES', 'ATTEMPTS', 'DIAGNOSTIC']
  const numeric = new Set([7, 8])
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === cells.length - 1 ? c : numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)).join('  ')
  return [head, ...rows].map(line).join('\n')
}
