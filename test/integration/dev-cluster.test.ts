// `vectis dev-cluster` end to end, as a user runs it: the built CLI as a child process on this file's own loopback
// range (127.0.57.x) and a free load-balancer port; a file pushed through the load balancer with `vectis send`, the
// leader killed, the label and the load balancer following the new leader, a second push, then SIGTERM.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { waitFor } from '../helpers/wait-for.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const VECTIS = join(ROOT, 'dist', 'bin', 'vectis.js')
const BASE_IP = '127.0.57.10'

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

interface Table { leader: string, label: string, lb: string, rows: Map<string, string> }

/** The last complete status table printed (non-TTY output prints one per change). */
function lastTable (out: string): Table | undefined {
  const blocks = out.split(/^\d\d:\d\d:\d\d status\n/m)
  for (let i = blocks.length - 1; i > 0; i--) {
    const block = blocks[i]!
    if (!/^load balancer /m.test(block)) continue // still being written
    const head = /^leader: (\S+(?: \S+)?)\s+views: .*?\s+label: (\S+)\s+lb -> (.*)$/m.exec(block)
    if (head === null) continue
    const rows = new Map<string, string>()
    for (const line of block.split('\n')) {
      const m = /^(vectis-\d+)\s/.exec(line)
      if (m !== null) rows.set(m[1]!, line)
    }
    return { leader: head[1]!, label: head[2]!, lb: head[3]!, rows }
  }
  return undefined
}

/** The leader once the table agrees: one leader, its pod alone labelled, the load balancer on it, PeSIT serving. */
function settledLeader (out: string): string | undefined {
  const t = lastTable(out)
  if (t === undefined || !/^vectis-\d+$/.test(t.leader)) return undefined
  const row = t.rows.get(t.leader)
  if (t.label !== t.leader || !t.lb.startsWith(`${t.leader} `) || row === undefined || !/\sLEADER\s.*\sserving\s/.test(row)) return undefined
  return t.leader
}

async function run (args: string[], timeoutMs: number): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    execFile(process.execPath, [VECTIS, ...args], { cwd: ROOT, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolve({ code, stdout, stderr })
    })
  })
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

test('vectis dev-cluster: a push through the load balancer, the leader killed, the label and the load balancer follow, SIGTERM stops all', { timeout: 150_000 }, async (t) => {
  if (!existsSync(VECTIS)) throw new Error(`${VECTIS} does not exist: run \`npm run build\` first`)
  const dir = await mkdtemp(join(tmpdir(), 'vectis-devcluster-test-'))
  const data = join(dir, 'data')
  let out = ''
  let err = ''
  const pids = new Set<number>()
  const child: ChildProcess = spawn(process.execPath, [VECTIS, 'dev-cluster', '--nodes', '3', '--data', data, '--base-ip', BASE_IP, '--lb-port', '0'], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe']
  })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => { resolve({ code, signal }) })
  })
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d
    for (const m of d.matchAll(/ started pid (\d+)/g)) pids.add(Number(m[1]))
  })
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d })
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch { /* gone */ } }
    await rm(dir, { recursive: true, force: true })
  })
  const context = (): string => `\n--- dev-cluster stdout (tail) ---\n${out.slice(-4000)}\n--- stderr ---\n${err.slice(-2000)}`

  // The push hint carries the load balancer's port and the demo credentials.
  const hint = await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`dev-cluster exited ${child.exitCode}${context()}`)
    return /^push a file: .* send (--host \S+ --port \d+ --partner DEMO --password \S+ --server PESITSRV --file DEMOFILE) PATH$/m.exec(out)?.[1]
  }, { timeoutMs: 30_000, what: 'the push hint' }).catch((e: Error) => { throw new Error(`${e.message}${context()}`) })
  assert.match(out, /dns server\s+127\.0\.0\.1:\d+/)
  assert.match(out, /kubernetes api\s+http:\/\/127\.0\.0\.1:\d+/)
  for (let i = 0; i < 3; i++) assert.match(out, new RegExp(`member vectis-${i}\\s+127\\.0\\.57\\.${10 + i}\\s+http 127\\.0\\.57\\.${10 + i}:8080`))
  assert.match(out, /api credentials\s+user vectis password \S+/)
  // The web console's address on every member, served with the API's credentials.
  assert.match(out, /web console\s+http:\/\/127\.0\.57\.10:8080\/\s+http:\/\/127\.0\.57\.11:8080\/\s+http:\/\/127\.0\.57\.12:8080\//)
  const consolePassword = /api credentials\s+user vectis password (\S+)/.exec(out)![1]!
  const consolePage = await waitFor(async () => {
    const r = await fetch('http://127.0.57.11:8080/', { headers: { authorization: `Basic ${Buffer.from(`vectis:${consolePassword}`).toString('base64')}` } }).catch(() => undefined)
    return r?.status === 200 ? r : undefined
  }, { timeoutMs: 30_000, what: 'the console page of vectis-1' })
  assert.match(consolePage.headers.get('content-type') ?? '', /^text\/html/)
  assert.match(await consolePage.text(), /<script type="module" src="\/console\/[^"]+\.js"><\/script>/)
  const sendArgs = hint.split(' ')
  const inbox = join(data, 'shared', 'inbox', 'demo')

  const push = async (name: string): Promise<void> => {
    const src = join(dir, name)
    const bytes = randomBytes(200_000 + Math.floor(Math.random() * 1000))
    await writeFile(src, bytes)
    const r = await run(['send', ...sendArgs, '--state-dir', join(dir, 'send-state'), src], 30_000)
    assert.equal(r.code, 0, `vectis send failed: ${r.stderr}${context()}`)
    const id = /transfer id (\d+)/.exec(r.stdout)?.[1]
    assert.ok(id !== undefined, `no transfer id in: ${r.stdout}`)
    const file = (await readdir(inbox)).find((f) => f === `DEMO_DEMOFILE_${id}`)
    assert.ok(file !== undefined, `DEMO_DEMOFILE_${id} not in ${inbox}`)
    assert.equal(sha(await readFile(join(inbox, file))), sha(bytes))
  }

  const first = await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`dev-cluster exited ${child.exitCode}`)
    return settledLeader(out)
  }, { timeoutMs: 60_000, intervalMs: 100, what: 'one leader, labelled, behind the load balancer' }).catch((e: Error) => { throw new Error(`${e.message}${context()}`) })
  await push('one.bin')

  // kill -9 of the leader's process: its pid is the last one printed for it.
  const leaderPid = Number([...out.matchAll(new RegExp(`${first} started pid (\\d+)`, 'g'))].at(-1)![1])
  assert.ok(alive(leaderPid))
  const mark = out.length
  process.kill(leaderPid, 'SIGKILL')
  const second = await waitFor(() => {
    const l = settledLeader(out.slice(mark))
    return l !== undefined && l !== first ? l : undefined
  }, { timeoutMs: 30_000, intervalMs: 100, what: 'a new leader behind the load balancer' }).catch((e: Error) => { throw new Error(`${e.message}${context()}`) })
  const after = out.slice(mark)
  assert.match(after, new RegExp(`${first} pid ${leaderPid} killed by SIGKILL`))
  // The emulator's label history, as printed: the label left the old pod and reached the new one.
  const removed = after.indexOf(`label vectis-leader=true removed from ${first}`)
  const set = after.indexOf(`label vectis-leader=true set on ${second}`)
  assert.ok(removed >= 0 && set >= 0, `label moves not printed${context()}`)
  assert.match(after, new RegExp(`lb endpoint: ${second} 127\\.0\\.57\\.\\d+:\\d+`))
  // What a standby's console reads: its pod watch saw the label reach the new leader's pod and leave the others; it
  // measures the heartbeats of its coordinator (the new leader) only.
  const password = /api credentials\s+user vectis password (\S+)/.exec(out)![1]!
  const standby = ['vectis-0', 'vectis-1', 'vectis-2'].find((n) => n !== first && n !== second)!
  const statusUrl = `http://127.0.57.${10 + Number(standby.slice('vectis-'.length))}:8080/api/cluster/status`
  interface Row { name: string, labelled: boolean | null, heartbeatAgeMs: number | null }
  let rows: Row[] = []
  await waitFor(async () => {
    const res = await fetch(statusUrl, { headers: { authorization: `Basic ${Buffer.from(`vectis:${password}`).toString('base64')}` } })
    rows = ((await res.json()) as { members: Row[] }).members
    return rows.every((r) => r.name === second
      ? r.labelled === true && typeof r.heartbeatAgeMs === 'number'
      : r.labelled === false && r.heartbeatAgeMs === null) && rows.some((r) => r.name === standby)
  }, { timeoutMs: 10_000, intervalMs: 100, what: `${standby}'s status: ${second} alone labelled, its heartbeat measured` })
    .catch((e: Error) => { throw new Error(`${e.message}: ${JSON.stringify(rows)}${context()}`) })
  await push('two.bin')
  // The load balancer's own count: the second push went to the new leader's pod.
  await waitFor(() => {
    const row = lastTable(out)?.rows.get(second)
    return row !== undefined && Number(/(\d+)$/.exec(row)?.[1] ?? 0) >= 1
  }, { timeoutMs: 10_000, intervalMs: 100, what: `a connection routed to ${second} in the table` }).catch((e: Error) => { throw new Error(`${e.message}${context()}`) })

  child.kill('SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const exit = await Promise.race([exited, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`dev-cluster did not exit after SIGTERM${context()}`)) }, 40_000) })])
  clearTimeout(timer)
  assert.deepEqual(exit, { code: 0, signal: null }, context())
  assert.match(out, /stopped; data kept in /)
  assert.ok(pids.size >= 3)
  const left = [...pids].filter(alive)
  assert.deepEqual(left, [], `member processes left running: ${left.join(', ')}`)
})

test('vectis dev-cluster: a bad --config is exit code 2 naming the key, before any member starts', async (t) => {
  if (!existsSync(VECTIS)) throw new Error(`${VECTIS} does not exist: run \`npm run build\` first`)
  const dir = await mkdtemp(join(tmpdir(), 'vectis-devcluster-bad-'))
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  const config = join(dir, 'bad.yaml')
  await writeFile(config, 'servers:\n  - id: lower\n    port: 5000\n')
  const r = await run(['dev-cluster', '--config', config, '--data', join(dir, 'data'), '--base-ip', '127.0.57.20', '--lb-port', '0'], 20_000)
  assert.equal(r.code, 2, r.stderr)
  assert.match(r.stderr, /servers\[0\]\.id/)
  assert.doesNotMatch(r.stdout, /started pid/)
  const usage = await run(['dev-cluster', '--nodes', 'many'], 20_000)
  assert.equal(usage.code, 2)
  assert.match(usage.stderr, /--nodes expects an integer/)
})
