import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { patternBytes } from '../helpers/pesit-vectors.js'
import { startServerProcess } from '../helpers/pesit-harness.js'
import { captureIo } from '../helpers/cli-io.js'
import { runSend } from '../../cli/send.js'
import { runReceive } from '../../cli/receive.js'
import { statePathFor } from '../../cli/requester-cli.js'
import { partialPathOf } from '../../transfer/pull.js'
import { transferStem } from '../../transfer/config-types.js'
import { checkpointNameFor, partialNameFor } from '../../transfer/receive-store.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

describe('kill -9 of the server process, then vectis send --restart', () => {
  it('completes, SHA-256 equal, resent bytes ≤ one sync interval', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'vectis-kill-'))
    const children: ChildProcess[] = []
    t.after(async () => {
      for (const c of children) c.kill('SIGKILL')
      await rm(dir, { recursive: true, force: true })
    })
    const src = patternBytes(32 << 20, 11)
    const path = join(dir, 'src.bin')
    await writeFile(path, src)
    const a = await startServerProcess(dir)
    children.push(a.child)
    const transferId = 777
    const args = (port: number): string[] => ['--host', '127.0.0.1', '--port', String(port), '--partner', 'CXCLIENT', '--password', 'test123', '--server', 'PESITSRV',
      '--file', 'TESTFILE', '--sync-kb', '64', '--window', '1', '--article-size', '4096', '--transfer-id', String(transferId), '--state-dir', join(dir, 'state'), path]
    const stem = transferStem({ partner: 'CXCLIENT', file: 'TESTFILE', transferId })
    const ckptPath = join(dir, 'inbox', checkpointNameFor(stem, 0))
    // kill -9 once a few sync points are durable, while the push is running
    let killedAt = -1
    const watcher = (async () => {
      for (let i = 0; i < 30_000 && killedAt < 0; i++) {
        const c = await readFile(ckptPath, 'utf8').then((s) => JSON.parse(s) as { syncPoint: number }, () => undefined)
        if (c !== undefined && c.syncPoint >= 5) {
          a.child.kill('SIGKILL')
          killedAt = c.syncPoint
          return
        }
        await new Promise((resolve) => setTimeout(resolve, 2))
      }
    })()
    const io1 = captureIo()
    const code1 = await runSend(args(a.port), io1)
    await watcher
    assert.equal(code1, 1, `the first attempt must be cut (killed at sync point ${killedAt}): ${io1.out()}`)
    assert.ok(killedAt >= 5)
    const acked = Number(/(\d+) bytes acknowledged/.exec(io1.err())?.[1] ?? -1)
    assert.ok(acked >= 0, io1.err())
    const partialSize = (await stat(join(dir, 'inbox', partialNameFor(stem, 0)))).size

    const b = await startServerProcess(dir)
    children.push(b.child)
    const io2 = captureIo()
    assert.equal(await runSend(['--restart', ...args(b.port)], io2), 0, io2.err())
    const m = /resumed at sync point (\d+) \(byte (\d+)\)/.exec(io2.out())
    assert.ok(m !== null, io2.out())
    const resumedAt = Number(m[2])
    assert.ok(resumedAt >= acked, `resumed at ${resumedAt}, ${acked} were acknowledged`)
    assert.ok(partialSize - resumedAt <= 64 * 1024, `resent ${partialSize - resumedAt} bytes`)
    assert.equal(sha(await readFile(join(dir, 'inbox', `CXCLIENT_TESTFILE_${transferId}`))), sha(src))
  })
})

describe('kill -9 during a pull, then vectis receive --restart', () => {
  const args = (port: number, dir: string, dest: string): string[] => ['--host', '127.0.0.1', '--port', String(port), '--partner', 'CXCLIENT',
    '--password', 'test123', '--server', 'PESITSRV', '--file', 'OUTBOX', '--name', 'src.bin', '--sync-kb', '64', '--window', '1',
    '--state-dir', join(dir, 'state'), dest]

  async function setUp (t: { after: (fn: () => Promise<void>) => void }): Promise<{ dir: string, src: Buffer, children: ChildProcess[] }> {
    const dir = await mkdtemp(join(tmpdir(), 'vectis-kill-pull-'))
    const children: ChildProcess[] = []
    t.after(async () => {
      for (const c of children) c.kill('SIGKILL')
      await rm(dir, { recursive: true, force: true })
    })
    const src = patternBytes(32 << 20, 12)
    await mkdir(join(dir, 'outbox'))
    await writeFile(join(dir, 'outbox', 'src.bin'), src)
    return { dir, src, children }
  }

  /** Polls `path` (JSON) until `ready` holds for it, then kills `child`; returns what it read. */
  async function killWhen<T> (path: string, ready: (x: T) => boolean, child: ChildProcess): Promise<T | undefined> {
    for (let i = 0; i < 30_000; i++) {
      const x = await readFile(path, 'utf8').then((s) => JSON.parse(s) as T, () => undefined)
      if (x !== undefined && ready(x)) {
        child.kill('SIGKILL')
        return x
      }
      await new Promise((resolve) => setTimeout(resolve, 2))
    }
    return undefined
  }

  it('of the server: completes on a new server process, SHA-256 equal, resent bytes ≤ one sync interval', async (t) => {
    const { dir, src, children } = await setUp(t)
    const a = await startServerProcess(dir)
    children.push(a.child)
    const dest = join(dir, 'got.bin')
    // Killed once the requester has made a few sync points durable (its restart state says so).
    const statePath = statePathFor({ 'state-dir': join(dir, 'state') }, {}, 'receive', ['CXCLIENT', 'PESITSRV', 'OUTBOX', 'src.bin', dest])
    const watcher = killWhen<{ checkpoint: { syncPoint: number } }>(statePath, (s) => s.checkpoint.syncPoint >= 5, a.child)
    const io1 = captureIo()
    const code1 = await runReceive(args(a.port, dir, dest), io1)
    const killedAt = await watcher
    assert.equal(code1, 1, `the first attempt must be cut (killed at ${killedAt?.checkpoint.syncPoint}): ${io1.out()}`)
    const durable = Number(/(\d+) bytes durable/.exec(io1.err())?.[1] ?? -1)
    assert.ok(durable >= 0, io1.err())
    const partialSize = (await stat(partialPathOf(dest))).size

    const b = await startServerProcess(dir)
    children.push(b.child)
    const io2 = captureIo()
    assert.equal(await runReceive(['--restart', ...args(b.port, dir, dest)], io2), 0, io2.err())
    const m = /resumed at sync point (\d+) \(byte (\d+)\)/.exec(io2.out())
    assert.ok(m !== null, io2.out())
    assert.equal(Number(m[2]), durable)
    assert.ok(partialSize - durable <= 64 * 1024, `resent ${partialSize - durable} bytes`)
    assert.equal(sha(await readFile(dest)), sha(src))
  })

  it('of the requester: vectis receive --restart completes, SHA-256 equal, resent bytes ≤ one sync interval', async (t) => {
    const { dir, src, children } = await setUp(t)
    const server = await startServerProcess(dir)
    children.push(server.child)
    const dest = join(dir, 'got.bin')
    const requester = spawn(process.execPath, ['--import', 'tsx', 'bin/vectis.ts', 'receive', ...args(server.port, dir, dest)], { cwd: root, stdio: 'ignore' })
    children.push(requester)
    const exited = new Promise((resolve) => requester.once('exit', resolve))
    const statePath = statePathFor({ 'state-dir': join(dir, 'state') }, {}, 'receive', ['CXCLIENT', 'PESITSRV', 'OUTBOX', 'src.bin', dest])
    const killed = await killWhen<{ checkpoint: { syncPoint: number, offset: number } }>(statePath, (s) => s.checkpoint.syncPoint >= 5, requester)
    assert.ok(killed !== undefined, 'the requester reached sync point 5')
    await exited
    const partialSize = (await stat(partialPathOf(dest))).size
    const io = captureIo()
    assert.equal(await runReceive(['--restart', ...args(server.port, dir, dest)], io), 0, io.err())
    const m = /resumed at sync point (\d+) \(byte (\d+)\)/.exec(io.out())
    assert.ok(m !== null, io.out())
    assert.ok(Number(m[2]) >= killed.checkpoint.offset)
    assert.ok(partialSize - Number(m[2]) <= 64 * 1024, `resent ${partialSize - Number(m[2])} bytes`)
    assert.equal(sha(await readFile(dest)), sha(src))
  })
})
