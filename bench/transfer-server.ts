/**
 * The PeSIT server of `bench:transfer`, in a process of its own so that its memory and CPU are its own:
 * `node --import tsx bench/transfer-server.ts '{"dir": "...", "tls": {...}}'`. TESTFILE receives into dir/inbox,
 * OUTBOX sends from dir/outbox; a plain and a TLS listener of PESITSRV. Prints `{"port", "tlsPort"}` once listening.
 * Reads commands on stdin, one per line: `stats` prints `{"fsyncs", "dirSyncs", "peakRssMiB", "sync"}` (fsyncs
 * counted since the last `reset`; `sync` the sync option of the last connection), `reset` zeroes the counters.
 */
import '../common/polyfill.js'
import { createInterface } from 'node:readline'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { createLogger } from '../common/logger.js'
import { NodeDurableFs, type DurableFile, type OpenMode } from '../store/durable-fs.js'
import type { ServerTlsConfig } from '../transfer/config-types.js'
import { PesitServer } from '../transfer/pesit-server.js'
import { nullJournal } from '../transfer/ports.js'

const opts = JSON.parse(process.argv[2] ?? '{}') as { dir: string, syncIntervalKb?: number, maxConnections?: number, tls?: ServerTlsConfig }

/** The real file layer, counting what makes data durable. */
class CountingFs extends NodeDurableFs {
  fsyncs = 0
  dirSyncs = 0
  override async open (path: string, mode: OpenMode): Promise<DurableFile> {
    const f = await super.open(path, mode)
    const sync = f.sync.bind(f)
    f.sync = async () => { this.fsyncs++; await sync() }
    return f
  }

  override async writeFileAtomic (path: string, data: Uint8Array, o?: { mode?: number }): Promise<void> {
    this.fsyncs++ // its temporary file's; the directory's is counted by syncDir
    await super.writeFileAtomic(path, data, o)
  }

  override async syncDir (dir: string): Promise<void> {
    this.dirSyncs++
    await super.syncDir(dir)
  }
}

let lastSync: unknown
// The sessions' logs are read for one thing: the sync option negotiated ("connected" lines).
const sink = new Writable({
  write (chunk: Buffer, _e, cb) {
    for (const line of chunk.toString().split('\n')) {
      if (!line.includes('"connected"')) continue
      try { lastSync = (JSON.parse(line) as { sync?: unknown }).sync } catch { /* not JSON: ignored */ }
    }
    cb()
  }
})
const fs = new CountingFs()
const server = new PesitServer({ logger: createLogger({ level: 'info', destination: sink }), leadership: { isLeader: () => true }, fs, journal: nullJournal }, {
  host: '127.0.0.1',
  config: {
    servers: [
      { id: 'PESITSRV', port: 0, maxConnections: opts.maxConnections ?? 200, syncIntervalKb: opts.syncIntervalKb ?? 1024, maxEntitySize: 65535 },
      ...(opts.tls !== undefined ? [{ id: 'PESITSRV', port: 0, maxConnections: opts.maxConnections ?? 200, syncIntervalKb: opts.syncIntervalKb ?? 1024, maxEntitySize: 65535, tls: opts.tls }] : [])
    ],
    partners: [{ id: 'CXCLIENT', password: 'test123', access: 'both' }],
    files: [
      { id: 'TESTFILE', direction: 'receive', directory: join(opts.dir, 'inbox'), filenamePattern: '${partner}_${file}_${transferId}' },
      { id: 'OUTBOX', direction: 'send', directory: join(opts.dir, 'outbox'), filenamePattern: '${file}' }
    ]
  }
})
await server.start()
process.stdout.write(JSON.stringify({ port: server.portOf('PESITSRV'), tlsPort: server.portOf('PESITSRV', { tls: true }) }) + '\n')
createInterface({ input: process.stdin }).on('line', (cmd) => {
  if (cmd === 'reset') {
    fs.fsyncs = 0
    fs.dirSyncs = 0
    process.stdout.write('{}\n')
  } else if (cmd === 'stats') {
    process.stdout.write(JSON.stringify({ fsyncs: fs.fsyncs, dirSyncs: fs.dirSyncs, peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024), sync: lastSync }) + '\n')
  }
})
process.on('SIGTERM', () => { void server.stop().then(() => process.exit(0)) })
