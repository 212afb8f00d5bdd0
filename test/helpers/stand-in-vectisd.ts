/**
 * Test fixture, not the daemon: a process that reads the same environment as `vectisd`, logs pino JSON lines,
 * runs the real cluster transport and discovery, and serves `GET /api/cluster/status` (basic auth) listing itself
 * and the peers that answered it. The harness tests use it so they do not depend on the daemon build; it has no
 * views, no leader and no quorum.
 */
import '../../common/polyfill.js'
import { createServer } from 'node:http'
import { timingSafeEqual } from 'node:crypto'
import { createLogger } from '../../common/logger.js'
import { Libp2pTransport } from '../../cluster/transport.js'
import { Discovery } from '../../cluster/discovery.js'

const env = process.env
const need = (k: string): string => {
  const v = env[k]
  if (v === undefined || v === '') {
    process.stderr.write(`${k} is required\n`)
    process.exit(2)
  }
  return v
}
const name = need('POD_NAME')
const ip = need('POD_IP')
const bindHost = env.VECTIS_BIND_HOST ?? '0.0.0.0'
const clusterPort = Number(env.VECTIS_CLUSTER_PORT ?? 7800)
const httpPort = Number(env.VECTIS_HTTP_PORT ?? 8080)
const clusterName = env.VECTIS_CLUSTER_NAME ?? 'vectis-cluster'
const level = (env.VECTIS_LOG_LEVEL ?? 'info') as 'info'
const logger = createLogger({ level, base: { node: name } })
const auth = `Basic ${Buffer.from(`${need('VECTIS_API_USER')}:${need('VECTIS_API_PASSWORD')}`).toString('base64')}`

const transport = new Libp2pTransport({ logger }, {
  dataDir: need('VECTIS_DATA_DIR'),
  advertiseHost: ip,
  bindHost,
  port: clusterPort,
  clusterName,
  ...(env.VECTIS_CLUSTER_SECRET !== undefined ? { secret: env.VECTIS_CLUSTER_SECRET } : {})
})
const discovery = new Discovery({ logger }, {
  ...(env.VECTIS_DISCOVERY_DNS !== undefined ? { dnsName: env.VECTIS_DISCOVERY_DNS } : {}),
  ...(env.VECTIS_DNS_SERVERS !== undefined ? { dnsServers: env.VECTIS_DNS_SERVERS.split(',') } : {}),
  ...(env.VECTIS_SEEDS !== undefined ? { seeds: env.VECTIS_SEEDS.split(',') } : {}),
  port: clusterPort,
  selfAddresses: [`${ip}:${clusterPort}`]
})

/** address → { name, peerId } of peers that answered. */
const reachable = new Map<string, { name: string, peerId: string }>()
transport.handle((_from, payload) => ({ name, echo: payload }))
transport.onDisconnect((peerId) => {
  for (const [addr, p] of reachable) {
    if (p.peerId === peerId) {
      reachable.delete(addr)
      logger.info({ peer: p.name, address: addr }, 'peer lost')
    }
  }
})
const probe = async (addr: string): Promise<void> => {
  if (reachable.has(addr)) return
  try {
    const r = await transport.request(addr, { hello: name })
    const peer = (r.reply as { name?: string }).name ?? '?'
    reachable.set(addr, { name: peer, peerId: r.peerId })
    logger.info({ peer, address: addr }, 'peer reachable')
  } catch (err) {
    logger.debug({ err, address: addr }, 'peer not reachable')
  }
}
discovery.events.on('peers:changed', ({ peers }) => { for (const a of peers) void probe(a) })
const reprobe = setInterval(() => { for (const a of discovery.peers) void probe(a) }, 300)

const http = createServer((req, res) => {
  const send = (code: number, body: unknown): void => {
    res.writeHead(code, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
  }
  if (req.url === '/healthz') return send(200, { ok: true })
  if (req.url !== '/api/cluster/status') return send(404, { error: 'not found' })
  const given = Buffer.from(req.headers.authorization ?? '')
  const want = Buffer.from(auth)
  if (given.length !== want.length || !timingSafeEqual(given, want)) {
    res.setHeader('www-authenticate', 'Basic realm="vectis"')
    return send(401, { error: 'unauthorized' })
  }
  const members = [{ name, address: ip }, ...[...reachable].map(([a, p]) => ({ name: p.name, address: a.replace(/:\d+$/, '') }))]
  members.sort((a, b) => a.name.localeCompare(b.name))
  send(200, { clusterName, nodeName: name, members, memberCount: members.length })
})

await transport.start()
await discovery.start()
http.listen(httpPort, bindHost)
await new Promise((resolve) => http.once('listening', resolve))
logger.info({ address: transport.address, peerId: transport.peerId, http: httpPort }, 'stand-in started')

let stopping = false
process.on('SIGTERM', () => {
  if (stopping) return
  stopping = true
  logger.info('stopping')
  clearInterval(reprobe)
  http.close()
  void discovery.stop().then(async () => { await transport.stop() }).then(() => {
    logger.info('stopped')
    process.exit(0)
  })
})
