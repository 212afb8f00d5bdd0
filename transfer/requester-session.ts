/**
 * What the two requester directions share (docs/pesit.md §11): opening the byte stream, the pre-connection,
 * CONNECT with the sync-point negotiation, request/answer exchanges checked against the requester's state table,
 * ABORT, and the closing exchange CRF, DESELECT, RELEASE. `push.ts` (CREATE … WRITE) and `pull.ts`
 * (SELECT … READ) build on it.
 */
import { connect as netConnect } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { randomInt } from 'node:crypto'
import type { Duplex } from 'node:stream'
import type { Logger } from '../common/logger.js'
import { shortTlsReason } from '../common/tls-files.js'
import {
  decodeSyncOption, encodeAccessControl, encodePreconnection, encodeSyncOption, getBytes, getDiagnostic, getNumber,
  PRECONNECTION_ACK, type Fpdu, type Params
} from './codec.js'
import { DIAG, isSuccess, type Diagnostic } from './diagnostics.js'
import { ConnectionLostError, PeerRefusalError, PesitConfigError, ProtocolError, UnexpectedFpduError } from './errors.js'
import { FpduChannel, StaticReads } from './fpdu-channel.js'
import { fpduDisplayName, type FpduType } from './fpdu-types.js'
import { transition, type SessionState } from './session-table.js'

/** How to reach and identify to a PeSIT server: the options `vectis send` and `vectis receive` share. */
export interface RequesterOptions {
  host: string
  port: number
  partner: string
  password: string
  /** PeSIT server id (PI 4) */
  server: string
  /** virtual file id (PI 12) */
  file: string
  /** proposed sync interval (KB); 0 = no sync points. Default 1024 */
  syncIntervalKb?: number
  /** proposed acknowledgement window. Default 16 */
  syncWindow?: number
  /** proposed PI 25. Default 65535 */
  maxEntitySize?: number
  /** watchdog for each answer. Default 30 s */
  timeoutMs?: number
  /** send the 24-byte pre-connection message first (partners of type T/O) */
  preconnection?: boolean
  signal?: AbortSignal
  logger?: Logger
  /**
   * opens the byte stream (TLS, tests); plain TCP to host:port by default. A connector that passes
   * `reads.options` as `onread` to its connect call saves a buffer per read; one that ignores it works too.
   */
  connect?: (reads: StaticReads) => Promise<Duplex>
}

export interface NegotiatedSync {
  /** agreed interval in KB, 0 = no sync points */
  intervalKb: number
  /** agreed acknowledgement window, 0 = SYN unconfirmed */
  window: number
}

/** Checks the options both directions share; throws PesitConfigError naming the bad one. */
export function checkRequesterOptions (o: RequesterOptions): void {
  const entity = o.maxEntitySize ?? 65535
  const syncKb = o.syncIntervalKb ?? 1024
  if (!Number.isInteger(entity) || entity < 64 || entity > 65535) throw new PesitConfigError('entity size: 64..65535')
  if (!Number.isInteger(syncKb) || syncKb < 0 || syncKb > 0xfffe) throw new PesitConfigError('sync interval: 0..65534 KB')
}

/**
 * Opens the stream and a channel, runs `fn`, and always closes the socket. A failure of a write caused by the
 * server's ABORT is reported as that ABORT (its diagnostic), not as the socket error.
 */
export async function withChannel<T> (o: RequesterOptions, fn: (ch: FpduChannel) => Promise<T>): Promise<T> {
  const timeoutMs = o.timeoutMs ?? 30_000
  const reads = new StaticReads()
  const socket = o.connect !== undefined ? await o.connect(reads) : await tcpConnect(o.host, o.port, timeoutMs, reads)
  const ch = new FpduChannel(socket, { writeTimeoutMs: timeoutMs, reads })
  const onAbort = (): void => { socket.destroy(new Error('cancelled')) }
  o.signal?.addEventListener('abort', onAbort, { once: true })
  try {
    return await fn(ch)
  } catch (caught) {
    throw caught instanceof ConnectionLostError ? bufferedAbort(ch) ?? caught : caught
  } finally {
    o.signal?.removeEventListener('abort', onAbort)
    socket.destroy()
  }
}

function bufferedAbort (ch: FpduChannel): PeerRefusalError | undefined {
  try {
    for (let i = 0; i < 10_000; i++) {
      const ev = ch.poll()
      if (ev === undefined || ev.kind !== 'fpdu') return undefined
      if (ev.fpdu.type === 'ABORT') return new PeerRefusalError('aborted by the server', getDiagnostic(ev.fpdu.params) ?? DIAG.OTHER)
    }
  } catch {
    // malformed leftovers: nothing to report
  }
  return undefined
}

/** How a requester talks TLS (`vectis send|receive --tls`). */
export interface RequesterTls {
  /** CA bundle the server's certificate is verified against (default: the system's) */
  ca?: Buffer
  /** client certificate and key, for servers that ask for one */
  cert?: Buffer
  key?: Buffer
  /** skip the verification of the server's certificate (tests, first contact): never in production */
  insecure?: boolean
}

/** The byte stream of `o` over TLS: verified against `tls.ca` (or the system's CAs) unless `insecure`. */
export function tlsConnector (o: Pick<RequesterOptions, 'host' | 'port' | 'timeoutMs'>, t: RequesterTls): (reads?: StaticReads) => Promise<Duplex> {
  const timeoutMs = o.timeoutMs ?? 30_000
  return async (reads) => await new Promise((resolve, reject) => {
    const s = tlsConnect({
      ...(reads !== undefined ? { onread: reads.options } : {}),
      host: o.host, port: o.port, ca: t.ca, cert: t.cert, key: t.key, rejectUnauthorized: t.insecure !== true,
      minVersion: 'TLSv1.2', ...(/^[\d.:]+$/.test(o.host) ? {} : { servername: o.host })
    })
    s.setNoDelay(true)
    const timer = setTimeout(() => { s.destroy(); reject(new ConnectionLostError(`TLS connection to ${o.host}:${o.port} timed out`)) }, timeoutMs)
    s.once('secureConnect', () => { clearTimeout(timer); s.off('error', onErr); resolve(s) })
    const onErr = (err: Error): void => { clearTimeout(timer); reject(new ConnectionLostError(`TLS connection to ${o.host}:${o.port} failed: ${explainTlsError(err)}`, { cause: err })) }
    s.once('error', onErr)
  })
}

/** A TLS failure in words a user can act on. */
export function explainTlsError (err: Error): string {
  const code = (err as NodeJS.ErrnoException).code ?? ''
  const reason = shortTlsReason(err)
  if (/SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|CERT_UNTRUSTED|CERT_HAS_EXPIRED|ALTNAME_INVALID|CERT_NOT_YET_VALID/.test(code)) {
    return `the server's certificate is not trusted (${reason}); give the CA that signed it with --ca FILE`
  }
  if (/CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE/.test(code) || /certificate required/i.test(err.message)) {
    return `the server requires a client certificate (${reason}); give one with --cert FILE --key FILE`
  }
  if (/UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|DECRYPT_ERROR/.test(code) || /alert (unknown ca|bad certificate|certificate unknown)/i.test(err.message)) {
    return `the server refused the client certificate (${reason})`
  }
  return reason
}

async function tcpConnect (host: string, port: number, timeoutMs: number, reads: StaticReads): Promise<Duplex> {
  return await new Promise((resolve, reject) => {
    const s = netConnect({ host, port, noDelay: true, onread: reads.options })
    const t = setTimeout(() => { s.destroy(); reject(new ConnectionLostError(`connect to ${host}:${port} timed out`)) }, timeoutMs)
    s.once('connect', () => { clearTimeout(t); s.off('error', onErr); resolve(s) })
    const onErr = (err: Error): void => { clearTimeout(t); reject(new ConnectionLostError(`cannot connect to ${host}:${port}: ${err.message}`, { cause: err })) }
    s.once('error', onErr)
  })
}

/** One requester connection: the state, the connection ids and the exchanges both directions use. */
export class RequesterSession {
  state: SessionState = 'CN01'
  readonly x = randomInt(1, 256)
  /** the server's connection id, from ACONNECT */
  y = 0
  readonly timeoutMs: number

  constructor (readonly ch: FpduChannel, readonly o: RequesterOptions, readonly log: Logger) {
    this.timeoutMs = o.timeoutMs ?? 30_000
  }

  async send (type: FpduType, params: Params, idSrc = 0): Promise<void> {
    await this.ch.send({ type, idDst: this.y, idSrc, params })
  }

  /** Waits for the next FPDU valid in the current state; ABORT and unexpected FPDUs end the session. */
  async receive (): Promise<Fpdu> {
    let ev
    try {
      ev = await this.ch.next(this.timeoutMs)
    } catch (err) {
      if (err instanceof ProtocolError) await this.abort(err.diagnostic)
      throw err
    }
    return await this.accept(ev)
  }

  async accept (ev: Awaited<ReturnType<FpduChannel['next']>>): Promise<Fpdu> {
    if (ev.kind === 'end') {
      // A TLS 1.3 server refuses a client certificate after the client's handshake is done: the alert is here.
      const err = this.ch.socketError
      if (err !== undefined) throw new ConnectionLostError(`the connection failed: ${explainTlsError(err)}`, { cause: err })
      throw new ConnectionLostError(this.state !== 'CN02'
        ? 'the server closed the connection'
        : this.ch.overTls
          ? 'the server closed the connection before answering CONNECT (over TLS: a server that requires a client certificate does so when it does not trust the one sent, or none was sent)'
          : 'the server closed the connection before answering CONNECT')
    }
    if (ev.kind === 'preconnection') {
      await this.abort(DIAG.PROTOCOL_ERROR)
      throw new ProtocolError('pre-connection message from the server')
    }
    const f = ev.fpdu
    if (f.type === 'ABORT') throw new PeerRefusalError('aborted by the server', getDiagnostic(f.params) ?? DIAG.OTHER)
    const next = transition('requester', this.state, f.type)
    if (next === undefined) {
      await this.abort(DIAG.PROTOCOL_ERROR)
      throw new UnexpectedFpduError(fpduDisplayName(f.type), this.state)
    }
    return f
  }

  async abort (diag: Diagnostic): Promise<void> {
    await this.ch.send({ type: 'ABORT', idDst: this.y, idSrc: this.x, params: { 2: diag } }).catch(() => {})
  }

  /** Sends `type`, waits for `ack`, throws PeerRefusalError on a negative answer. */
  async request (type: FpduType, params: Params, waiting: SessionState, ack: FpduType): Promise<Fpdu> {
    await this.send(type, params)
    this.state = waiting
    for (;;) {
      const f = await this.receive()
      if (f.type === 'ACK_SYN') continue // late acknowledgement, valid and meaningless now
      if (f.type !== ack) throw new UnexpectedFpduError(fpduDisplayName(f.type), this.state)
      const d = getDiagnostic(f.params) ?? DIAG.OK
      if (!isSuccess(d)) throw new PeerRefusalError(`${fpduDisplayName(type)} refused`, d)
      return f
    }
  }

  /**
   * Pre-connection if asked, CONNECT with access type `access` (PI 22: 0 write, 1 read), ACONNECT. Returns the
   * sync-point option in force: the smaller of both sides' intervals and the server's window.
   */
  async connect (access: 0 | 1): Promise<NegotiatedSync> {
    const o = this.o
    const syncKb = o.syncIntervalKb ?? 1024
    if (o.preconnection === true) {
      await this.ch.write(encodePreconnection({ identifier: o.partner, password: o.password }))
      // The answer is 4 raw bytes, outside the entity framing.
      const answer = await this.ch.nextRaw(4, this.timeoutMs)
      if (!Buffer.from(answer).equals(PRECONNECTION_ACK)) throw new PeerRefusalError('pre-connection refused', DIAG.REQUESTER_NOT_AUTHORISED)
    }
    await this.ch.send({
      type: 'CONNECT', idDst: 0, idSrc: this.x,
      params: { 3: o.partner, 4: o.server, 5: encodeAccessControl(o.password), 6: 2, 7: encodeSyncOption({ intervalKb: syncKb, window: syncKb === 0 ? 0 : o.syncWindow ?? 16 }), 22: access }
    })
    this.state = 'CN02'
    const ac = await this.receive()
    if (ac.type === 'RCONNECT') throw new PeerRefusalError('connection refused', getDiagnostic(ac.params) ?? DIAG.OTHER)
    this.y = ac.idSrc
    if (getNumber(ac.params, 6) !== 2) {
      await this.abort(DIAG.VERSION_NOT_SUPPORTED)
      throw new PeerRefusalError('server answered another PeSIT version', DIAG.VERSION_NOT_SUPPORTED)
    }
    const sync = decodeSyncOption(getBytes(ac.params, 7)) ?? { intervalKb: 0, window: 0 }
    const intervalKb = syncKb === 0 || sync.intervalKb === 0 ? 0 : sync.intervalKb === 0xffff ? syncKb : Math.min(sync.intervalKb, syncKb)
    this.state = 'CN03'
    return { intervalKb, window: intervalKb === 0 ? 0 : sync.window }
  }

  /** CRF, DESELECT, RELEASE: the end of a transfer, also after an interruption (never just a socket close). */
  async closeFile (): Promise<void> {
    await this.request('CRF', { 2: DIAG.OK }, 'OF03', 'ACK_CRF')
    this.state = 'SF03'
    await this.request('DESELECT', { 2: DIAG.OK }, 'SF04', 'ACK_DESELECT')
    this.state = 'CN03'
    await this.release()
  }

  async release (): Promise<void> {
    await this.ch.send({ type: 'RELEASE', idDst: this.y, idSrc: this.x, params: { 2: DIAG.OK } })
    this.state = 'CN04'
    await this.receive()
    this.state = 'CN01'
    await this.ch.close(1000)
  }
}

