/**
 * `vectis status [--watch] [--url URL] [--user U] [--password P]`: the member table of a running cluster, from
 * `GET /api/cluster/status`; with `--watch`, follows `GET /api/cluster/events` and reprints on every event.
 */
import WebSocket from 'ws'
import { parseArgs, UsageError } from './args.js'
import { API_OPTIONS, API_USAGE, apiRequest, apiTarget } from './api-client.js'

const USAGE = `usage: vectis status [--watch] ${API_USAGE}`

interface Member { name: string, address: string, isLeader: boolean }
interface Status {
  clusterName: string
  nodeName: string
  leader: string | null
  epoch: number
  viewId: { coordinator: string, id: number } | null
  quorum?: { required: number, present: number, ok: boolean }
  members: Member[]
  servers?: Array<{ id: string, port: number, running: boolean }>
}

export function formatStatus (s: Status): string {
  const lines = [
    `cluster ${s.clusterName}  view ${s.viewId === null ? '-' : `${s.viewId.coordinator}#${s.viewId.id}`}  epoch ${s.epoch}  leader ${s.leader ?? '(none)'}` +
      (s.quorum === undefined ? '' : `  quorum ${s.quorum.present}/${s.quorum.required} ${s.quorum.ok ? 'ok' : 'LOST'}`)
  ]
  const w = Math.max(4, ...s.members.map((m) => m.name.length))
  lines.push(`${'#'.padEnd(3)} ${'NAME'.padEnd(w)}  ${'ADDRESS'.padEnd(15)}  ROLE`)
  s.members.forEach((m, i) => {
    lines.push(`${String(i).padEnd(3)} ${m.name.padEnd(w)}  ${m.address.padEnd(15)}  ${m.isLeader ? 'leader' : 'standby'}${i === 0 ? ' (coordinator)' : ''}`)
  })
  for (const srv of s.servers ?? []) lines.push(`server ${srv.id} :${srv.port} ${srv.running ? 'running' : 'stopped'}`)
  return lines.join('\n')
}

export async function runStatus (argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  const { options, positionals } = parseArgs(argv, {
    ...API_OPTIONS,
    watch: { type: 'boolean' },
    help: { type: 'boolean' }
  })
  if (options.help === true) { out(`${USAGE}\n`); return 0 }
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}\n${USAGE}`)
  const target = apiTarget(options)
  const { base, authorization } = target
  out(`${formatStatus(await apiRequest<Status>(target, 'GET', '/api/cluster/status'))}\n`)
  if (options.watch !== true) return 0

  const wsUrl = new URL('/api/cluster/events', base)
  wsUrl.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:'
  return await new Promise<number>((resolve) => {
    const ws = new WebSocket(wsUrl, { headers: { authorization } })
    const finish = (code: number): void => { process.off('SIGINT', onInt); resolve(code) }
    const onInt = (): void => { ws.close(); finish(0) }
    process.on('SIGINT', onInt)
    ws.on('message', (data: Buffer) => {
      const e = JSON.parse(data.toString('utf8')) as Status & { type: string, at: string }
      if (e.type === 'state') return // already printed
      out(`\n${e.at} ${e.type}\n${formatStatus({ ...e, clusterName: '', nodeName: '' }).split('\n').slice(1).join('\n')}\n`)
    })
    ws.on('close', () => { process.stderr.write('vectis status: event stream closed\n'); finish(1) })
    ws.on('error', (err) => { process.stderr.write(`vectis status: ${err.message}\n`); finish(1) })
  })
}
