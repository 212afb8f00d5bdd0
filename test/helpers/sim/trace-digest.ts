/**
 * A digest of everything a simulation run fed to the machines and got back: each `handle(input, now)` call of each
 * member, with the member's name, incarnation and local time, and the outputs except the log lines (their wording is
 * not behaviour). Canonical JSON (sorted keys, no `undefined`), so a refactoring that builds the same messages with
 * their fields in another order keeps the digest. Two builds with the same digests for a seed behaved identically.
 */
import { createHash, type Hash } from 'node:crypto'
import type { MembershipInput, MembershipOutput } from '../../../cluster/membership/types.js'

export function canonicalJson (v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null'
  if (Array.isArray(v)) return `[${v.map((x) => x === undefined ? 'null' : canonicalJson(x)).join(',')}]`
  const keys = Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort()
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`
}

export class TraceDigest {
  private readonly hash: Hash = createHash('sha256')
  private steps = 0

  step (who: string, incarnation: string, now: number, input: MembershipInput, outputs: MembershipOutput[]): void {
    this.steps++
    const out = outputs.filter((o) => o.type !== 'log')
    this.hash.update(canonicalJson({ who, incarnation, now, input, out }))
    this.hash.update('\n')
  }

  /** Hex SHA-256 of every step so far, prefixed with the step count (a quick hint of where two runs diverge). */
  value (): string { return `${this.steps}:${this.hash.copy().digest('hex').slice(0, 32)}` }
}
