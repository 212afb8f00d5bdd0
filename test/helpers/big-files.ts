/** Large files for transfer tests and benchmarks, written and digested a MiB at a time. */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open } from 'node:fs/promises'

/**
 * Writes `mib` MiB of a cheap pseudo-random pattern (xorshift from `seed`, every MiB different) to `path`; returns
 * its SHA-256 (hex).
 */
export async function writePatternFile (path: string, mib: number, seed: number): Promise<string> {
  const fh = await open(path, 'w')
  const hash = createHash('sha256')
  const block = Buffer.allocUnsafe(1 << 20)
  let x = seed * 2654435761 >>> 0
  for (let i = 0; i < block.length; i += 4) {
    x = (x ^ (x << 13)) >>> 0
    x = (x ^ (x >>> 17)) >>> 0
    x = (x ^ (x << 5)) >>> 0
    block.writeUInt32LE(x, i)
  }
  try {
    for (let i = 0; i < mib; i++) {
      block.writeUInt32LE(i, 0) // every MiB differs
      await fh.write(block)
      hash.update(block)
    }
  } finally {
    await fh.close()
  }
  return hash.digest('hex')
}

/** SHA-256 (hex) of a file, read a MiB at a time. */
export async function sha256OfFile (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(c as Buffer)
  return hash.digest('hex')
}
