/**
 * The cluster's private network: libp2p pnet (XSalsa20 keyed by a PSK derived from `VECTIS_CLUSTER_SECRET`) plus
 * a key check right after the nonce exchange.
 *
 * Why the check: pnet alone does not authenticate. A peer with another key decrypts our bytes to noise and the
 * handshake that follows stalls or fails at random (usually the dial just times out), so nobody could tell "wrong
 * secret" from "slow peer". Each side therefore first sends a fixed 32-byte proof through the encrypted pipe; a
 * peer with another key reads something else and the connection is refused at once, on both sides, with a clear
 * error.
 *
 * NOT guaranteed: forward secrecy of the pnet layer (it is a static key; the noise layer inside has it).
 */
import { createHmac, hkdfSync } from 'node:crypto'
import { preSharedKey } from '@libp2p/pnet'
import type { ComponentLogger, ConnectionProtector, MessageStream, AbortOptions } from '@libp2p/interface'
import { ClusterConfigError } from './errors.js'

const PROOF_BYTES = 32

/** The connection is encrypted with another key than ours (or not at all). */
export class ClusterSecretMismatchError extends Error {
  override name = 'ClusterSecretMismatchError'
  constructor (message = 'the peer does not have the cluster secret') { super(message) }
}

/**
 * The pnet key format (`/key/swarm/psk/1.0.0/`, base16 of 32 bytes) derived from the shared secret with
 * HKDF-SHA256, so the secret itself never becomes the stream-cipher key and any string length works.
 */
export function pskFromSecret (secret: string): Uint8Array {
  if (secret.length === 0) throw new ClusterConfigError('VECTIS_CLUSTER_SECRET is empty')
  return Buffer.from(`/key/swarm/psk/1.0.0/\n/base16/\n${deriveKey(secret, 'libp2p pnet v1').toString('hex')}`, 'utf8')
}

function deriveKey (secret: string, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.from('vectis-cluster-psk'), Buffer.from(info), 32))
}

export interface PrivateNetworkInit {
  secret: string
  /** Deadline of the nonce exchange and of the key check. */
  timeoutMs: number
  /** Called when a peer fails the key check (for the log). */
  onMismatch?: (connection: MessageStream, remoteAddress: string | undefined) => void
}

export function privateNetwork (init: PrivateNetworkInit): (components: { logger: ComponentLogger }) => ConnectionProtector {
  const inner = preSharedKey({ psk: pskFromSecret(init.secret), timeout: init.timeoutMs })
  // Not secret by itself: it only proves the sender encrypts with the same key stream.
  const proof = createHmac('sha256', deriveKey(init.secret, 'key check v1')).update('vectis cluster member').digest()
  return (components) => {
    void components
    const pnet = inner()
    return {
      async protect (connection: MessageStream, options?: AbortOptions): Promise<MessageStream> {
        const signal = options?.signal ?? AbortSignal.timeout(init.timeoutMs)
        const boxed = await pnet.protect(connection, { ...options, signal })
        boxed.send(proof)
        const got = await readExactly(boxed, PROOF_BYTES, signal)
        if (!Buffer.from(got).equals(proof)) {
          const err = new ClusterSecretMismatchError()
          init.onMismatch?.(connection, remoteAddressOf(connection))
          boxed.abort(err)
          connection.abort(err)
          throw err
        }
        return boxed
      }
    }
  }
}

function remoteAddressOf (c: MessageStream): string | undefined {
  const ra = (c as { remoteAddr?: { toString: () => string } }).remoteAddr
  return ra?.toString()
}

/**
 * Reads `n` bytes from a message stream. Bytes that arrived after them (the peer's next handshake message) are put
 * back at the front of the stream's buffer while our listener is still attached, which makes the stream dispatch
 * them on its next tick, by which time the upgrader's own reader is listening.
 */
async function readExactly (stream: MessageStream, n: number, signal: AbortSignal): Promise<Uint8Array> {
  const chunks: Uint8Array[] = []
  let have = 0
  let onMessage!: (evt: Event) => void
  let onClose!: (evt: Event) => void
  let onAbort!: () => void
  try {
    return await new Promise<Uint8Array>((resolve, reject) => {
      onMessage = (evt: Event) => {
        const data = (evt as unknown as { data: Uint8Array | { subarray: () => Uint8Array } }).data
        const bytes = data instanceof Uint8Array ? data : data.subarray()
        chunks.push(bytes)
        have += bytes.byteLength
        if (have < n) return
        const all = Buffer.concat(chunks)
        if (all.byteLength > n) stream.unshift(all.subarray(n))
        resolve(all.subarray(0, n))
      }
      onClose = () => { reject(new ClusterSecretMismatchError('the peer closed the connection during the key check')) }
      onAbort = () => { reject(signal.reason instanceof Error ? signal.reason : new Error('aborted')) }
      if (signal.aborted) { onAbort(); return }
      stream.addEventListener('message', onMessage)
      stream.addEventListener('close', onClose)
      signal.addEventListener('abort', onAbort)
    })
  } finally {
    stream.removeEventListener('message', onMessage)
    stream.removeEventListener('close', onClose)
    signal.removeEventListener('abort', onAbort)
  }
}
