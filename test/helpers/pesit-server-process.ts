/**
 * A PeSIT server alone in its own process, for kill -9 tests: `node --import tsx pesit-server-process.ts
 * '{"dir": "...", "syncIntervalKb": 64}'` (files TESTFILE in dir/inbox, OUTBOX in dir/outbox) prints `{"port": N}` once listening and runs until killed.
 */
import '../../common/polyfill.js'
import { join } from 'node:path'
import { silentLogger } from '../../common/logger.js'
import { NodeDurableFs } from '../../store/durable-fs.js'
import { PesitServer } from '../../transfer/pesit-server.js'
import { nullJournal } from '../../transfer/ports.js'

const opts = JSON.parse(process.argv[2] ?? '{}') as { dir: string, syncIntervalKb?: number }
const server = new PesitServer({ logger: silentLogger(), leadership: { isLeader: () => true }, fs: new NodeDurableFs(), journal: nullJournal }, {
  host: '127.0.0.1',
  config: {
    servers: [{ id: 'PESITSRV', port: 0, maxConnections: 10, syncIntervalKb: opts.syncIntervalKb ?? 64, maxEntitySize: 65535 }],
    partners: [{ id: 'CXCLIENT', password: 'test123', access: 'both' }],
    files: [
      { id: 'TESTFILE', direction: 'receive', directory: join(opts.dir, 'inbox'), filenamePattern: '${partner}_${file}_${transferId}' },
      { id: 'OUTBOX', direction: 'send', directory: join(opts.dir, 'outbox'), filenamePattern: '${file}' }
    ]
  }
})
await server.start()
process.stdout.write(JSON.stringify({ port: server.portOf('PESITSRV') }) + '\n')
process.on('SIGTERM', () => { void server.stop().then(() => process.exit(0)) })
