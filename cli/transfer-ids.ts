/**
 * The PI 13 of `vectis send`'s new transfers: a counter persisted in the state directory, so that one requester
 * never uses an id twice in 16,777,215 transfers. A random id could collide with one of its own transfers that a
 * server still remembers as delivered, and a restart of the new one would then be taken for a replay of the old
 * (docs/pesit.md §9.6). The counter starts at a random point, so that requesters with separate state directories
 * are unlikely to walk the same ids; concurrent `vectis send` processes on one directory take turns on a lock file.
 */
import { randomInt } from 'node:crypto'
import { mkdir, open, readFile, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { writeState } from './requester-cli.js'

const MAX_ID = 0xffffff
/** A lock older than this is a crashed holder's. */
const STALE_LOCK_MS = 10_000
const LOCK_WAIT_MS = 5_000

/** The next PI 13 of this state directory (1..16777215, never 0), recorded durably before it is returned. */
export async function nextTransferId (stateDir: string): Promise<number> {
  await mkdir(stateDir, { recursive: true })
  const counter = join(stateDir, 'next-transfer-id.json')
  const lock = `${counter}.lock`
  await acquire(lock)
  try {
    let next: number
    try {
      const v: unknown = JSON.parse(await readFile(counter, 'utf8'))
      next = typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= MAX_ID ? v : randomInt(1, MAX_ID + 1)
    } catch {
      next = randomInt(1, MAX_ID + 1)
    }
    await writeState(counter, next === MAX_ID ? 1 : next + 1, true)
    return next
  } finally {
    await unlink(lock).catch(() => {})
  }
}

async function acquire (lock: string): Promise<void> {
  const deadline = Date.now() + LOCK_WAIT_MS
  for (let i = 0; ; i++) {
    try {
      await (await open(lock, 'wx')).close()
      return
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const age = Date.now() - ((await stat(lock).catch(() => undefined))?.mtimeMs ?? Date.now())
    if (age > STALE_LOCK_MS) {
      await unlink(lock).catch(() => {})
      continue
    }
    if (Date.now() > deadline) throw new Error(`${lock} is held by another vectis send for more than ${LOCK_WAIT_MS / 1000} s`)
    await new Promise((resolve) => setTimeout(resolve, 10 + (i % 10) * 5))
  }
}
