/**
 * The PeSIT server of `bench:transfer`, in a process of its own so that its memory and CPU are its own. Plain
 * JavaScript on the built code (`npm run build` first), as the daemon runs: no TypeScript loader in its memory.
 *
 *   node bench/transfer-server.mjs '{"dir": "...", "syncIntervalKb": 1024, "tls": {...}}'
 *
 * TESTFILE receives into dir/inbox, OUTBOX sends from dir/outbox; a plain and (with `tls`) a TLS listener of
 * PESITSRV. Prints `{"port", "tlsPort"}` once listening. Reads commands on stdin, one per line: `stats` prints
 * `{"fsyncs", "dirSyncs", "peakRssMiB", "sync"}` (fsyncs counted since the last `reset`; `sync` the sync option of
 * the last connection), `reset` zeroes the counters.
 */
import '../dist/common/polyfill.js'
import { createInterface } from 'node:readline'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { createLogger } from '../dist/common/logger.js'
import { NodeDurableFs } from '../dist/store/durable-fs.js'
import { PesitServer } from '../dist/transfer/pesit-server.js'
import { nullJournal } from '../dist/transfer/ports.js'

const opts = JSON.parse(process.argv[2] ?? '{}')

/** The real file layer, counting what makes data durable. */
class CountingFs extends NodeDurableFs {
  fsyncs = 0
  dirSyncs = 0
  async open (path, mode) {
    const f = await super.open(path, mode)
    const sync = f.sync.bind(f)
    f.sync = async () => { this.fsyncs++; await sync() }
    return f
  }

  async writeFileAtomic (path, data, o) {
    this.fsyncs++ // its temporary file's; the directory's is counted by syncDir
    await super.writeFileAtomic(path, data, o)
  }

  async syncDir (dir) {
    this.dirSyncs++
    await super.syncDir(dir)
  }
}

let lastSync
// The sessions' logs are read for one thing: the sync option negotiated ("connected" lines).
const sink = new Writable({
  write (chunk, _e, cb) {
    for (const line of chunk.toString().split('\n')) {
      if (!line.includes('"connected"')) continue
      try { lastSync = JSON.parse(line).sync } catch { /* not JSON: ignored */ }
    }
    cb()
  }
})
const fs = new CountingFs()
const server = { id: 'PESITSRV', port: 0, maxConnections: opts.maxConnections ?? 200, syncIntervalKb: opts.syncIntervalKb ?? 1024, maxEntitySize: 65535 }
const pesit = new PesitServer({ logger: createLogger({ level: 'info', destination: sink }), leadership: { isLeader: () => true }, fs, journal: nullJournal }, {
  host: '127.0.0.1',
  config: {
    servers: [server, ...(opts.tls !== undefined ? [{ ...server, tls: opts.tls }] : [])],
    partners: [{ id: 'CXCLIENT', password: 'test123', access: 'both' }],
    files: [
      { id: 'TESTFILE', direction: 'receive', directory: join(opts.dir, 'inbox'), filenamePattern: '${partner}_${file}_${transferId}' },
      { id: 'OUTBOX', direction: 'send', directory: join(opts.dir, 'outbox'), filenamePattern: '${file}' }
    ]
  }
})
await pesit.start()
process.stdout.write(JSON.stringify({ port: pesit.portOf('PESITSRV'), tlsPort: pesit.portOf('PESITSRV', { tls: true }) }) + '\n')
createInterface({ input: process.stdin }).on('line', (cmd) => {
  if (cmd === 'reset') {
    fs.fsyncs = 0
    fs.dirSyncs = 0
    process.stdout.write('{}\n')
  } else if (cmd === 'stats') {
    process.stdout.write(JSON.stringify({ fsyncs: fs.fsyncs, dirSyncs: fs.dirSyncs, peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024), sync: lastSync }) + '\n')
  }
})
process.on('SIGTERM', () => { void pesit.stop().then(() => process.exit(0)) })
