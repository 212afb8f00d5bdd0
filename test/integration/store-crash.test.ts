/**
 * kill -9 of a process writing the journal in a loop, 100 times, reopening the same database each time: the file
 * is always readable (integrity_check ok) and every change whose commit had returned (the writer printed its seq
 * only after) is there; so is every epoch it raised.
 *
 * What this proves: crash consistency of the process (SQLite's WAL recovery, our transaction boundaries, no
 * change reported before its commit). What it cannot prove: durability against power loss, since kill -9 keeps
 * the page cache; that rests on synchronous=FULL (asserted in store-database.test.ts) and SQLite's fsyncs.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import DatabaseConstructor from 'better-sqlite3'
import { DATABASE_FILE_NAME } from '../../store/database.js'
import { tempDataDir } from '../helpers/store-fixtures.js'
import { transpileForNode } from '../helpers/transpile.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const WRITER = join(ROOT, 'test/helpers/store-writer.ts')
const ROUNDS = 100
/**
 * Writers started ahead of their round: loading TypeScript and the modules (a few hundred ms) dominates a round,
 * so the next writers load while the current one runs. They wait for a line on stdin before opening the
 * database, so only one process ever writes it.
 */
const PREPARED = 3
const DEADLINE_MS = 20_000

interface Round { lines: string[], signal: NodeJS.Signals | null, code: number | null }

/** One writer process and what it printed so far. */
class Writer {
  readonly child: ChildProcess
  readonly done: Promise<Round>
  private buf = ''
  private stderr = ''
  private waiters: Array<() => void> = []

  constructor (script: string, dir: string, member: string) {
    this.child = spawn(process.execPath, [script, dir, member, '--wait'], {
      cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe']
    })
    this.child.stdout!.on('data', (d: Buffer) => { this.buf += d.toString(); this.wake() })
    this.child.stderr!.on('data', (d: Buffer) => { this.stderr += d.toString() })
    this.child.stdin!.on('error', () => {}) // a writer killed before it read "go"
    this.done = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        this.wake()
        // Only complete lines: a line cut by the kill was not reported.
        resolve({ lines: this.buf.split('\n').slice(0, -1), code, signal })
      })
    })
  }

  /** Complete lines printed so far. */
  lines (): string[] { return this.buf.split('\n').slice(0, -1) }

  /** Resolves true once `cond` holds, false if the process ended or the deadline passed first. */
  async until (cond: (lines: string[]) => boolean): Promise<boolean> {
    const deadline = Date.now() + DEADLINE_MS
    for (;;) {
      if (cond(this.lines())) return true
      if (this.child.exitCode !== null || this.child.signalCode !== null || Date.now() > deadline) return false
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()))
        this.waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  go (): void { this.child.stdin!.end('go\n') }

  errors (): string { return this.stderr }

  private wake (): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }
}

/** Lets the writer run and kills it with SIGKILL at a random moment: mostly mid-loop, sometimes while opening. */
async function killRound (w: Writer): Promise<Round> {
  w.go()
  if (Math.random() < 0.15) {
    // While opening: creating, checking or migrating the file, or raising the epoch.
    assert.ok(await w.until((l) => l.includes('opening')), `the writer did not start: ${w.errors()}`)
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 20))
  } else {
    // After a random number of reported commits; the signal lands while it keeps committing.
    const k = 1 + Math.floor(Math.random() * 40)
    const reached = await w.until((l) => l.filter((x) => x.startsWith('seq ')).length >= k)
    assert.ok(reached, `the writer stopped before ${k} changes: ${w.errors()}`)
    if (Math.random() < 0.5) await new Promise((resolve) => setTimeout(resolve, Math.random() * 3))
  }
  w.child.kill('SIGKILL')
  const r = await w.done
  assert.equal(r.signal, 'SIGKILL', `the writer ended before it was killed (code ${r.code}): ${w.errors()}`)
  return r
}

interface Printed { seqs: Map<number, string>, lastOfTransfer: Map<string, number>, epochs: number[] }

function parse (lines: string[], into: Printed): void {
  for (const line of lines) {
    const [word, a, b] = line.split(' ')
    if (word === 'seq') {
      const seq = Number(a)
      into.seqs.set(seq, b!)
      into.lastOfTransfer.set(b!, Math.max(into.lastOfTransfer.get(b!) ?? 0, seq))
    } else if (word === 'epoch') {
      into.epochs.push(Number(a))
    }
  }
}

function verify (dir: string, printed: Printed): void {
  const file = join(dir, DATABASE_FILE_NAME)
  if (!existsSync(file)) {
    assert.equal(printed.seqs.size, 0, 'changes were reported but there is no database')
    return
  }
  // Read-only: the WAL left by the kill stays for the next writer to recover.
  const db = new DatabaseConstructor(file, { readonly: true })
  try {
    assert.deepEqual(db.pragma('integrity_check', { simple: false }), [{ integrity_check: 'ok' }])
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'journal_log'").all()
    if (tables.length === 0) {
      assert.equal(printed.seqs.size, 0, 'changes were reported but the schema is missing')
      return
    }
    const logged = new Map((db.prepare('SELECT seq, transfer_key FROM journal_log').all() as Array<{ seq: number, transfer_key: string }>)
      .map((r) => [r.seq, r.transfer_key]))
    for (const [seq, id] of printed.seqs) {
      assert.equal(logged.get(seq), id, `seq ${seq} of ${id} was reported committed but is missing`)
    }
    const rowSeq = db.prepare('SELECT seq FROM transfers WHERE id = ?')
    for (const [id, seq] of printed.lastOfTransfer) {
      const row = rowSeq.get(id) as { seq: number } | undefined
      assert.ok(row !== undefined && row.seq >= seq, `transfer ${id} went back before its reported change ${seq}`)
    }
    if (printed.epochs.length > 0) {
      const state = db.prepare('SELECT epoch_number FROM cluster_state WHERE id = 1').get() as { epoch_number: number }
      assert.ok(state.epoch_number >= Math.max(...printed.epochs), 'a reported epoch was lost')
    }
  } finally {
    db.close()
  }
}

test(`kill -9 of a journal writer, ${ROUNDS} rounds: always readable, no reported commit lost`, async (t) => {
  const dir = tempDataDir(t, 'vectis-crash-')
  // The writer runs as plain JavaScript: see transpile.ts for why.
  const script = transpileForNode(WRITER, tempDataDir(t, 'vectis-crash-writer-'))
  const all = new Set<Writer>()
  t.after(async () => {
    for (const w of all) w.child.kill('SIGKILL')
    await Promise.all([...all].map(async (w) => w.done))
  })
  const prepare = (): Writer => { const w = new Writer(script, dir, 'vectis-0'); all.add(w); return w }
  const queue: Writer[] = []
  for (let i = 0; i < Math.min(PREPARED, ROUNDS); i++) queue.push(prepare())

  const printed: Printed = { seqs: new Map(), lastOfTransfer: new Map(), epochs: [] }
  let roundsWithWrites = 0
  for (let round = 0; round < ROUNDS; round++) {
    const w = queue.shift()!
    assert.ok(await w.until((l) => l.includes('loaded')), `writer did not load: ${w.errors()}`)
    if (round + queue.length + 1 < ROUNDS) queue.push(prepare())
    const before = printed.seqs.size
    const epochsBefore = printed.epochs.length
    const r = await killRound(w)
    all.delete(w)
    parse(r.lines, printed)
    if (printed.seqs.size > before) roundsWithWrites++
    // Each round raises an epoch above the last reported one: none was lost, none reused.
    const e = printed.epochs
    if (e.length > epochsBefore && epochsBefore > 0) assert.ok(e[e.length - 1]! > e[epochsBefore - 1]!)
    verify(dir, printed)
  }
  // The test must have exercised something: most rounds wrote before they were killed.
  assert.ok(roundsWithWrites >= ROUNDS / 2, `only ${roundsWithWrites} rounds wrote anything`)
  assert.ok(printed.seqs.size >= ROUNDS * 5, `only ${printed.seqs.size} changes reported`)
  assert.ok(new Set(printed.epochs).size === printed.epochs.length, 'an epoch was raised twice')
})
