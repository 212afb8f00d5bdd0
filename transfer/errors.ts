/** Errors of the PeSIT area. Each carries the diagnostic the peer should be told, when there is one. */
import { DIAG, describeDiagnostic, type Diagnostic } from './diagnostics.js'

/** Base class: a PeSIT-level failure with the PI 2 diagnostic that describes it. */
export class PesitError extends Error {
  override name = 'PesitError'
  constructor (message: string, readonly diagnostic: Diagnostic = DIAG.OTHER, options?: ErrorOptions) {
    super(message, options)
  }
}

/** Malformed bytes: bad entity or FPDU length, unknown type, truncated or illegal parameter. */
export class ProtocolError extends PesitError {
  override name = 'ProtocolError'
  constructor (message: string, diagnostic: Diagnostic = DIAG.PROTOCOL_ERROR, options?: ErrorOptions) {
    super(message, diagnostic, options)
  }
}

/** A well-formed FPDU that is not valid in the current state of the session. */
export class UnexpectedFpduError extends PesitError {
  override name = 'UnexpectedFpduError'
  constructor (readonly fpduType: string, readonly state: string) {
    super(`unexpected ${fpduType} in state ${state}`, DIAG.PROTOCOL_ERROR)
  }
}

/** The peer refused or ended something with a non-success diagnostic (RCONNECT, negative ACK, ABORT, IDT). */
export class PeerRefusalError extends PesitError {
  override name = 'PeerRefusalError'
  constructor (readonly what: string, diagnostic: Diagnostic, readonly detail?: string) {
    super(`${what}: ${describeDiagnostic(diagnostic)}${detail !== undefined && detail !== '' ? ` (${detail})` : ''}`, diagnostic)
  }
}

/** No FPDU arrived within the allowed time. */
export class PesitTimeoutError extends PesitError {
  override name = 'PesitTimeoutError'
  constructor (message: string, diagnostic: Diagnostic = DIAG.TIMER_EXPIRED) {
    super(message, diagnostic)
  }
}

/** The TCP connection ended without RELEASE or ABORT. */
export class ConnectionLostError extends PesitError {
  override name = 'ConnectionLostError'
  constructor (message = 'connection lost', options?: ErrorOptions) {
    super(message, DIAG.NETWORK_INCIDENT, options)
  }
}

/** Local storage failed while receiving or committing a file. */
export class TransferStorageError extends PesitError {
  override name = 'TransferStorageError'
  constructor (message: string, diagnostic: Diagnostic = DIAG.IO_ERROR, options?: ErrorOptions) {
    super(message, diagnostic, options)
  }
}

/** This member lost its leader lease right before a leader-only effect. */
export class NotLeaderError extends PesitError {
  override name = 'NotLeaderError'
  constructor (what: string) {
    super(`not leader: refusing to ${what}`, DIAG.SERVICE_CLOSED)
  }
}

/**
 * `VECTIS_REPLICATION=sync`: a journal change did not reach a majority of the members in time, so what depends on
 * it (ACK(SYN), ACK(TRANS.END)) is not sent.
 */
export class NotReplicatedError extends PesitError {
  override name = 'NotReplicatedError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, DIAG.SYSTEM_ERROR, options)
  }
}

/** Bad PeSIT configuration (servers, partners, files) or bad requester options. */
export class PesitConfigError extends Error {
  override name = 'PesitConfigError'
}
