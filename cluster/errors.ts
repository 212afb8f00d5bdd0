/** Errors of the cluster area. */
import type { TransportErrorCode } from './transport-types.js'

/** A cluster request failed; `code` says how, `cause` holds the underlying error when there is one. */
export class TransportError extends Error {
  override name = 'TransportError'
  readonly code: TransportErrorCode
  /** The address the request went to. */
  readonly address: string | undefined
  constructor (code: TransportErrorCode, message: string, options: { address?: string, cause?: unknown } = {}) {
    super(message, { cause: options.cause })
    this.code = code
    this.address = options.address
  }
}

/** The persisted identity key cannot be read or written. */
export class IdentityKeyError extends Error {
  override name = 'IdentityKeyError'
  constructor (message = 'cannot load the cluster identity key', options: { cause?: unknown } = {}) {
    super(message, options)
  }
}

/** A cluster option (transport, membership timings, quorum) is missing or inconsistent; the message names the fields. */
export class ClusterConfigError extends Error {
  override name = 'ClusterConfigError'
  constructor (message = 'invalid cluster configuration', options: { cause?: unknown } = {}) {
    super(message, options)
  }
}

/** A leadership transfer that cannot happen (not leader, unknown target, no other member). HTTP 409. */
export class LeadershipTransferError extends Error {
  override name = 'LeadershipTransferError'
}
