/**
 * The contract between the membership/leadership driver and the network. The driver only ever sees addresses
 * ("ip:port" of a member's cluster port), peer ids and JSON-serialisable payloads; how bytes move is the
 * transport's business (`transport.ts`: libp2p over TCP).
 *
 * NOT guaranteed: delivery. A rejected `request()` does not mean the peer did not process the payload (the reply may
 * have been lost after the handler ran), so payloads the driver sends must be idempotent or carry their own ids.
 */
import type { Startable } from '../common/lifecycle.js'

/** Why a request failed; see `TransportError` in `errors.ts`. */
export type TransportErrorCode =
  /** Nothing accepts connections at that address (connection refused, host/network unreachable). */
  | 'refused'
  /** No reply within the deadline (dial, handshake or reply). */
  | 'timeout'
  /** The connection or stream closed before the reply arrived, or the transport is stopped. */
  | 'closed'
  /** The peer refused us or we refused it: cluster secret mismatch, another cluster name, a peer that is not a member. */
  | 'denied'
  /** A malformed or oversized frame, an unknown protocol version, a bad address, or the peer's handler failed. */
  | 'invalid'

export interface RequestOptions {
  /** Deadline for the whole request: dial (if needed), sending, and the reply. */
  timeoutMs?: number
  signal?: AbortSignal
}

export interface RequestResult {
  /** libp2p peer id of the member that replied (stable across its restarts: the identity key is persisted). */
  peerId: string
  /** The value its handler returned. */
  reply: unknown
}

export interface RequestOrigin {
  peerId: string
  /**
   * The address ("ip:port") the sender advertises for its cluster port, i.e. where to `request()` it back. Taken
   * from the frame: inside a cluster protected by a secret only members can send frames; without a secret it is
   * as trustworthy as the network.
   */
  remoteAddress: string
  /** The TCP address the connection actually comes from (may differ from `remoteAddress`, e.g. behind NAT). */
  socketAddress?: string
  /** Envelope version the sender used (current or the previous one). */
  version?: number
}

/** May return the reply or a promise of it. */
export type RequestHandler = (from: RequestOrigin, payload: unknown) => unknown

/** A message published on a topic: its payload, and the peer it came from (the publisher or a member relaying it). */
export type TopicHandler = (payload: unknown, relayedBy: string) => void

export interface ClusterTransport extends Startable {
  /** This member's peer id; available once `start()` resolved (the identity key is loaded then). */
  readonly peerId: string
  start(): Promise<void>
  stop(): Promise<void>
  /**
   * Sends `payload` (JSON-serialisable) on a direct stream to the member listening at `address` ("ip:port");
   * resolves with the peer's reply (its acknowledgement). Rejects with `TransportError` (`code` is a
   * `TransportErrorCode`).
   */
  request(address: string, payload: unknown, opts?: RequestOptions): Promise<RequestResult>
  /** Handles incoming requests; the returned value is the reply. One handler: a later call replaces it. */
  handle(handler: RequestHandler): void
  /** Fires when the last connection to a peer closes (fast failure detection). Returns the unsubscribe function. */
  onDisconnect(listener: (peerId: string) => void): () => void
  /**
   * Publishes `payload` (JSON-serialisable) to the members subscribed to `topic`, relayed member to member
   * (gossipsub), best effort: a member may miss it and must be able to repair from another source. `id` names the
   * message: one already seen under that id is dropped, so a message published twice is delivered once.
   */
  publish(topic: string, id: string, payload: unknown): Promise<void>
  /** Delivers the messages of `topic` published by other members. One handler per topic: a later call replaces it. */
  subscribe(topic: string, handler: TopicHandler): void
}
