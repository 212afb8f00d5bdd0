/**
 * Fuzzing of server sessions: a valid push (CONNECT … RELEASE, with multi-article and segmented DTFs and sync
 * points) is mutated at one frame, chosen uniformly so that every state of the session gets hit, and replayed
 * against the server. A case passes when the server answers only well-formed FPDUs and closes the connection
 * within a bound (its own timers included): no crash, no hang.
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

interface Step { fpdu: Fpdu, answer: boolean }

const OK = { type: 0, reason: 0 }

function validPush (transferId: number): Step[] {
  const art = (n: number, fill: number): Buffer => Buffer.alloc(n, fill)
  const steps: Step[] = [
    { fpdu: { type: 'CONNECT', idDst: 0, idSrc: 0x62, params: { 3: 'CXCLIENT', 4: 'PESITSRV', 5: encodeAccessControl('test123'), 6: 2, 7: encodeSyncOption({ intervalKb: 4, window: 1 }), 22: 0 } }, answer: true },
    { fpdu: { type: 'CREATE', idDst: 0, idSrc: 0, params: createParams(transferId, { articleLength: 1500, announcedKb: 64 }) }, answer: true },
    { fpdu: { type: 'ORF', idDst: 0, idSrc: 0, params: { 21: Uint8Array.of(0, 0) } }, answer: true },
    { fpdu: { type: 'WRITE', idDst: 0, idSrc: 0, params: {} }, answer: true }
  ]
  for (let s = 1; s <= 2; s++) {
    steps.push({ fpdu: { type: 'DTF', idDst: 0, idSrc: 2, params: {}, data: packArticles([art(700, s), art(900, s + 1)]) }, answer: false })
    steps.push({ fpdu: { type: 'DTFDA', idDst: 0, idSrc: 0, params: {}, data: art(600, s + 2) }, answer: false })
    steps.push({ fpdu: { type: 'DTFMA', idDst: 0, idSrc: 0, params: {}, data: art(500, s + 3) }, answer: false })
    steps.push({ fpdu: { type: 'DTFFA', idDst: 0, idSrc: 0, params: {}, data: art(400, s + 4) }, answer: false })
    steps.push({ fpdu: { type: 'SYN', idDst: 0, idSrc: 0, params: { 20: s } }, answer: true })
  }
  steps.push({ fpdu: { type: 'DTF', idDst: 0, idSrc: 0, params: {}, data: art(1200, 9) }, answer: false })
  steps.push({ fpdu: { type: 'DTF_END', idDst: 0, idSrc: 0, params: { 2: OK } }, answer: false })
  steps.push({ fpdu: { type: 'TRANS_END', idDst: 0, idSrc: 0, params: { 27: 2 * 3100 + 1200, 28: 5 } }, answer: true })
  steps.push({ fpdu: { type: 'CRF', idDst: 0, idSrc: 0, params: { 2: OK } }, answer: true })
  steps.push({ fpdu: { type: 'DESELECT', idDst: 0, idSrc: 0, params: { 2: OK } }, answer: true })
  steps.push({ fpdu: { type: 'RELEASE', idDst: 0, idSrc: 0x62, params: { 2: OK } }, answer: true })
  return steps
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

export interface FuzzOutcome {
  seed: number
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
export async function runFuzzCase (port: number, seed: number, closeWithinMs: number): Promise<FuzzOutcome> {
  const r = rng(seed)
  const started = Date.now()
  const steps = validPush(1 + Math.floor(r() * 0xfffffe))
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
    const read = async (ms: number): Promise<boolean> => {
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
      }
      return false
    }
    // Valid prefix, answered step by step, so the mutation hits the session in the state the index stands for.
    let closed = false
    for (let s = 0; s < index && !closed; s++) {
      const f = steps[s]!.fpdu
      await ch.write(encodeEntity([encodeFpdu({ ...f, idDst: f.type === 'CONNECT' ? 0 : y })]))
      if (steps[s]!.answer) closed = await read(closeWithinMs)
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
    return { seed, mutation: kind, index, ending, ms: Date.now() - started, ...(diagnostic !== undefined ? { diagnostic } : {}) }
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
