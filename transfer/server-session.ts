/**
 * One PeSIT connection on the server side (docs/pesit.md §6–§8): CONNECT, then for a push CREATE, ORF, WRITE,
 * DTF* / SYN, DTF.END, TRANS.END (server-receive.ts), for a pull SELECT, ORF, READ, the emission of the file and
 * TRANS.END (server-send.ts), then CRF, DESELECT, RELEASE. This part owns the connection, its state and its end,
 * and dispatches; the two directions reach it through `SessionHost`. Every received FPDU is checked against the state table
 * (`session-table.ts`) before anything else; an FPDU not valid in the current state, a malformed one, a timer
 * expiry or a local failure ends the session with ABORT and the matching diagnostic. A session never throws to
 * its caller: whatever happens ends in `run()` resolving, so one bad partner cannot disturb another session.
 *
 * Leader-only effects (ACK(SYN), the rename of a completed file, ACK(TRANS.END)) check the lease synchronously
 * right before they happen; a session that finds it lost the lease aborts with D3-312 instead of acknowledging.
 *
 * NOT implemented (refused cleanly): RESYN (PI 23 is answered 0, a RESYN is a protocol error D3-306), messages
 * (ACK(MSG) D2-209), CRC (RCONNECT D3-315), compression (ACK(ORF) answers "none").
 */
import { timingSafeEqual, createHash } from 'node:crypto'
import type { Logger } from '../common/logger.js'
import type { DurableFs } from '../store/durable-fs.js'
import { NotLeaderError as JournalNotLeaderError } from '../store/errors.js'
import {
  decodeAccessControl, decodePreconnection, decodeSyncOption, encodeSyncOption, getBytes, getDiagnostic,
  getNumber, getString, PRECONNECTION_ACK, PRECONNECTION_NAK, type Fpdu, type Params
} from './codec.js'
import { DIAG, describeDiagnostic, type Diagnostic } from './diagnostics.js'
import {
  ConnectionLostError, NotReplicatedError, PesitError, PesitTimeoutError, ProtocolError, UnexpectedFpduError
} from './errors.js'
import type { FpduChannel } from './fpdu-channel.js'
import { fpduDisplayName, type FpduType } from './fpdu-types.js'
import type { PesitFileConfig, PesitPartnerConfig, PesitServerConfig } from './config-types.js'
import type { PeerDeviation, PesitMetrics, TransferJournalPort, TransferOutcome, TransferProgressPort } from './ports.js'
import { ReceiveSide } from './server-receive.js'
import { SendSide } from './server-send.js'
import type { SessionHost } from './session-host.js'
import { transition, expectedIn, isDataPhase, type SessionState } from './session-table.js'
import type { FaultPoint } from './fault-injection.js'

export interface SessionTimeouts {
  /** Tc: TCP accept → CONNECT (and → pre-connection) */
  connectMs: number
  /** Tp: waiting for the requester's next FPDU while a file is selected or data flows */
  readMs: number
  /** Td: idle in CN03 (connected, no file) */
  idleMs: number
  /** after ABORT / RELCONF, how long the peer gets to close before the socket is destroyed */
  closeGraceMs: number
}

export const DEFAULT_SESSION_TIMEOUTS: SessionTimeouts = {
  connectMs: 30_000,
  readMs: 30_000,
  idleMs: 300_000,
  closeGraceMs: 1_000
}

/** Largest sync window the server agrees to (PI 7 byte 3): bounds the unacknowledged data it must hold. */
export const DEFAULT_MAX_SYNC_WINDOW = 16
/** Largest segmented message (MSGDM…MSGFM) buffered before the session is aborted. */
const MAX_MESSAGE_BYTES = 64 * 1024

export interface ServerSessionContext {
  server: PesitServerConfig
  partners: ReadonlyMap<string, PesitPartnerConfig>
  files: ReadonlyMap<string, PesitFileConfig>
  fs: DurableFs
  journal: TransferJournalPort
  leadership: { isLeader(): boolean }
  logger: Logger
  metrics: PesitMetrics
  progress?: TransferProgressPort
  /** keys of transfers in progress on this server: a second CREATE for the same one gets D2-207 */
  activeTransfers: Set<string>
  /** paths of the files being sent, by every listener: a second SELECT of one gets D2-207 */
  activeSources: Set<string>
  /** fault-injection points enabled (tests only) */
  faults?: ReadonlySet<FaultPoint>
  /** the epoch of this member's leadership (0 when it has none): partial files are named by it */
  epoch?: () => number
  timeouts: SessionTimeouts
  maxSyncWindow: number
  /** set when the connection limit is reached: CONNECT is answered RCONNECT with this diagnostic */
  refuseWith?: Diagnostic
  /** over TLS with a client certificate the listener's CA verified: its subject CN */
  clientCertificateCn?: string
}

type StopKind = 'abort' | 'handover'

export class ServerSession {
  state: SessionState = 'CN01'
  private x: number | undefined
  private partner: PesitPartnerConfig | undefined
  private accessType = 2
  private sync = { intervalKb: 0, window: 0 }
  private preconnectionSeen = false
  /** "ab": an IDT with code 8/12/16 forbids a new WRITE until DESELECT */
  private interrupted = false
  private messageBytes = 0
  private stopping: StopKind | undefined
  /** TRANS.END is being handled (the file committed, ACK(TRANS.END) on its way): a hand-over lets it finish */
  private ending = false
  private finished = false
  /** why the session ended, for the journal row of an unfinished transfer */
  private endReason: { diag: Diagnostic, why: string } | undefined
  private readonly log: Logger
  private readonly sendSide: SendSide
  private readonly receiveSide: ReceiveSide
  private readonly deviationsLogged = new Set<PeerDeviation>()

  constructor (private readonly ch: FpduChannel, private readonly ctx: ServerSessionContext, readonly y: number, remote: string) {
    this.log = ctx.logger.child({ conn: y, remote })
    const host: SessionHost = {
      ctx, ch, log: this.log,
      partner: () => this.partner!,
      accessType: () => this.accessType,
      sync: () => this.sync,
      peerId: () => this.x ?? 0,
      state: () => this.state,
      setState: (s) => { this.state = s },
      stopping: () => this.stopping,
      handingOver: () => this.stopping === 'handover',
      isFinished: () => this.finished,
      interrupted: () => this.interrupted,
      setInterrupted: (v) => { this.interrupted = v },
      send: async (type, params) => { await this.send(type, params) },
      fail: async (err) => { if (!this.finished) await this.fail(err) },
      journal: async (fn) => { await this.journal(fn) },
      deviation: (kind, detail) => { this.deviation(kind, detail) }
    }
    this.sendSide = new SendSide(host)
    this.receiveSide = new ReceiveSide(host)
    ch.onOversizeEntity = (size) => { this.deviation('entity-over-negotiated-size', { size, negotiated: this.receiveSide.entitySize }) }
  }

  get isFinished (): boolean { return this.finished }

  /** Processes the connection until it ends. Never rejects. */
  async run (): Promise<void> {
    try {
      while (!this.finished) {
        let ev
        try {
          ev = await this.ch.next(this.timeoutFor())
        } catch (err) {
          // The requester may be silent because it waits for an ACK(SYN) our own disk is still making durable, or
          // because it only receives while we send a file.
          if (err instanceof PesitTimeoutError && this.receiveSide.checkpointRunning) {
            await this.receiveSide.checkpointsDone()
            continue
          }
          if (err instanceof PesitTimeoutError && this.state === 'TDL02' && this.sendSide.streaming) continue
          await this.fail(err)
          break
        }
        if (ev.kind === 'end') {
          await this.lost(new ConnectionLostError(this.stopping !== undefined ? 'connection closed at stop' : 'connection closed by the peer'))
          break
        }
        try {
          if (ev.kind === 'preconnection') await this.onPreconnection(ev.message, ev.framed)
          else await this.onFpdu(ev.fpdu)
        } catch (err) {
          await this.fail(err)
        }
      }
    } catch (err) {
      // A bug in the error path itself: log it and drop the connection rather than take the server down.
      this.log.error({ err }, 'session failed unexpectedly')
      this.ch.destroy()
    } finally {
      // Released here, after the last handler returned, so no file operation is cut off half-way.
      const end = this.endReason ?? { diag: DIAG.NETWORK_INCIDENT, why: 'session ended' }
      await this.releaseTransfer('interrupted', end.diag, end.why)
      this.finished = true
    }
  }

  /**
   * Ends the session from outside: `abort` at once (ABORT D3-312); `handover` at the next sync point with IDT
   * (restartable) when data is flowing, at once otherwise. Returns immediately; `run()` resolves when done.
   */
  requestStop (kind: StopKind): void {
    if (this.finished || this.stopping === 'abort') return
    this.stopping = kind
    if (kind === 'handover' && (this.ending || this.state === 'TDE07' || this.state === 'TDL07')) {
      // At the end of a transfer (TRANS.END due or being handled): the requester must learn that its file arrived
      // (bounded by the drain). No new transfer starts on this connection afterwards.
      this.log.info('hand-over: the session finishes the end of its transfer first')
      return
    }
    if (kind === 'handover' && ((this.state === 'TDE02' && this.sync.intervalKb > 0) || (this.state === 'TDL02' && this.sendSide.hasSyncPoints))) {
      this.log.info('hand-over: transfer will be interrupted at its next sync point')
      return
    }
    void this.abort(DIAG.SERVICE_CLOSED, kind === 'handover' ? 'leadership handed over' : 'server stopping')
  }

  private timeoutFor (): number {
    const t = this.ctx.timeouts
    if (this.state === 'CN01') return t.connectMs
    if (this.state === 'CN03') return t.idleMs
    return t.readMs
  }

  // ---------------------------------------------------------------------------------------------------------

  private async onPreconnection (message: Uint8Array, framed: boolean): Promise<void> {
    if (this.state !== 'CN01' || this.preconnectionSeen) throw new ProtocolError('pre-connection message out of place')
    this.preconnectionSeen = true
    const p = decodePreconnection(message)
    const partner = this.ctx.partners.get(p.identifier)
    const ok = partner !== undefined && passwordEquals(partner.password, p.password)
    const answer = ok ? PRECONNECTION_ACK : PRECONNECTION_NAK
    await this.ch.write(framed ? Buffer.concat([Uint8Array.of(0, answer.length), answer]) : answer)
    if (!ok) {
      this.log.warn({ identifier: p.identifier }, 'pre-connection refused')
      await this.finish()
    }
  }

  private async onFpdu (f: Fpdu): Promise<void> {
    if (f.type !== 'CONNECT' && f.idDst !== this.y) {
      throw new ProtocolError(`${fpduDisplayName(f.type)} addressed to connection ${f.idDst}, ours is ${this.y}`)
    }
    if (f.type === 'ABORT') return await this.onAbort(f)
    const next = transition('server', this.state, f.type)
    if (next === undefined) {
      this.log.warn({ fpdu: fpduDisplayName(f.type), state: this.state, expected: expectedIn('server', this.state).map(fpduDisplayName) }, 'unexpected FPDU')
      throw new UnexpectedFpduError(fpduDisplayName(f.type), this.state)
    }
    switch (f.type) {
      case 'CONNECT': return await this.onConnect(f)
      case 'RELEASE': return await this.onRelease()
      case 'CREATE':
      case 'SELECT':
        // A member that is stopping (a hand-over that let the previous transfer end) starts no new one.
        if (this.stopping !== undefined) return await this.abort(DIAG.SERVICE_CLOSED, 'no new transfer: the server is stopping')
        return f.type === 'CREATE' ? await this.receiveSide.onCreate(f) : await this.sendSide.onSelect(f)
      case 'MSG':
      case 'MSGDM':
      case 'MSGMM':
      case 'MSGFM': return await this.onMessage(f, next)
      case 'ORF': return await this.onOrf(f)
      case 'DESELECT': return await this.onDeselect()
      case 'CRF': return await this.onCrf()
      case 'WRITE': return await this.receiveSide.onWrite()
      case 'DTF':
      case 'DTFDA':
      case 'DTFMA':
      case 'DTFFA':
        if (this.state === 'TDX05') return // in flight when our IDT crossed it: discarded
        return await this.receiveSide.onData(f)
      case 'SYN':
        if (this.state === 'TDX05') return
        return await this.receiveSide.onSyn(f)
      case 'DTF_END':
        if (this.state === 'TDX05') return
        return await this.receiveSide.onDtfEnd(f)
      case 'TRANS_END':
        if (this.state === 'TDX05') return // crossed our IDT, which has priority: nothing is committed
        this.ending = true
        try {
          return this.state === 'TDL07' ? await this.sendSide.onTransEnd(f) : await this.receiveSide.onTransEnd(f)
        } finally {
          this.ending = false
        }
      case 'IDT': return await this.onIdt(f)
      case 'ACK_IDT':
        this.state = 'OF02'
        return await this.afterInterrupt()
      case 'RESYN':
        throw new ProtocolError('RESYN without negotiated resynchronisation', DIAG.RESYN_NEGOTIATION)
      case 'READ': return await this.sendSide.onRead(f, this.interrupted)
      case 'ACK_SYN':
        // In TDX05: late acknowledgements while our IDT is pending.
        if (this.state === 'TDL02' || this.state === 'TDL07') this.sendSide.onAckSyn(f)
        return
      default:
        throw new UnexpectedFpduError(fpduDisplayName(f.type), this.state)
    }
  }

  private async send (type: FpduType, params: Params, idSrc = 0): Promise<void> {
    await this.ch.send({ type, idDst: this.x ?? 0, idSrc, params })
  }

  // --- connection phase -------------------------------------------------------------------------------------

  private async onConnect (f: Fpdu): Promise<void> {
    this.x = f.idSrc
    const refuse = async (diag: Diagnostic, why: string): Promise<void> => {
      this.log.warn({ diagnostic: describeDiagnostic(diag), requester: getString(f.params, 3), why }, 'connection refused')
      await this.send('RCONNECT', { 2: diag }, 0)
      await this.finish()
    }
    if (f.idSrc === 0) return await refuse(DIAG.BAD_PARAMETER, 'connection id 0')
    if (this.ctx.refuseWith !== undefined) return await refuse(this.ctx.refuseWith, 'connection limit reached')
    if (getNumber(f.params, 1) === 1) return await refuse(DIAG.NEGOTIATION_FAILURE, 'CRC option not supported')
    const serverId = getString(f.params, 4) ?? ''
    if (serverId.toUpperCase() !== this.ctx.server.id.toUpperCase()) return await refuse(DIAG.CALLED_UNKNOWN, `server id ${serverId}`)
    const partner = this.ctx.partners.get(getString(f.params, 3) ?? '')
    const ac = decodeAccessControl(getBytes(f.params, 5))
    // Unknown partner and wrong password get the same answer, so the answer does not reveal which ids exist.
    if (partner === undefined) return await refuse(DIAG.REQUESTER_NOT_AUTHORISED, 'unknown partner')
    if (!passwordEquals(partner.password, ac?.password ?? '')) return await refuse(DIAG.REQUESTER_NOT_AUTHORISED, 'bad password')
    if (ac?.newPassword !== undefined) return await refuse(DIAG.REQUESTER_NOT_AUTHORISED, 'password change not allowed')
    if (partner.tlsClientCn !== undefined && this.ctx.clientCertificateCn !== partner.tlsClientCn) {
      return await refuse(DIAG.REQUESTER_NOT_AUTHORISED, this.ctx.clientCertificateCn === undefined
        ? 'this partner must connect over TLS with its client certificate'
        : `the client certificate names ${this.ctx.clientCertificateCn}, not this partner`)
    }
    if (getNumber(f.params, 6) !== 2) return await refuse(DIAG.VERSION_NOT_SUPPORTED, `version ${getNumber(f.params, 6)}`)
    const access = getNumber(f.params, 22) ?? -1
    if (access < 0 || access > 2) return await refuse(DIAG.BAD_PARAMETER, `access type ${access}`)
    if ((access === 0 && partner.access === 'read') || (access === 1 && partner.access === 'write')) {
      return await refuse(DIAG.REQUESTER_NOT_AUTHORISED, `access type ${access} not allowed for ${partner.access}`)
    }
    this.partner = partner
    this.accessType = access
    // Sync points: active only if both sides want them; smallest interval and window win; FFFF = undefined.
    const proposed = decodeSyncOption(getBytes(f.params, 7))
    const mine = this.ctx.server.syncIntervalKb
    if (proposed === undefined || proposed.intervalKb === 0 || mine === 0) {
      this.sync = { intervalKb: 0, window: 0 }
    } else {
      this.sync = {
        intervalKb: proposed.intervalKb === 0xffff ? mine : Math.min(proposed.intervalKb, mine),
        window: Math.min(proposed.window, this.ctx.maxSyncWindow)
      }
    }
    const params: Params = { 6: 2, 7: encodeSyncOption(this.sync) }
    if (getNumber(f.params, 23) === 1) params[23] = 0 // RESYN offered, not supported: say so explicitly
    await this.send('ACONNECT', params, this.y)
    this.state = 'CN03'
    this.log.info({ partner: partner.id, accessType: access, sync: this.sync }, 'connected')
  }

  private async onRelease (): Promise<void> {
    await this.send('RELCONF', {}, this.y)
    this.state = 'CN01'
    await this.finish()
  }

  private async onAbort (f: Fpdu): Promise<void> {
    const diag = getDiagnostic(f.params) ?? DIAG.OTHER
    this.log.warn({ diagnostic: describeDiagnostic(diag), state: this.state }, 'ABORT received')
    this.endReason = { diag, why: 'aborted by the requester' }
    this.state = 'CN01'
    this.ch.destroy()
    this.finished = true
  }

  // --- file selection ---------------------------------------------------------------------------------------

  private async onMessage (f: Fpdu, next: SessionState): Promise<void> {
    this.messageBytes += (getString(f.params, 91) ?? '').length
    if (this.messageBytes > MAX_MESSAGE_BYTES) throw new ProtocolError('segmented message too long', DIAG.MESSAGE_NOT_ACCEPTED)
    if (f.type === 'MSGDM' || f.type === 'MSGMM') {
      this.state = next
      return
    }
    this.messageBytes = 0
    await this.send('ACK_MSG', { 2: DIAG.MESSAGE_NOT_ACCEPTED })
    this.state = next
  }

  private async onOrf (f: Fpdu): Promise<void> {
    // Compression is not implemented: a request for it is answered explicitly "none" (never silently accepted);
    // an ORF that asks for none gets the plain answer the recorded sessions show.
    const params: Params = { 2: DIAG.OK }
    const asked = getBytes(f.params, 21)
    if (asked !== undefined && asked[0] !== 0) params[21] = Uint8Array.of(0, 0)
    await this.send('ACK_ORF', params)
    this.state = 'OF02'
  }

  private async onDeselect (): Promise<void> {
    await this.releaseTransfer('interrupted', DIAG.ABNORMAL_END, 'deselected before the end of the transfer')
    this.interrupted = false
    // The next file may negotiate another entity size.
    this.ch.negotiatedEntitySize = undefined
    await this.send('ACK_DESELECT', { 2: DIAG.OK })
    this.state = 'CN03'
  }

  private async onCrf (): Promise<void> {
    await this.send('ACK_CRF', { 2: DIAG.OK })
    this.state = 'SF03'
  }

  private async onIdt (f: Fpdu): Promise<void> {
    await this.receiveSide.checkpointsDone()
    await this.sendSide.stopEmitting()
    if (getNumber(f.params, 19) === undefined) this.deviation('idt-without-end-code', {})
    const code = getNumber(f.params, 19) ?? 4
    const diag = getDiagnostic(f.params) ?? DIAG.OK
    this.log.info({ code, diagnostic: describeDiagnostic(diag), state: this.state }, 'transfer interrupted by the requester')
    if (this.state === 'TDX05') {
      // Both sides sent IDT: answer theirs; ours counts as answered too.
      await this.send('ACK_IDT', {})
      this.state = 'OF02'
      return await this.afterInterrupt()
    }
    this.receiveSide.dropSegment()
    await this.send('ACK_IDT', {})
    this.state = 'OF02'
    if (code === 8 || code === 12 || code === 16) this.interrupted = true
    await this.releaseTransfer(code === 16 || code === 12 ? 'failed' : 'interrupted', diag, `IDT code ${code}`)
  }

  private async afterInterrupt (): Promise<void> {
    this.interrupted = true
    await this.releaseTransfer('interrupted', DIAG.VOLUNTARY_STOP, 'interrupted for a hand-over')
  }

  // --- endings ----------------------------------------------------------------------------------------------

  /** Closes an unfinished transfer of either direction, keeping what a restart needs. */
  private async releaseTransfer (status: TransferOutcome, diag: Diagnostic, message: string): Promise<void> {
    await this.sendSide.release(status, diag, message)
    await this.receiveSide.release(status, diag, message)
  }

  /** Counts a tolerated departure from the protocol; logged once per kind and session. */
  private deviation (kind: PeerDeviation, detail: Record<string, unknown>): void {
    this.ctx.metrics.peerDeviation?.(kind)
    if (this.deviationsLogged.has(kind)) return
    this.deviationsLogged.add(kind)
    this.log.info({ deviation: kind, ...detail }, 'tolerated a departure of the peer from the protocol (counted, logged once per session)')
  }

  /**
   * A journal write whose failure is logged, not thrown; except NotReplicatedError (`VECTIS_REPLICATION=sync`): what
   * the partner is about to be told must not go out.
   */
  private async journal (fn: (j: TransferJournalPort) => Promise<void>): Promise<void> {
    try {
      await fn(this.ctx.journal)
    } catch (err) {
      if (err instanceof NotReplicatedError) throw err
      // Refused because this member no longer leads: the fencing working as meant, the next leader records it.
      if (err instanceof JournalNotLeaderError) this.log.warn('transfer journal write refused: not leader any more')
      else this.log.error({ err }, 'transfer journal write failed')
    }
  }

  private async fail (err: unknown): Promise<void> {
    if (err instanceof ConnectionLostError) return await this.lost(err)
    if (err instanceof PesitTimeoutError) {
      if (this.state === 'CN01') {
        this.log.info('no CONNECT in time; closing')
        return await this.finish()
      }
      const diag = this.state === 'CN03' ? DIAG.INACTIVITY_TIMEOUT : DIAG.TIMER_EXPIRED
      return await this.abort(diag, err.message)
    }
    if (err instanceof PesitError) return await this.abort(err.diagnostic, err.message)
    this.log.error({ err, state: this.state }, 'internal error in session')
    return await this.abort(DIAG.OTHER, 'internal error')
  }

  private async lost (err: ConnectionLostError): Promise<void> {
    if (this.finished) return
    if (this.state !== 'CN01' || this.receiveSide.active || this.sendSide.active) this.log.warn({ state: this.state, reason: err.message }, 'connection lost')
    this.endReason ??= { diag: DIAG.NETWORK_INCIDENT, why: err.message }
    this.state = 'CN01'
    this.ch.destroy()
    this.finished = true
  }

  /** Sends ABORT (transfer context kept for a restart) and closes. */
  async abort (diag: Diagnostic, why: string): Promise<void> {
    if (this.finished) return
    this.finished = true
    this.log.warn({ diagnostic: describeDiagnostic(diag), state: this.state, why, inDataPhase: isDataPhase(this.state) }, 'aborting session')
    this.endReason = { diag, why }
    try {
      await this.ch.send({ type: 'ABORT', idDst: this.x ?? 0, idSrc: this.y, params: { 2: diag } })
    } catch {
      // the peer is gone already
    }
    this.state = 'CN01'
    await this.ch.close(this.ctx.timeouts.closeGraceMs)
  }

  private async finish (): Promise<void> {
    this.finished = true
    await this.ch.close(this.ctx.timeouts.closeGraceMs)
  }
}

/** Constant-time comparison (of digests, so the lengths never leak either); PeSIT passwords are blank-trimmed. */
function passwordEquals (expected: string, given: string): boolean {
  const a = createHash('sha256').update(expected.replace(/ +$/, ''), 'latin1').digest()
  const b = createHash('sha256').update(given.replace(/ +$/, ''), 'latin1').digest()
  return timingSafeEqual(a, b)
}
