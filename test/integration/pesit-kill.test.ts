import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { patternBytes } from '../helpers/pesit-vectors.js'
import { startServerProcess } from '../helpers/pesit-harness.js'
import { captureIo } from '../helpers/cli-io.js'
import { runSend } from '../../cli/send.js'
import { transferStem } from '../../transfer/config-types.js'

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
    const ckptPath = join(dir, 'inbox', `${stem}.ckpt`)
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
    const partialSize = (await stat(join(dir, 'inbox', `${stem}.part`))).size

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
