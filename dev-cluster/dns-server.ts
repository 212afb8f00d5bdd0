/**
 * An in-process authoritative DNS server for the local HA cluster (`vectis dev-cluster`) and for tests: answers A
 * and SRV for headless service names from a record set its owner changes at will, over UDP and TCP on one port.
 *
 * - `A name` → one record per member IP (as a headless Service with `publishNotReadyAddresses` does).
 * - `SRV name` (or `_anything._tcp.name`) → one target `<hostname>.<name>` per member, with its port; A queries
 *   for those targets answer the member's IP (also put in the additional section).
 * - Unknown names → NXDOMAIN; a name with no members → NOERROR with no answer (NODATA), like an empty Service.
 * - `setFailure('servfail' | 'drop')` simulates a sick resolver.
 *
 * NOT a general DNS server: no recursion, no AAAA answers, no EDNS, no compression tricks beyond dns-packet's.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { createServer, type Server, type Socket } from 'node:net'
import { once } from 'node:events'
import dnsPacket, { type Answer, type Packet, type Question } from 'dns-packet'

export interface DnsMember {
  ip: string
  /** Port announced in SRV answers. */
  port?: number
  /** Label of the SRV target (`<hostname>.<name>`); default derived from the IP. */
  hostname?: string
}

export interface DnsQueryLog {
  name: string
  type: string
  transport: 'udp' | 'tcp'
}

const RCODE_SERVFAIL = 2
const RCODE_NXDOMAIN = 3

/** Queries remembered for inspection; older ones are dropped so a long-running dev cluster does not grow. */
const MAX_QUERY_LOG = 10_000

export class HeadlessDnsServer {
  private udp: UdpSocket | undefined
  private tcp: Server | undefined
  private readonly tcpSockets = new Set<Socket>()
  private readonly zones = new Map<string, DnsMember[]>()
  private failure: 'servfail' | 'drop' | undefined
  private boundPort = 0
  readonly queries: DnsQueryLog[] = []

  constructor (private readonly opts: { host?: string, port?: number, ttl?: number } = {}) {}

  get host (): string { return this.opts.host ?? '127.0.0.1' }
  get port (): number { return this.boundPort }
  /** "ip:port", the form `VECTIS_DNS_SERVERS` takes. */
  get address (): string { return `${this.host}:${this.boundPort}` }

  /** Replaces the members of `name` (a headless service name, no trailing dot). */
  setRecords (name: string, members: DnsMember[]): void {
    this.zones.set(normalise(name), members.map((m) => ({ ...m })))
  }

  addRecord (name: string, member: DnsMember): void {
    const list = this.zones.get(normalise(name)) ?? []
    list.push({ ...member })
    this.zones.set(normalise(name), list)
  }

  removeRecord (name: string, ip: string): void {
    const list = this.zones.get(normalise(name))
    if (list !== undefined) this.zones.set(normalise(name), list.filter((m) => m.ip !== ip))
  }

  /** Removes the name: NXDOMAIN from now on. */
  deleteName (name: string): void { this.zones.delete(normalise(name)) }

  setFailure (mode: 'servfail' | 'drop' | undefined): void { this.failure = mode }

  async start (): Promise<void> {
    if (this.udp !== undefined) return
    // TCP first, on the requested port (0: the kernel's choice), then UDP on the same number: a resolver that
    // falls back to TCP on truncation finds both at one address.
    const tcp = createServer((s) => { this.serveTcp(s) })
    tcp.listen(this.opts.port ?? 0, this.host)
    await once(tcp, 'listening')
    const port = (tcp.address() as { port: number }).port
    const udp = createSocket(this.host.includes(':') ? 'udp6' : 'udp4')
    udp.on('message', (msg, rinfo) => {
      const out = this.answer(msg, 'udp')
      if (out !== undefined) udp.send(out, rinfo.port, rinfo.address)
    })
    try {
      udp.bind(port, this.host)
      await once(udp, 'listening')
    } catch (err) {
      tcp.close()
      udp.close()
      throw err
    }
    this.tcp = tcp
    this.udp = udp
    this.boundPort = port
  }

  async stop (): Promise<void> {
    const udp = this.udp
    const tcp = this.tcp
    this.udp = undefined
    this.tcp = undefined
    for (const s of this.tcpSockets) s.destroy()
    if (udp !== undefined) await new Promise<void>((resolve) => { udp.close(() => { resolve() }) })
    if (tcp !== undefined) await new Promise<void>((resolve) => { tcp.close(() => { resolve() }) })
  }

  private serveTcp (s: Socket): void {
    this.tcpSockets.add(s)
    let buf = Buffer.alloc(0)
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0)
        if (buf.length < 2 + len) break
        const msg = buf.subarray(2, 2 + len)
        buf = buf.subarray(2 + len)
        const out = this.answer(msg, 'tcp')
        if (out !== undefined) {
          const head = Buffer.alloc(2)
          head.writeUInt16BE(out.length)
          s.write(Buffer.concat([head, out]))
        }
      }
    })
    s.on('error', () => { s.destroy() })
    s.on('close', () => { this.tcpSockets.delete(s) })
  }

  private answer (msg: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined {
    let q: Packet
    try {
      q = dnsPacket.decode(msg)
    } catch {
      return undefined
    }
    const questions = q.questions ?? []
    for (const question of questions) this.queries.push({ name: normalise(question.name), type: question.type, transport })
    if (this.queries.length > MAX_QUERY_LOG) this.queries.splice(0, this.queries.length - MAX_QUERY_LOG)
    if (this.failure === 'drop') return undefined
    const res: Packet = { id: q.id ?? 0, type: 'response', flags: dnsPacket.AUTHORITATIVE_ANSWER, questions, answers: [], additionals: [] }
    if (this.failure === 'servfail') {
      res.flags = (res.flags ?? 0) | RCODE_SERVFAIL
      return dnsPacket.encode(res)
    }
    let known = questions.length > 0
    for (const question of questions) known = this.resolveQuestion(question, res) && known
    if (!known) res.flags = (res.flags ?? 0) | RCODE_NXDOMAIN
    return dnsPacket.encode(res)
  }

  /** Fills answers for one question; false when the name does not exist at all. */
  private resolveQuestion (question: Question, res: Packet): boolean {
    const name = normalise(question.name)
    const ttl = this.opts.ttl ?? 1
    const answers = res.answers as Answer[]
    const additionals = res.additionals as Answer[]
    const members = this.zones.get(name)
    if (question.type === 'A') {
      if (members !== undefined) {
        for (const m of members) answers.push({ type: 'A', name: question.name, ttl, data: m.ip })
        return true
      }
      // A target of an SRV answer: `<hostname>.<zone>`.
      for (const [zone, list] of this.zones) {
        for (const m of list) {
          if (`${hostnameOf(m)}.${zone}` === name) {
            answers.push({ type: 'A', name: question.name, ttl, data: m.ip })
            return true
          }
        }
      }
      return false
    }
    if (question.type === 'SRV') {
      const zone = members !== undefined ? name : name.replace(/^_[^.]+\._(tcp|udp)\./, '')
      const list = this.zones.get(zone)
      if (list === undefined) return false
      for (const m of list) {
        const target = `${hostnameOf(m)}.${zone}`
        answers.push({ type: 'SRV', name: question.name, ttl, data: { priority: 0, weight: 100, port: m.port ?? 7800, target } })
        additionals.push({ type: 'A', name: target, ttl, data: m.ip })
      }
      return true
    }
    // Another type for a known name: NODATA.
    return members !== undefined
  }
}

function normalise (name: string): string {
  return name.toLowerCase().replace(/\.$/, '')
}

function hostnameOf (m: DnsMember): string {
  return (m.hostname ?? `m-${m.ip.replace(/[.:]/g, '-')}`).toLowerCase()
}
