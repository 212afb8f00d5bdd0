/**
 * The cluster transport's costs that bound failover: a first request (TCP + private network + noise + yamux +
 * reply), a request on the established connection, the time from kill -9 of a peer process to `onDisconnect`,
 * the time until its address refuses, and the idle memory of one transport process.
 *
 * Usage: node --import tsx --import ./common/polyfill.ts bench/transport.ts [--requests 500] [--dials 20] [--kills 10]
 * Prints one JSON object, then a short table. Loopback addresses 127.0.9.x.
 */
import '../common/polyfill.js'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Libp2pTransport, type Libp2pTransportInit } from '../cluster/transport.js'
import { silentLogger } from '../common/logger.js'

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '500' },
    dials: { type: 'string', default: '20' },
    kills: { type: 'string', default: '10' }
  }
})
const requests = Number(values.requests)
const dials = Number(values.dials)
const kills = Number(values.kills)
for (const [k, v] of [['requests', requests], ['dials', dials], ['kills', kills]] as const) {
  if (!Number.isInteger(v) || v < 1 || v > 100_000) {
    console.error(`--${k} must be an integer 1..100000`)
    process.exit(2)
  }
}

const root = mkdtempSync(join(tmpdir(), 'vectis-bench-transport-'))
let dirs = 0
const dir = (): string => join(root, String(dirs++))
const ms = (from: bigint): number => Number(process.hrtime.bigint() - from) / 1e6

function stats (xs: number[]): { p50: number, p99: number, max: number, n: number } {
  const s = [...xs].sort((a, b) => a - b)
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN
  const r = (x: number): number => Math.round(x * 100) / 100
  return { p50: r(at(0.5)), p99: r(at(0.99)), max: r(s.at(-1) ?? NaN), n: s.length }
}

async function transport (host: string, extra: Partial<Libp2pTransportInit> = {}): Promise<Libp2pTransport> {
  const t = new Libp2pTransport({ logger: silentLogger() }, { dataDir: dir(), advertiseHost: host, bindHost: host, port: 0, requestTimeoutMs: 5000, dialTimeoutMs: 5000, ...extra })
  t.handle((_f, p) => p)
  await t.start()
  return t
}

async function firstRequests (secret: string | undefined): Promise<number[]> {
  const out: number[] = []
  const server = await transport('127.0.9.2', secret !== undefined ? { secret } : {})
  try {
    for (let i = 0; i < dials; i++) {
      const client = await transport('127.0.9.1', secret !== undefined ? { secret } : {})
      const t0 = process.hrtime.bigint()
      await client.request(server.address, i)
      out.push(ms(t0))
      await client.stop()
    }
  } finally {
    await server.stop()
  }
  return out
}

async function steadyRequests (): Promise<number[]> {
  const a = await transport('127.0.9.1')
  const b = await transport('127.0.9.2')
  const out: number[] = []
  try {
    await a.request(b.address, 'warm-up')
    const cpu0 = process.cpuUsage()
    for (let i = 0; i < requests; i++) {
      const t0 = process.hrtime.bigint()
      await a.request(b.address, { i, view: ['vectis-0', 'vectis-1', 'vectis-2'] })
      out.push(ms(t0))
    }
    const cpu = process.cpuUsage(cpu0)
    cpuMsPerRequest = (cpu.user + cpu.system) / 1000 / requests
  } finally {
    await a.stop()
    await b.stop()
  }
  return out
}
/** CPU of both ends (same process) per request: less sensitive to a loaded machine than the latency. */
let cpuMsPerRequest = NaN

async function killToDisconnect (): Promise<{ disconnect: number[], refused: number[], rssMb: number[] }> {
  const a = await transport('127.0.9.1')
  const disconnect: number[] = []
  const refused: number[] = []
  const rssMb: number[] = []
  try {
    for (let i = 0; i < kills; i++) {
      const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/transport-child.ts',
        JSON.stringify({ dataDir: dir(), advertiseHost: '127.0.9.3', bindHost: '127.0.9.3', port: 0 })], { stdio: ['ignore', 'pipe', 'ignore'] })
      try {
        const [line] = await once(createInterface({ input: child.stdout }), 'line') as [string]
        const info = JSON.parse(line) as { address: string, peerId: string }
        await a.request(info.address, 'x')
        const status = readFileSync(`/proc/${child.pid}/status`, 'utf8')
        const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN)
        rssMb.push(kb / 1024)
        const gone = new Promise<void>((resolve) => {
          const off = a.onDisconnect((id) => { if (id === info.peerId) { off(); resolve() } })
        })
        const t0 = process.hrtime.bigint()
        child.kill('SIGKILL')
        await gone
        disconnect.push(ms(t0))
        // Until a dial is refused (a dial racing the dying listener may see a reset first).
        for (let k = 0; k < 100; k++) {
          const err = await a.request(info.address, 'x', { timeoutMs: 1000 }).then(() => undefined, (e: { code?: string }) => e)
          if (err?.code === 'refused') break
        }
        refused.push(ms(t0))
      } finally {
        child.kill('SIGKILL')
      }
    }
  } finally {
    await a.stop()
  }
  return { disconnect, refused, rssMb }
}

try {
  const firstPlain = await firstRequests(undefined)
  const firstSecret = await firstRequests('bench secret 0123456789')
  const steady = await steadyRequests()
  const k = await killToDisconnect()
  const result = {
    firstRequestMs: stats(firstPlain),
    firstRequestWithSecretMs: stats(firstSecret),
    requestMs: stats(steady),
    requestCpuMs: Math.round(cpuMsPerRequest * 1000) / 1000,
    killToDisconnectMs: stats(k.disconnect),
    killToRefusedMs: stats(k.refused),
    idleChildRssMb: stats(k.rssMb),
    node: process.version
  }
  console.log(JSON.stringify(result))
  const row = (name: string, s: { p50: number, p99: number, max: number, n: number }, unit: string): string =>
    `${name.padEnd(28)} ${String(s.p50).padStart(9)} ${String(s.p99).padStart(9)} ${String(s.max).padStart(9)} ${String(s.n).padStart(6)}  ${unit}`
  console.log(`${'measure'.padEnd(28)} ${'p50'.padStart(9)} ${'p99'.padStart(9)} ${'max'.padStart(9)} ${'n'.padStart(6)}`)
  console.log(row('first request', result.firstRequestMs, 'ms'))
  console.log(row('first request (secret)', result.firstRequestWithSecretMs, 'ms'))
  console.log(row('request (connected)', result.requestMs, 'ms'))
  console.log(`${'request CPU (both ends)'.padEnd(28)} ${String(result.requestCpuMs).padStart(9)}  ms per request`)
  console.log(row('kill -9 → onDisconnect', result.killToDisconnectMs, 'ms'))
  console.log(row('kill -9 → refused', result.killToRefusedMs, 'ms'))
  console.log(row('transport process RSS', result.idleChildRssMb, 'MB'))
} finally {
  rmSync(root, { recursive: true, force: true })
}
