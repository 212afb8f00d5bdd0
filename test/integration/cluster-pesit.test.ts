/**
 * Only the leader serves PeSIT: on a 3-member cluster, only the leader's PeSIT port accepts connections; after a
 * kill -9 of the leader, only the new leader's does, and a push through it lands in the shared directory.
 */
import { it } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { ClusterHarness } from '../helpers/cluster-harness.js'
import { ROOT } from '../helpers/daemon-process.js'

const SUBNET = 61
const PESIT_PORT = 5000

/** 'open' when a TCP connection to the port is accepted, 'refused' when nothing listens. */
async function probe (host: string, port: number): Promise<'open' | 'refused'> {
  return await new Promise((resolve) => {
    const s = connect({ host, port })
    s.once('connect', () => { s.destroy(); resolve('open') })
    s.once('error', () => { resolve('refused') })
  })
}

it('only the leader has a PeSIT port open, before and after a kill -9 of the leader', async (t) => {
  const shared = join(ROOT, '.tmp', `cluster-pesit-${process.pid}`)
  mkdirSync(shared, { recursive: true })
  const config = join(shared, 'vectis.yaml')
  writeFileSync(config, `servers:\n  - id: PESITSRV\n    port: ${PESIT_PORT}\n    syncIntervalKb: 64\npartners:\n  - id: CXCLIENT\n    password: test123\n    access: write\nfiles:\n  - id: PAYMENTS\n    directory: inbox\n`)
  const h = await ClusterHarness.create(t, { nodes: 3, subnet: SUBNET, env: { VECTIS_CONFIG: config, VECTIS_SHARED_DIR: join(shared, 'shared') } })
  t.after(async () => { const { rm } = await import('node:fs/promises'); await rm(shared, { recursive: true, force: true }) })
  await h.startAll()

  const openPorts = async (alive: number[]): Promise<number[]> => {
    const r = await Promise.all(alive.map(async (i) => await probe(h.member(i).ip, PESIT_PORT)))
    return alive.filter((_, k) => r[k] === 'open')
  }

  const first = await h.waitFor(async () => await h.servingLeader([0, 1, 2]), { timeoutMs: 60_000, what: 'a leader running its PeSIT server' })
  // The three-member view must be known as the committed primary view before the crash (see waitViewCommitted; no
  // Kubernetes API or restart proves the death in this test). See the README.
  await h.waitViewCommitted()
  assert.deepEqual(await h.waitFor(async () => { const o = await openPorts([0, 1, 2]); return o.length === 1 ? o : undefined }, { what: 'one open PeSIT port' }), [first])

  await h.kill(first)
  const alive = [0, 1, 2].filter((i) => i !== first)
  const second = await h.waitFor(async () => await h.servingLeader(alive), { timeoutMs: 60_000, what: 'a new leader running its PeSIT server' }).catch(async (err: unknown) => {
    for (const i of alive) t.diagnostic(`${i}: ${JSON.stringify(await h.status(i).catch((e: unknown) => String(e)))}`)
    if (process.env.VECTIS_TEST_DUMP !== undefined) writeFileSync(process.env.VECTIS_TEST_DUMP, JSON.stringify(h.timeline.map((x) => ({ m: x.member, ...x.line }))))
    throw err
  })
  assert.notEqual(second, first)
  assert.deepEqual(await h.waitFor(async () => { const o = await openPorts(alive); return o.length === 1 ? o : undefined }, { what: 'only the new leader open' }), [second])

  const payload = randomBytes(300 * 1024)
  writeFileSync(join(shared, 'payload.bin'), payload)
  const send = spawnSync(process.execPath, [join(ROOT, 'dist', 'bin', 'vectis.js'), 'send', '--host', h.member(second).ip, '--port', String(PESIT_PORT),
    '--partner', 'CXCLIENT', '--password', 'test123', '--server', 'PESITSRV', '--file', 'PAYMENTS', '--quiet', '--state-dir', join(shared, 'state'),
    join(shared, 'payload.bin')], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(send.status, 0, send.stderr)
  const got = readdirSync(join(shared, 'shared', 'inbox')).filter((f) => !f.startsWith('.'))
  assert.equal(got.length, 1)
  assert.equal(createHash('sha256').update(readFileSync(join(shared, 'shared', 'inbox', got[0]!))).digest('hex'), createHash('sha256').update(payload).digest('hex'))
})
