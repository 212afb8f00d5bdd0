/**
 * A small strict argument parser for the `vectis` commands: `--name value`, `--name=value` and boolean `--flag`.
 * Unknown options are usage errors (exit code 2), never ignored.
 */
export class UsageError extends Error {
  override name = 'UsageError'
}

export interface OptionSpec {
  /** `string` takes a value, `boolean` does not. */
  type: 'string' | 'boolean'
  /** Environment variable read when the option is absent. */
  env?: string
}

export interface Parsed {
  options: Record<string, string | boolean | undefined>
  positionals: string[]
}

export function parseArgs (argv: string[], spec: Record<string, OptionSpec>, env: Record<string, string | undefined> = process.env): Parsed {
  const options: Parsed['options'] = {}
  const positionals: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--') { positionals.push(...argv.slice(i + 1)); break }
    if (!a.startsWith('--')) { positionals.push(a); continue }
    const eq = a.indexOf('=')
    const name = a.slice(2, eq < 0 ? undefined : eq)
    const s = spec[name]
    if (s === undefined) throw new UsageError(`unknown option --${name}`)
    if (s.type === 'boolean') {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`)
      options[name] = true
    } else {
      const v = eq >= 0 ? a.slice(eq + 1) : argv[++i]
      if (v === undefined || (eq < 0 && v.startsWith('--'))) throw new UsageError(`--${name} needs a value`)
      options[name] = v
    }
  }
  for (const [name, s] of Object.entries(spec)) {
    if (options[name] === undefined && s.env !== undefined && env[s.env] !== undefined && env[s.env] !== '') {
      options[name] = s.type === 'boolean' ? ['1', 'true', 'yes'].includes(env[s.env]!.toLowerCase()) : env[s.env]
    }
  }
  return { options, positionals }
}

export function intOption (name: string, v: string | boolean | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def
  if (typeof v !== 'string' || !/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new UsageError(`--${name} expects an integer from ${min} to ${max}, got ${String(v)}`)
  }
  return Number(v)
}
