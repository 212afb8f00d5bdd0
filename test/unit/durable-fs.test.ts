import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, readFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NodeDurableFs, type DurableFs } from '../../store/durable-fs.js'
import { CrashFs } from '../helpers/crash-fs.js'

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const dec = (b: Uint8Array): string => new TextDecoder().decode(b)

/** The same behavioural contract, run against the real layer and the double. */
function contract (name: string, make: () => Promise<{ fs: DurableFs, root: string, done: () => Promise<void> }>): void {
  describe(`DurableFs contract: ${name}`, () => {
    it('writes, reads back, sizes and truncates', async () => {
      const { fs, root, done } = await make()
      try {
        const f = await fs.open(join(root, 'a'), 'create')
        await f.write(enc('hello world'), 0)
        await f.write(enc('W'), 6)
        assert.equal(await f.size(), 11)
        const buf = new Uint8Array(32)
        const n = await f.read(buf, 0)
        assert.equal(dec(buf.subarray(0, n)), 'hello World')
        await f.truncate(5)
        assert.equal(await f.size(), 5)
        await f.sync()
        await f.close()
        const again = await fs.open(join(root, 'a'), 'existing')
        assert.equal(await again.size(), 5)
        await again.close()
      } finally { await done() }
    })

    it('writeFileAtomic replaces a file whole and leaves no temporary behind', async () => {
      const { fs, root, done } = await make()
      try {
        const p = join(root, 'ckpt.json')
        await fs.writeFileAtomic(p, enc('{"v":1}'))
        await fs.writeFileAtomic(p, enc('{"v":2}'))
        assert.equal(dec(await fs.readFile(p)), '{"v":2}')
        assert.deepEqual(await fs.readdir(root), ['ckpt.json'])
      } finally { await done() }
    })

    it('mkdirp creates nested directories and is idempotent; rename and unlink work', async () => {
      const { fs, root, done } = await make()
      try {
        const d = join(root, 'x', 'y', 'z')
        await fs.mkdirp(d)
        await fs.mkdirp(d)
        await fs.writeFileAtomic(join(d, 'f'), enc('1'))
        const before = await fs.stat(join(d, 'f'))
        await fs.rename(join(d, 'f'), join(d, 'g'))
        assert.equal(await fs.exists(join(d, 'f')), false)
        const st = await fs.stat(join(d, 'g'))
        assert.deepEqual(st, { ...before, size: 1, isFile: true }, 'a rename keeps the identity (size, mtime, inode)')
        assert.equal((await fs.stat(d))?.isFile, false)
        await fs.unlink(join(d, 'g'))
        await fs.unlink(join(d, 'g')) // absent: no error
        assert.equal(await fs.stat(join(d, 'g')), undefined)
        await assert.rejects(fs.open(join(d, 'missing'), 'existing'), /ENOENT/)
      } finally { await done() }
    })
  })
}

contract('node', async () => {
  const root = await mkdtemp(join(tmpdir(), 'vectis-dfs-'))
  return { fs: new NodeDurableFs(), root, done: async () => { await rm(root, { recursive: true, force: true }) } }
})

contract('crash double', async () => {
  const fs = new CrashFs()
  await fs.mkdirp('/data')
  return { fs, root: '/data', done: async () => {} }
})

describe('NodeDurableFs on disk', () => {
  it('writeFileAtomic honours the file mode', async () => {
    const root = await mkdtemp(join(tmpdir(), 'vectis-dfs-'))
    try {
      const fs = new NodeDurableFs()
      await fs.writeFileAtomic(join(root, 'key'), enc('k'), { mode: 0o600 })
      const { stat } = await import('node:fs/promises')
      assert.equal((await stat(join(root, 'key'))).mode & 0o777, 0o600)
      assert.equal(await readFile(join(root, 'key'), 'utf8'), 'k')
      assert.deepEqual(await readdir(root), ['key'])
    } finally { await rm(root, { recursive: true, force: true }) }
  })
})

describe('CrashFs: what a crash keeps', () => {
  it('drops writes that were not fsynced and keeps those that were', async () => {
    const fs = new CrashFs()
    await fs.mkdirp('/d')
    const f = await fs.open('/d/data', 'create')
    await fs.syncDir('/d')
    await f.write(enc('durable'), 0)
    await f.sync()
    await f.write(enc('-volatile'), 7)
    fs.crash()
    assert.equal(dec(await fs.readFile('/d/data')), 'durable')
    await assert.rejects(f.write(enc('x'), 0), /before the crash/)
  })

  it('drops a created file whose directory was not synced, even if its data was', async () => {
    const fs = new CrashFs()
    await fs.mkdirp('/d')
    const f = await fs.open('/d/new', 'create')
    await f.write(enc('data'), 0)
    await f.sync()
    fs.crash()
    assert.equal(await fs.exists('/d/new'), false)
  })

  it('a rename is lost without a directory sync, and kept with one', async () => {
    const fs = new CrashFs()
    await fs.mkdirp('/d')
    await fs.writeFileAtomic('/d/part', enc('p'))
    await fs.rename('/d/part', '/d/final')
    fs.crash()
    assert.equal(await fs.exists('/d/final'), false)
    assert.equal(dec(await fs.readFile('/d/part')), 'p')
    await fs.rename('/d/part', '/d/final')
    await fs.syncDir('/d')
    fs.crash()
    assert.equal(dec(await fs.readFile('/d/final')), 'p')
    assert.equal(await fs.exists('/d/part'), false)
  })

  it('writeFileAtomic is all-or-nothing across a crash at any step', async () => {
    for (let failAt = 0; failAt < 6; failAt++) {
      const fs = new CrashFs()
      await fs.mkdirp('/d')
      await fs.writeFileAtomic('/d/c', enc('old'))
      let ops = 0
      fs.onOperation = () => { if (ops++ === failAt) throw new Error('power cut') }
      await fs.writeFileAtomic('/d/c', enc('new')).catch(() => {})
      fs.onOperation = undefined
      fs.crash()
      const v = dec(await fs.readFile('/d/c'))
      assert.ok(v === 'old' || v === 'new', `crash at op ${failAt} left '${v}'`)
    }
  })
})
