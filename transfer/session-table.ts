/**
 * The PeSIT session state machine as data (docs/pesit.md §6), one table per role, both transfer directions: for
 * each state, the FPDU types the peer may send and the state that follows when the FPDU is handled
 * successfully. Handlers may stay in the current state on a refusal (negative ACK). Anything absent from the
 * table is a protocol error: ABORT D3-311.
 *
 * The spec's "B" (server decision pending) and "A" (requester waiting) states collapse: an FPDU is handled before
 * the next is read. Two kinds of work go on beside that order, each owning its own effects: the durable
 * checkpoints of sync points (queued, acknowledged in order) and the emission of a pulled file.
 */
import type { FpduType } from './fpdu-types.js'

export type Role = 'server' | 'requester'

export type SessionState =
  /** no PeSIT connection (TCP accepted, or closed) */
  | 'CN01'
  /** requester: CONNECT sent, waiting ACONNECT/RCONNECT */
  | 'CN02'
  /** connected, no file selected */
  | 'CN03'
  /** requester: RELEASE sent */
  | 'CN04'
  /** requester: CREATE / SELECT sent */
  | 'SF01' | 'SF02'
  /** file selected */
  | 'SF03'
  /** requester: DESELECT sent */
  | 'SF04'
  /** requester: ORF sent */
  | 'OF01'
  /** file open, data phase idle */
  | 'OF02'
  /** requester: CRF sent */
  | 'OF03'
  /** write (push, requester → server): WRITE sent (requester) / data flowing / DTF.END done / TRANS.END sent */
  | 'TDE01' | 'TDE02' | 'TDE07' | 'TDE08'
  /** read (pull, server → requester): READ sent (requester) / data flowing / DTF.END done / TRANS.END sent */
  | 'TDL01' | 'TDL02' | 'TDL07' | 'TDL08'
  /** IDT sent by this side, waiting ACK(IDT) */
  | 'TDX05'
  /** segmented message being received (server) / message sent, waiting ACK(MSG) (requester) */
  | 'MG01' | 'MG02'

type Table = Partial<Record<SessionState, Partial<Record<FpduType, SessionState>>>>

const DATA_IN = { DTF: 'TDE02', DTFDA: 'TDE02', DTFMA: 'TDE02', DTFFA: 'TDE02', SYN: 'TDE02' } as const

/** What a server accepts from the requester. */
const SERVER: Table = {
  CN01: { CONNECT: 'CN03' },
  CN03: { CREATE: 'SF03', SELECT: 'SF03', RELEASE: 'CN01', MSG: 'CN03', MSGDM: 'MG01' },
  MG01: { MSGMM: 'MG01', MSGFM: 'CN03' },
  SF03: { ORF: 'OF02', DESELECT: 'CN03' },
  OF02: { WRITE: 'TDE02', READ: 'TDL02', CRF: 'SF03' },
  TDE02: { ...DATA_IN, DTF_END: 'TDE07', IDT: 'OF02', RESYN: 'TDE02' },
  TDE07: { TRANS_END: 'OF02', IDT: 'OF02', RESYN: 'TDE02' },
  TDL02: { ACK_SYN: 'TDL02', IDT: 'OF02', RESYN: 'TDL02' },
  TDL07: { ACK_SYN: 'TDL07', TRANS_END: 'OF02', IDT: 'OF02', RESYN: 'TDL02' },
  // Our IDT is pending: data and ends already in flight are discarded (the IDT has priority), a crossing IDT is
  // answered, ACK(IDT) ends it.
  TDX05: { ACK_IDT: 'OF02', IDT: 'OF02', DTF: 'TDX05', DTFDA: 'TDX05', DTFMA: 'TDX05', DTFFA: 'TDX05', SYN: 'TDX05', DTF_END: 'TDX05', TRANS_END: 'TDX05', ACK_SYN: 'TDX05' }
}

/** What a requester accepts from the server. */
const REQUESTER: Table = {
  CN02: { ACONNECT: 'CN03', RCONNECT: 'CN01' },
  CN04: { RELCONF: 'CN01' },
  SF01: { ACK_CREATE: 'SF03' },
  SF02: { ACK_SELECT: 'SF03' },
  SF04: { ACK_DESELECT: 'CN03' },
  OF01: { ACK_ORF: 'OF02' },
  OF03: { ACK_CRF: 'SF03' },
  MG02: { ACK_MSG: 'CN03' },
  TDE01: { ACK_WRITE: 'TDE02' },
  TDE02: { ACK_SYN: 'TDE02', IDT: 'OF02', RESYN: 'TDE02' },
  TDE07: { ACK_SYN: 'TDE07', IDT: 'OF02', RESYN: 'TDE02' },
  // The server's hand-over IDT may cross TRANS.END: it has priority (docs/pesit.md §9.4).
  TDE08: { ACK_TRANS_END: 'OF02', ACK_SYN: 'TDE08', IDT: 'OF02' },
  TDL01: { ACK_READ: 'TDL02' },
  TDL02: { DTF: 'TDL02', DTFDA: 'TDL02', DTFMA: 'TDL02', DTFFA: 'TDL02', SYN: 'TDL02', DTF_END: 'TDL07', IDT: 'OF02', RESYN: 'TDL02' },
  TDL08: { ACK_TRANS_END: 'OF02' },
  TDX05: { ACK_IDT: 'OF02', IDT: 'OF02', ACK_SYN: 'TDX05', DTF: 'TDX05', DTFDA: 'TDX05', DTFMA: 'TDX05', DTFFA: 'TDX05', SYN: 'TDX05', DTF_END: 'TDX05' }
}

const TABLES: Record<Role, Table> = { server: SERVER, requester: REQUESTER }

/**
 * The state after `type` arrives in `state`, or undefined when that FPDU is not valid there. ABORT is valid in
 * every state and leads to CN01.
 */
export function transition (role: Role, state: SessionState, type: FpduType): SessionState | undefined {
  if (type === 'ABORT') return 'CN01'
  return TABLES[role][state]?.[type]
}

/** Every FPDU type the peer may send in `state` (for logs and tests). */
export function expectedIn (role: Role, state: SessionState): FpduType[] {
  return [...Object.keys(TABLES[role][state] ?? {}) as FpduType[], 'ABORT']
}

/** True in the states where file data flows (timeouts use the data-phase watchdog there). */
export function isDataPhase (state: SessionState): boolean {
  return state.startsWith('TD')
}
