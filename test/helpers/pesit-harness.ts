/** Starts a PeSIT server on a random loopback port over a temporary (or CrashFs) directory, for tests. */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger, type Logger } from '../../common/logger.js'
import { NodeDurableFs, type DurableFs } from '../../store/durable-fs.js'
import type { PesitConfig, ServerTlsConfig } from '../../transfer/config-types.js'
import { PesitServer, type PesitServerInit } from '../../transfer/pesit-server.js'
import type { SentQuery, TransferBegin, TransferEnd, TransferJournalPort, TransferStarted, TransferSyncPoint, PesitMetrics } from '../../transfer/ports.js'

export class MemoryJournal implements TransferJournalPort {
  readonly begun: Array<{ id: string } & TransferBegin> = []
  readonly syncPoints: Array<{ id: string } & TransferSyncPoint> = []
  readonly ended: Array<{ id: string } & TransferEnd> = []
  /** completed sends, keyed as `wasSent` asks: a lookup, not a scan (a long fuzz run makes tens of thousands of rows) */
  private readonly sent = new Set<string>()
  private readonly byId = new Map<string, TransferBegin>()

  begin (t: TransferBegin): TransferStarted {
    const id = `t-${this.begun.length + 1}`
    const transferId = t.pesitTransferId ?? 0x10000 + this.begun.length
    const row = { id, ...t, pesitTransferId: transferId }
    this.begun.push(row)
    this.byId.set(id, row)
    return { id, transferId }
  }

  syncPoint (id: string, p: TransferSyncPoint): void { this.syncPoints.push({ id, ...p }) }
  end (id: string, e: TransferEnd): void {
    this.ended.push({ id, ...e })
    const b = this.byId.get(id)
    if (e.status === 'completed' && b?.direction === 'send' && b.source !== undefined) this.sent.add(sentKey({ partner: b.partner, file: b.file, path: b.path, source: b.source }))
  }

  /** A completed send of this exact source, as the store's journal answers it. */
  wasSent (q: SentQuery): boolean {
    return this.sent.has(sentKey(q))
  }

  /** Records nothing: the replay's row is the store journal's business (journal-adapter.ts). */
  deliveredAgain (): void {}

  /** Rows begun and never ended, as the store's journal counts its in-progress ones, ended as interrupted. */
  interruptOrphans (): number {
    const ended = new Set(this.ended.map((e) => e.id))
    const orphans = this.begun.filter((b) => !ended.has(b.id))
    for (const o of orphans) this.ended.push({ id: o.id, status: 'interrupted', bytes: 0, articles: 0, diagnostic: 'D3-310', message: 'orphan' })
    return orphans.length
  }
}

function sentKey (q: SentQuery): string {
  return [q.partner, q.file, q.path, q.source].join('\u0000')
}

export class CountingMetrics implements PesitMetrics {
  servers = 0
  connections = 0
  transfers = new Map<string, number>()
  bytes = 0
  serverRunning (_id: string, running: boolean): void { this.servers += running ? 1 : -1 }
  connectionOpened (): void { this.connections++ }
  connectionClosed (): void { this.connections-- }
  transferEnded (direction: string, status: string): void {
    const k = `${direction}:${status}`
    this.transfers.set(k, (this.transfers.get(k) ?? 0) + 1)
  }

  transferBytes (_d: string, n: number): void { this.bytes += n }
  deviations = new Map<string, number>()
  peerDeviation (kind: string): void { this.deviations.set(kind, (this.deviations.get(kind) ?? 0) + 1) }
}

export interface Harness {
  server: PesitServer
  port: number
  /** the base directory (the shared directory of the test) */
  base: string
  /** the receive directory (TESTFILE) */
  dir: string
  /** the port of the TLS listener of the same server id, when `tls` was given */
  tlsPort: number
  fs: DurableFs
  journal: MemoryJournal
  metrics: CountingMetrics
  leader: { value: boolean }
  config: PesitConfig
  /** starts another server instance on the same directory and file layer (a restarted or new leader) */
  restart(): Promise<void>
  stop(): Promise<void>
}

export interface HarnessOptions {
  serverId?: string
  syncIntervalKb?: number
  maxEntitySize?: number
  maxConnections?: number
  partners?: PesitConfig['partners']
  /** more virtual files, given the base directory */
  files?: (base: string) => PesitConfig['files']
  /** a TLS listener beside the plain one, for the same server id */
  tls?: ServerTlsConfig
  fs?: DurableFs
  /** base directory (must exist for NodeDurableFs); a temporary one by default */
  baseDir?: string
  init?: Partial<PesitServerInit>
  logger?: Logger
  /** the journal the server writes (the harness's MemoryJournal, `journal`, then records nothing) */
  journalPort?: TransferJournalPort
}

export async function startHarness (opts: HarnessOptions = {}): Promise<Harness> {
  const ownDir = opts.baseDir === undefined
  const base = opts.baseDir ?? await mkdtemp(join(tmpdir(), 'vectis-pesit-'))
  const fs = opts.fs ?? new NodeDurableFs()
  const dir = join(base, 'inbox')
  const config: PesitConfig = {
    servers: [{ id: opts.serverId ?? 'PESITSRV', port: 0, maxConnections: opts.maxConnections ?? 20, syncIntervalKb: opts.syncIntervalKb ?? 1024, maxEntitySize: opts.maxEntitySize ?? 65535 }],
    partners: opts.partners ?? [{ id: 'CXCLIENT', password: 'test123', access: 'both' }, { id: 'READER', password: 'r', access: 'read' }],
    files: [
      { id: 'TESTFILE', direction: 'receive', directory: dir, filenamePattern: '${partner}_${file}_${transferId}' },
      { id: 'OUTBOX', direction: 'send', directory: join(base, 'outbox'), filenamePattern: '${file}' },
      ...opts.files?.(base) ?? []
    ]
  }
  if (opts.tls !== undefined) config.servers.push({ ...config.servers[0]!, tls: opts.tls })
  const journal = new MemoryJournal()
  const metrics = new CountingMetrics()
  const leader = { value: true }
  const make = (): PesitServer => new PesitServer({
    logger: opts.logger ?? silentLogger(), leadership: { isLeader: () => leader.value }, fs, journal: opts.journalPort ?? journal, metrics
  }, { config, host: '127.0.0.1', ...opts.init })
  const h: Harness = {
    server: make(), port: 0, tlsPort: 0, base, dir, fs, journal, metrics, leader, config,
    async restart () {
      await h.server.stop()
      h.server = make()
      await h.server.start()
      h.port = h.server.portOf(config.servers[0]!.id)!
      h.tlsPort = h.server.portOf(config.servers[0]!.id, { tls: true }) ?? 0
    },
    async stop () {
      await h.server.stop()
      if (ownDir) await rm(base, { recursive: true, force: true })
    }
  }
  await h.server.start()
  h.port = h.server.portOf(config.servers[0]!.id)!
  h.tlsPort = h.server.portOf(config.servers[0]!.id, { tls: true }) ?? 0
  return h
}

const root = fileURLToPath(new URL('../..', import.meta.url))

/**
 * A PeSIT server in a process of its own (pesit-server-process.ts) over `dir`, for kill -9 tests: TESTFILE receives
 * into dir/inbox, OUTBOX sends from dir/outbox. The caller kills the child.
 */
export async function startServerProcess (dir: string, syncIntervalKb = 64): Promise<{ child: ChildProcess, port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/pesit-server-process.ts', JSON.stringify({ dir, syncIntervalKb })], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    const t = setTimeout(() => { reject(new Error('server process did not start')) }, 30_000)
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString()
      const line = out.split('\n').find((l) => l.startsWith('{'))
      if (line !== undefined) { clearTimeout(t); resolve((JSON.parse(line) as { port: number }).port) }
    })
    child.once('exit', (code) => { clearTimeout(t); reject(new Error(`server process exited ${code}`)) })
  })
  return { child, port }
}
