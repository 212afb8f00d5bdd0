/**
 * A cluster transport in its own process, for tests that must kill -9 a peer or run it in a network namespace.
 * Options come as one JSON argument (`Libp2pTransportInit`); it answers every request with `{ echo: payload, pid }`,
 * except `{ forward: "ip:port", timeoutMs? }`, which it sends on to that address and answers with
 * `{ reply }` or `{ error: code }` (so a test can drive member-to-member traffic). Prints one JSON line
 * `{ ready: true, peerId, address }` once listening.
 */
import '../../common/polyfill.js'
import { createLogger } from '../../common/logger.js'
import { Libp2pTransport, type Libp2pTransportInit } from '../../cluster/transport.js'
import { TransportError } from '../../cluster/errors.js'

const init = JSON.parse(process.argv[2] ?? '{}') as Libp2pTransportInit
const logger = createLogger({ level: 'warn', destination: { write: (s: string) => { process.stderr.write(s) } } })
const t = new Libp2pTransport({ logger }, init)
t.handle(async (_from, payload) => {
  const fwd = payload as { forward?: unknown, timeoutMs?: unknown } | null
  if (typeof fwd?.forward === 'string') {
    try {
      const r = await t.request(fwd.forward, 'forwarded', typeof fwd.timeoutMs === 'number' ? { timeoutMs: fwd.timeoutMs } : {})
      return { reply: r.reply, peerId: r.peerId }
    } catch (err) {
      return { error: err instanceof TransportError ? err.code : String(err) }
    }
  }
  return { echo: payload, pid: process.pid }
})
await t.start()
process.stdout.write(JSON.stringify({ ready: true, peerId: t.peerId, address: t.address }) + '\n')
process.on('SIGTERM', () => { void t.stop().then(() => process.exit(0)) })
