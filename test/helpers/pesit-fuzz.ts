/**
 * Fuzzing of server sessions: a valid push (CONNECT … RELEASE, with multi-article and segmented DTFs and sync
 * points) or a valid pull (CONNECT, SELECT, ORF, READ, the server's data answered with ACK(SYN)s, TRANS.END …
 * RELEASE) is mutated at one frame, chosen uniformly so that every state of the session gets hit, and replayed
 * against the server; and garbage is sent before or inside a TLS handshake on the TLS listener. A case passes when
 * the server answers only well-formed FPDUs and closes the connection within a bound (its own timers included):
 * no crash, no hang.
 */
import { connect } from 'node:net'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, stat, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  encodeAccessControl, encodeEntity, encodeFpdu, encodeSyncOption, getDiagnostic, packArticles, type Fpdu
} from '../../transfer/codec.js'
import { FPDU_TYPES, type FpduType } from '../../transfer/fpdu-types.js'
import { FpduChannel } from '../../transfer/fpdu-channel.js'
import { formatDiagnostic } from '../../transfer/diagnostics.js'
import { createParams } from './pesit-script.js'

/** Small deterministic PRNG (mulberry32) so a failing case can be replayed from its seed. */
export function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * One requester step: the FPDU, what to read afterwards (`true`: one answer; `false`: nothing; an FPDU type: the
 * server's FPDUs up to that one, as the data of a pull), and the server state the step is sent in.
 */
interface Step { fpdu: Fpdu, answer: boolean | FpduType, state: string }

const OK = { type: 0, reason: 0 }

const connectStep = (access: number): Step => ({
  fpdu: { type: 'CONNECT', idDst: 0, idSrc: 0x62, params: { 3: 'CXCLIENT', 4: 'PESITSRV', 5: encodeAccessControl('test123'), 6: 2, 7: encodeSyncOption({ intervalKb: 4, window: 1 }), 22: access } },
  answer: true,
  state: 'CN01'
})

const closingSteps = (): Step[] => [
  { fpdu: { type: 'CRF', idDst: 0, idSrc: 0, params: { 2: OK } }, answer: true, state: 'OF02' },
  { fpdu: { type: 'DESELECT', idDst: 0, idSrc: 0, params: { 2: OK } }, answer: true, state: 'SF03' },
  { fpdu: { type: 'RELEASE', idDst: 0, idSrc: 0x62, params: { 2: OK } }, answer: true, state: 'CN03' }
]

function validPush (transferId: number): Step[] {
  const art = (n: number, fill: number): Buffer => Buffer.alloc(n, fill)
  const steps: Step[] = [
    connectStep(0),
    { fpdu: { type: 'CREATE', idDst: 0, idSrc: 0, params: createParams(transferId, { articleLength: 1500, announcedKb: 64 }) }, answer: true, state: 'CN03' },
    { fpdu: { type: 'ORF', idDst: 0, idSrc: 0, params: { 21: Uint8Array.of(0, 0) } }, answer: true, state: 'SF03' },
    { fpdu: { type: 'WRITE', idDst: 0, idSrc: 0, params: {} }, answer: true, state: 'OF02' }
  ]
  for (let s = 1; s <= 2; s++) {
    steps.push({ fpdu: { type: 'DTF', idDst: 0, idSrc: 2, params: {}, data: packArticles([art(700, s), art(900, s + 1)]) }, answer: false, state: 'TDE02' })
    steps.push({ fpdu: { type: 'DTFDA', idDst: 0, idSrc: 0, params: {}, data: art(600, s + 2) }, answer: false, state: 'TDE02' })
    steps.push({ fpdu: { type: 'DTFMA', idDst: 0, idSrc: 0, params: {}, data: art(500, s + 3) }, answer: false, state: 'TDE02 (segment)' })
    steps.push({ fpdu: { type: 'DTFFA', idDst: 0, idSrc: 0, params: {}, data: art(400, s + 4) }, answer: false, state: 'TDE02 (segment)' })
    steps.push({ fpdu: { type: 'SYN', idDst: 0, idSrc: 0, params: { 20: s } }, answer: true, state: 'TDE02' })
  }
  steps.push({ fpdu: { type: 'DTF', idDst: 0, idSrc: 0, params: {}, data: art(1200, 9) }, answer: false, state: 'TDE02' })
  steps.push({ fpdu: { type: 'DTF_END', idDst: 0, idSrc: 0, params: { 2: OK } }, answer: false, state: 'TDE02' })
  steps.push({ fpdu: { type: 'TRANS_END', idDst: 0, idSrc: 0, params: { 27: 2 * 3100 + 1200, 28: 5 } }, answer: true, state: 'TDE07' })
  return [...steps, ...closingSteps()]
}

/**
 * The files a pull fuzz case selects (`fuzz-<k>.bin`, one of `copies`, so that parallel cases rarely find theirs
 * busy): 10000 bytes in 1018-byte articles (entity 1024), a SYN every 4 articles.
 */
export const PULL_FILE = { size: 10_000, copies: 32 }

function validPull (name: string): Step[] {
  const articles = Math.ceil(PULL_FILE.size / 1018)
  return [
    connectStep(1),
    { fpdu: { type: 'SELECT', idDst: 0, idSrc: 0, params: { 9: { 11: 0, 12: `OUTBOX/${name}` }, 13: 0, 14: 0xe0, 17: 0, 25: 1024 } }, answer: true, state: 'CN03' },
    { fpdu: { type: 'ORF', idDst: 0, idSrc: 0, params: { 21: Uint8Array.of(0, 0) } }, answer: true, state: 'SF03' },
    // ACK(READ), then the data up to SYN 1: the server waits for its acknowledgement (window 1).
    { fpdu: { type: 'READ', idDst: 0, idSrc: 0, params: { 18: 0 } }, answer: 'SYN', state: 'OF02' },
    { fpdu: { type: 'ACK_SYN', idDst: 0, idSrc: 0, params: { 20: 1 } }, answer: 'SYN', state: 'TDL02' },
    { fpdu: { type: 'ACK_SYN', idDst: 0, idSrc: 0, params: { 20: 2 } }, answer: 'DTF_END', state: 'TDL02' },
    { fpdu: { type: 'TRANS_END', idDst: 0, idSrc: 0, params: { 27: PULL_FILE.size, 28: articles } }, answer: true, state: 'TDL07' },
    ...closingSteps()
  ]
}

const ALL_TYPES = Object.keys(FPDU_TYPES) as FpduType[]

/** A structurally valid FPDU of a random type (often unexpected where it lands). */
function randomFpdu (r: () => number, y: number): Uint8Array {
  const type = ALL_TYPES[Math.floor(r() * ALL_TYPES.length)]!
  const samples: Partial<Record<FpduType, Fpdu['params']>> = {
    CONNECT: { 3: 'CXCLIENT', 4: 'PESITSRV', 6: 2, 22: 0 }, ACONNECT: { 6: 2 }, RCONNECT: { 2: OK }, RELEASE: { 2: OK },
    ABORT: { 2: { type: 3, reason: 311 } }, READ: { 18: 0 }, SYN: { 20: Math.floor(r() * 4) + 1 }, DTF_END: { 2: OK },
    RESYN: { 2: OK, 18: 0 }, IDT: { 2: OK, 19: [4, 8, 12, 16][Math.floor(r() * 4)]! }, TRANS_END: { 27: Math.floor(r() * 9000), 28: Math.floor(r() * 9) },
    CREATE: createParams(Math.floor(r() * 0xfffff) + 1), SELECT: { 9: { 11: 0, 12: 'OUTBOX' }, 13: 0, 17: 0, 25: 4096 },
    DESELECT: { 2: OK }, CRF: { 2: OK }, ORF: {}, MSG: { 9: { 11: 0, 12: 'M' }, 13: 1 }, MSGDM: { 9: { 11: 0, 12: 'M' }, 13: 1 },
    ACK_CREATE: { 2: OK, 25: 4096 }, ACK_SELECT: { 2: OK, 9: { 11: 0, 12: 'F' }, 13: 1, 25: 4096 }, ACK_DESELECT: { 2: OK },
    ACK_ORF: { 2: OK }, ACK_CRF: { 2: OK }, ACK_READ: { 2: OK }, ACK_WRITE: { 2: OK, 18: 0 }, ACK_TRANS_END: { 2: OK },
    ACK_SYN: { 20: 1 }, ACK_RESYN: { 18: 0 }, ACK_MSG: { 2: OK }
  }
  const data = type.startsWith('DTF') && type !== 'DTF_END' ? Buffer.alloc(1 + Math.floor(r() * 50), 7) : undefined
  return encodeFpdu({ type, idDst: y, idSrc: 0, params: samples[type] ?? {}, ...(data !== undefined ? { data } : {}) })
}

export const MUTATIONS = ['flip', 'truncate', 'length', 'type', 'replace', 'drop', 'duplicate', 'garbage-entity', 'garbage-raw', 'entity-length', 'li', 'extend'] as const
export type Mutation = typeof MUTATIONS[number]

/** Applies one mutation to the entity stream at index i; returns the new list of wire chunks. */
function mutate (r: () => number, entities: Uint8Array[], i: number, kind: Mutation, y: number): Uint8Array[] {
  const out: Uint8Array[] = entities.map((e) => Uint8Array.from(e))
  const e = out[i]!
  const pick = (n: number): number => Math.floor(r() * n)
  switch (kind) {
    case 'flip': {
      for (let k = 0, n = 1 + pick(3); k < n; k++) {
        const at = 2 + pick(e.length - 2)
        e[at] = e[at]! ^ (1 << pick(8))
      }
      break
    }
    case 'truncate': {
      const cut = 3 + pick(Math.max(1, e.length - 3))
      const t = e.subarray(0, cut)
      if (r() < 0.5) { t[0] = (cut - 2) >> 8; t[1] = (cut - 2) & 0xff }
      out[i] = t
      break
    }
    case 'length': { e[2] = pick(256); e[3] = pick(256); break }
    case 'type': { const [p, c] = FPDU_TYPES[ALL_TYPES[pick(ALL_TYPES.length)]!]; e[4] = p; e[5] = c; break }
    case 'replace': out[i] = encodeEntity([randomFpdu(r, y)]); break
    case 'drop': out.splice(i, 1); break
    case 'duplicate': out.splice(i, 0, Uint8Array.from(e)); break
    case 'garbage-entity': {
      const g = Buffer.alloc(1 + pick(40))
      for (let k = 0; k < g.length; k++) g[k] = pick(256)
      out.splice(i, 0, Buffer.concat([Uint8Array.of(0, g.length), g]))
      break
    }
    case 'garbage-raw': {
      const g = Buffer.alloc(1 + pick(12))
      for (let k = 0; k < g.length; k++) g[k] = pick(256)
      out.splice(i, 0, g)
      break
    }
    case 'entity-length': { const n = pick(65536); e[0] = n >> 8; e[1] = n & 0xff; break }
    case 'li': { if (e.length > 9) e[9 + pick(e.length - 9)] = [0, 0xff, 1, 254][pick(4)]!; break }
    case 'extend': {
      const extra = Buffer.alloc(1 + pick(6), pick(256))
      const x = Buffer.concat([e, extra])
      const len = x.length - 2
      x[0] = len >> 8; x[1] = len & 0xff
      if (r() < 0.7) { x[2] = len >> 8; x[3] = len & 0xff }
      out[i] = x
      break
    }
  }
  return out
}

export type Scenario = 'push' | 'pull'

export interface FuzzOutcome {
  seed: number
  scenario: Scenario
  /** the server state the mutated frame was sent in */
  state: string
  mutation: Mutation
  index: number
  /** what ended the session: the last FPDU type received, or 'closed' */
  ending: string
  diagnostic?: string
  ms: number
}

export class FuzzFailure extends Error {
  override name = 'FuzzFailure'
}

/**
 * Runs one case. Throws FuzzFailure when the server sent something malformed or did not close within
 * `closeWithinMs` after the script ended.
 */
export async function runFuzzCase (port: number, seed: number, closeWithinMs: number, scenario: Scenario = 'push'): Promise<FuzzOutcome> {
  const r = rng(seed)
  const started = Date.now()
  const pushId = 1 + Math.floor(r() * 0xfffffe)
  const steps = scenario === 'push' ? validPush(pushId) : validPull(`fuzz-${pushId % PULL_FILE.copies}.bin`)
  const kind = MUTATIONS[Math.floor(r() * MUTATIONS.length)]!
  const index = Math.floor(r() * steps.length)
  const socket = connect({ host: '127.0.0.1', port, noDelay: true })
  socket.on('error', () => {})
  const ch = new FpduChannel(socket)
  let ending = 'none'
  let diagnostic: string | undefined
  try {
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve).once('error', reject) })
    let y = 0
    /** Reads one FPDU; true once the server has ended the session. `until`: the type that ends a run of data. */
    const read = async (ms: number, until?: FpduType): Promise<boolean> => {
      const ev = await ch.next(ms).catch((e: Error) => e)
      if (ev instanceof Error) {
        if (/no FPDU within/.test(ev.message)) return false
        throw new FuzzFailure(`seed ${seed}: the server sent a malformed FPDU: ${ev.message}`)
      }
      if (ev.kind === 'end') { ending = ending === 'none' ? 'closed' : ending; return true }
      if (ev.kind === 'fpdu') {
        ending = ev.fpdu.type
        const d = getDiagnostic(ev.fpdu.params)
        if (d !== undefined) diagnostic = formatDiagnostic(d)
        if (ev.fpdu.type === 'ACONNECT') y = ev.fpdu.idSrc
        if (ev.fpdu.type === 'ABORT' || ev.fpdu.type === 'RCONNECT' || ev.fpdu.type === 'RELCONF') return await read(closeWithinMs).then(() => true)
        // The data of a pull: keep reading up to the FPDU that asks the requester to act.
        if (until !== undefined && ev.fpdu.type !== until) return await read(ms, until)
      }
      return false
    }
    // Valid prefix, answered step by step, so the mutation hits the session in the state the index stands for.
    let closed = false
    for (let s = 0; s < index && !closed; s++) {
      const f = steps[s]!.fpdu
      await ch.write(encodeEntity([encodeFpdu({ ...f, idDst: f.type === 'CONNECT' ? 0 : y })]))
      const answer = steps[s]!.answer
      if (answer !== false) closed = await read(closeWithinMs, answer === true ? undefined : answer)
    }
    if (!closed) {
      const rest = steps.slice(index).map((st) => encodeEntity([encodeFpdu({ ...st.fpdu, idDst: st.fpdu.type === 'CONNECT' ? 0 : y })]))
      const wire = mutate(r, rest, 0, kind, y)
      for (const w of wire) {
        if (socket.destroyed || socket.writableEnded) break
        await ch.write(w).catch(() => {})
      }
      const deadline = Date.now() + closeWithinMs
      while (!closed) {
        const left = deadline - Date.now()
        if (left <= 0) throw new FuzzFailure(`seed ${seed} (${kind} at ${index}): the server did not close within ${closeWithinMs} ms`)
        closed = await read(left)
      }
    }
    return { seed, scenario, state: steps[index]?.state ?? 'end', mutation: kind, index, ending, ms: Date.now() - started, ...(diagnostic !== undefined ? { diagnostic } : {}) }
  } finally {
    socket.destroy()
  }
}

/** A scratch directory on tmpfs when the machine has one: fuzzing measures the protocol code, not the disk. */
export async function fuzzScratchDir (): Promise<string> {
  return await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'vectis-fuzz-'))
}

/** Removes files not modified for `olderThanMs` (left by aborted fuzz sessions), keeping the directory small. */
export async function sweepOldFiles (dir: string, olderThanMs: number): Promise<number> {
  let n = 0
  const now = Date.now()
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    const p = join(dir, f)
    const st = await stat(p).catch(() => undefined)
    if (st !== undefined && st.isFile() && now - st.mtimeMs > olderThanMs) {
      await unlink(p).catch(() => {})
      n++
    }
  }
  return n
}

// ---------------------------------------------------------------------------------------------------------
// Garbage before or inside a TLS handshake

export const TLS_CASES = ['garbage', 'record-garbage', 'mutated-hello', 'truncated-hello', 'hello-then-garbage'] as const
export type TlsCase = typeof TLS_CASES[number]

/** A real ClientHello, as Node's TLS client sends it first: captured once by a listener that only records. */
export async function captureClientHello (): Promise<Buffer> {
  const { createServer } = await import('node:net')
  const { connect: tlsConnect } = await import('node:tls')
  return await new Promise((resolve, reject) => {
    const server = createServer((s) => {
      s.once('data', (b: Buffer) => { resolve(b); s.destroy(); server.close() })
    })
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port
      const c = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false })
      c.on('error', () => {})
      setTimeout(() => { c.destroy() }, 2000).unref()
    })
    server.on('error', reject)
  })
}

/**
 * One TLS case against a TLS listener: random bytes, a TLS record of random content, a real ClientHello with
 * bytes flipped, cut short, or followed by garbage. The server must close the connection within `closeWithinMs`.
 */
export async function runTlsFuzzCase (port: number, seed: number, hello: Buffer, closeWithinMs: number): Promise<{ kind: TlsCase, ms: number }> {
  const r = rng(seed)
  const pick = (n: number): number => Math.floor(r() * n)
  const kind = TLS_CASES[pick(TLS_CASES.length)]!
  const random = (n: number): Buffer => { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = pick(256); return b }
  let wire: Buffer
  switch (kind) {
    case 'garbage': wire = random(1 + pick(3000)); break
    case 'record-garbage': { const body = random(pick(2000)); wire = Buffer.concat([Buffer.from([0x16, 3, pick(4), body.length >> 8, body.length & 0xff]), body]); break }
    case 'mutated-hello': {
      wire = Buffer.from(hello)
      for (let k = 0, n = 1 + pick(8); k < n; k++) { const at = pick(wire.length); wire[at] = wire[at]! ^ (1 << pick(8)) }
      break
    }
    case 'truncated-hello': wire = hello.subarray(0, 1 + pick(hello.length - 1)); break
    case 'hello-then-garbage': wire = Buffer.concat([hello, random(1 + pick(500))]); break
  }
  const started = Date.now()
  const socket = connect({ host: '127.0.0.1', port, noDelay: true })
  socket.on('error', () => {})
  socket.on('data', () => {}) // whatever the server answers (alerts, a ServerHello) is read and dropped
  try {
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve).once('error', reject) })
    socket.write(wire)
    // A truncated hello leaves the server waiting: its handshake timeout closes it.
    const closed = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => { resolve(false) }, closeWithinMs)
      socket.once('close', () => { clearTimeout(t); resolve(true) })
    })
    if (!closed) throw new FuzzFailure(`seed ${seed} (tls ${kind}): the server did not close within ${closeWithinMs} ms`)
    return { kind, ms: Date.now() - started }
  } finally {
    socket.destroy()
  }
}

/** Puts the pull fuzz cases' files in the harness's outbox. */
export async function writePullFiles (outbox: string): Promise<void> {
  const { mkdir, writeFile } = await import('node:fs/promises')
  await mkdir(outbox, { recursive: true })
  const data = Buffer.alloc(PULL_FILE.size)
  for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff
  for (let k = 0; k < PULL_FILE.copies; k++) await writeFile(join(outbox, `fuzz-${k}.bin`), data)
}
