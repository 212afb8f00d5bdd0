/**
 * `vectis backup create|list|restore ID`: journal backups through a member's API (docs/contract.md §3.9).
 * `create` copies the journal of the member asked; `restore` runs on the leader whichever member is asked.
 */
import { parseArgs, UsageError } from './args.js'
import { API_OPTIONS, API_USAGE, apiRequest, apiTarget } from './api-client.js'

const USAGE = `usage: vectis backup create|list|restore ID ${API_USAGE}`

interface Manifest { id: string, createdAt: string, member: string, epoch: number, journalSeq: number, transfers: number, bytes: number, sha256: string }
interface Restored { backup: string, rows: number, added: number, kept: number, rekeyed: number }

export function formatBackups (list: Manifest[]): string {
  if (list.length === 0) return 'no backups'
  const w = Math.max(2, ...list.map((b) => b.id.length))
  return [`${'ID'.padEnd(w)}  ${'MEMBER'.padEnd(12)}  ${'TRANSFERS'.padStart(9)}  ${'SEQ'.padStart(8)}  ${'BYTES'.padStart(11)}  SHA-256`,
    ...list.map((b) => `${b.id.padEnd(w)}  ${b.member.padEnd(12)}  ${String(b.transfers).padStart(9)}  ${String(b.journalSeq).padStart(8)}  ` +
      `${String(b.bytes).padStart(11)}  ${b.sha256.slice(0, 16)}…`)].join('\n')
}

export async function runBackup (argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  const { options, positionals } = parseArgs(argv, { ...API_OPTIONS, help: { type: 'boolean' } })
  if (options.help === true) { out(`${USAGE}\n`); return 0 }
  const [action, id, ...extra] = positionals
  const target = apiTarget(options)
  if (extra.length > 0) throw new UsageError(`unexpected argument ${extra[0]}\n${USAGE}`)
  switch (action) {
    case 'create': {
      if (id !== undefined) throw new UsageError(`create takes no argument\n${USAGE}`)
      const m = await apiRequest<Manifest>(target, 'POST', '/api/backups', {})
      out(`backup ${m.id}: ${m.transfers} transfers, ${m.bytes} bytes, sha256 ${m.sha256}\n`)
      return 0
    }
    case 'list': {
      if (id !== undefined) throw new UsageError(`list takes no argument\n${USAGE}`)
      out(`${formatBackups((await apiRequest<{ backups: Manifest[] }>(target, 'GET', '/api/backups')).backups)}\n`)
      return 0
    }
    case 'restore': {
      if (id === undefined) throw new UsageError(`restore needs the backup's ID (vectis backup list)\n${USAGE}`)
      const r = await apiRequest<Restored>(target, 'POST', `/api/backups/${encodeURIComponent(id)}/restore`, {})
      out(`restored ${r.backup}: ${r.rows} rows read, ${r.added} added, ${r.kept} already here, ${r.rekeyed} added under a new key\n`)
      return 0
    }
    default:
      throw new UsageError(action === undefined ? USAGE : `unknown action "${action}"\n${USAGE}`)
  }
}
