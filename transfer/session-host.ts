/**
 * What the two directions of a server session (server-receive.ts, server-send.ts) need from the session that owns
 * the connection, its state and its end.
 */
import type { Logger } from '../common/logger.js'
import type { Params } from './codec.js'
import type { PesitPartnerConfig } from './config-types.js'
import type { FpduChannel } from './fpdu-channel.js'
import type { FpduType } from './fpdu-types.js'
import type { PeerDeviation } from './ports.js'
import type { ServerSessionContext } from './server-session.js'
import type { SessionState } from './session-table.js'

export interface SessionHost {
  readonly ctx: ServerSessionContext
  readonly ch: FpduChannel
  readonly log: Logger
  /** the partner of CONNECT */
  partner: () => PesitPartnerConfig
  /** PI 22 of CONNECT */
  accessType: () => number
  /** the sync-point option agreed in ACONNECT */
  sync: () => { intervalKb: number, window: number }
  /** the requester's connection id */
  peerId: () => number
  state: () => SessionState
  setState: (s: SessionState) => void
  /** how the session was asked to stop, if it was */
  stopping: () => 'abort' | 'handover' | undefined
  /** a hand-over asked the session to stop at its next sync point */
  handingOver: () => boolean
  isFinished: () => boolean
  /** "ab": an IDT with code 8/12/16 forbids a new WRITE or READ until DESELECT */
  interrupted: () => boolean
  setInterrupted: (v: boolean) => void
  send: (type: FpduType, params: Params) => Promise<void>
  /** ends the session with ABORT for an error found outside the FPDU loop */
  fail: (err: unknown) => Promise<void>
  /** a journal write whose failure is logged, not thrown */
  journal: (fn: (j: ServerSessionContext['journal']) => Promise<void>) => Promise<void>
  /** counts a tolerated departure from the protocol (logged once per kind and session) */
  deviation: (kind: PeerDeviation, detail: Record<string, unknown>) => void
}
