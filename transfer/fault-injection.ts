/**
 * Fault injection for the tests that prove what happens when a leader dies at the worst moment
 * (`VECTIS_FAULT_INJECTION`, docs/contract.md §2; off unless set). A point named there kills this process with
 * SIGKILL when the code reaches it, after one line on stderr saying so, written synchronously so that it is not
 * lost with the process: the test can then check that the window was hit.
 */
import { writeSync } from 'node:fs'

export const FAULT_POINTS = [
  /** a received file was renamed to its final name; its ACK(TRANS.END) is not sent */
  'kill-after-rename'
] as const
export type FaultPoint = typeof FAULT_POINTS[number]

export function killHere (point: FaultPoint): never {
  writeSync(2, `${JSON.stringify({ level: 'fatal', time: new Date().toISOString(), pid: process.pid, msg: `fault injection: ${point}` })}\n`)
  process.kill(process.pid, 'SIGKILL')
  // SIGKILL is not delivered synchronously everywhere: nothing more may happen meanwhile.
  for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000)
}
