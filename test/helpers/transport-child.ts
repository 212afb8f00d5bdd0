/**
 * A cluster transport in its own process, for tests that must kill -9 a peer. Options come as one JSON argument
 * (`Libp2pTransportInit`); it answers every request with `{ echo: payload, pid }` and prints one JSON line
 * `{ ready: true, peerId, address }` once listening.
 */
import '../../daemon/polyfill.js'
import { createLogger } from '../../daemon/logger.js'
import { Libp2pTransport, type Libp2pTransportInit } from '../../cluster/transport.js'

const init = JSON.parse(process.argv[2] ?? '{}') as Libp2pTransportInit
const logger = createLogger({ level: 'warn', destination: { write: (s: string) => { process.stderr.write(s) } } })
const t = new Libp2pTransport({ logger }, init)
t.handle((_from, payload) => ({ echo: payload, pid: process.pid }))
await t.start()
process.stdout.write(JSON.stringify({ ready: true, peerId: t.peerId, address: t.address }) + '\n')
process.on('SIGTERM', () => { void t.stop().then(() => process.exit(0)) })
