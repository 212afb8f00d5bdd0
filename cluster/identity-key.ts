/**
 * The member's libp2p identity (Ed25519), persisted in its data directory so its peer id survives restarts. The
 * peer id is NOT the member's identity in views: that is (name, peer id, incarnation), and the incarnation changes at
 * every start. Keeping the key only spares peers a new identity to learn and keeps logs readable.
 */
import { open, readFile, rename, mkdir, stat, chmod, unlink } from 'node:fs/promises'
import { join, dirname } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import type { Logger } from '../common/logger.js'
import { IdentityKeyError } from './errors.js'

export const IDENTITY_KEY_FILE = 'cluster-identity.key'

/** Loads the key at `dataDir/cluster-identity.key`, or creates it (mode 0600, written atomically). */
export async function loadOrCreateIdentityKey (dataDir: string, log?: Logger): Promise<PrivateKey> {
  const path = join(dataDir, IDENTITY_KEY_FILE)
  let bytes: Buffer | undefined
  try {
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new IdentityKeyError(`cannot read the cluster identity key ${path}`, { cause: err })
    }
  }
  if (bytes !== undefined) {
    let key: PrivateKey
    try {
      key = privateKeyFromProtobuf(bytes)
    } catch (err) {
      // Never overwrite it silently: the operator decides (deleting it gives this member a new peer id).
      throw new IdentityKeyError(`the cluster identity key ${path} is corrupt; delete it to generate a new one`, { cause: err })
    }
    if (key.type !== 'Ed25519') throw new IdentityKeyError(`the cluster identity key ${path} is ${key.type}, expected Ed25519`)
    const st = await stat(path)
    if ((st.mode & 0o077) !== 0) {
      log?.warn({ path, mode: (st.mode & 0o777).toString(8) }, 'identity key readable by others; restricting it to 0600')
      await chmod(path, 0o600)
    }
    return key
  }
  const key = await generateKeyPair('Ed25519')
  await writeFileAtomic(path, privateKeyToProtobuf(key), 0o600)
  log?.info({ path }, 'created a new cluster identity key')
  return key
}

/** temp file (exclusive, given mode) → fsync → rename → fsync of the directory. */
export async function writeFileAtomic (path: string, data: Uint8Array, mode: number): Promise<void> {
  const dir = dirname(path)
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const tmp = `${path}.${process.pid}.${Date.now()}.tmp`
    const fh = await open(tmp, 'wx', mode)
    try {
      await fh.writeFile(data)
      await fh.sync()
    } catch (err) {
      await fh.close()
      await unlink(tmp).catch(() => {})
      throw err
    }
    await fh.close()
    await rename(tmp, path)
    const dh = await open(dir, 'r')
    try { await dh.sync() } finally { await dh.close() }
  } catch (err) {
    throw new IdentityKeyError(`cannot write ${path}`, { cause: err })
  }
}
