/**
 * Fault injection for the tests that prove what happens when a leader dies or freezes at the worst moment
 * (`VECTIS_FAULT_INJECTION`, docs/contract.md §2; off unless set). A point named there kills (SIGKILL) or stops
 * (SIGSTOP: it goes on at SIGCONT) this process when the code reaches it, after one line on stderr saying so,
 * written synchronously so that it is not lost: the test can then check that the window was hit.
 */
import { writeSync } from 'node:fs'

export const FAULT_POINTS = [
  /** a received file was renamed to its final name; its ACK(TRANS.END) is not sent */
  'kill-after-rename',
  /** SIGSTOP of this process after the lease check that precedes the delivery of a received file, before it */
  'pause-before-rename',
  /**
   * SIGSTOP of this process, once, after the lease check that precedes a checkpoint of a push's first attempt at its
   * third sync point or later (earlier ones are acknowledged: a restart elsewhere has something to resume from),
   * before that write; restarts never stop there, so the member that takes the transfer over goes on
   */
  'pause-before-checkpoint'
] as const

/** `pause-before-checkpoint` stops before the first checkpoint at or past this sync point, once per process. */
export const PAUSED_CHECKPOINT = 3
export type FaultPoint = typeof FAULT_POINTS[number]

/** The line on stderr that shows the window was hit. */
function announce (point: FaultPoint, level: 'warn' | 'fatal'): void {
  writeSync(2, `${JSON.stringify({ level, time: new Date().toISOString(), pid: process.pid, msg: `fault injection: ${point}` })}\n`)
}

/** Stops this process (SIGSTOP) until someone sends SIGCONT: a leader frozen at `point`. */
export function pauseHere (point: FaultPoint): void {
  announce(point, 'warn')
  process.kill(process.pid, 'SIGSTOP')
}

const paused = new Set<FaultPoint>()

/** `pauseHere`, the first time this process reaches `point` only. */
export function pauseOnce (point: FaultPoint): void {
  if (paused.has(point)) return
  paused.add(point)
  pauseHere(point)
}

export function killHere (point: FaultPoint): never {
  announce(point, 'fatal')
  process.kill(process.pid, 'SIGKILL')
  // SIGKILL is not delivered synchronously everywhere: nothing more may happen meanwhile.
  for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000)
}
