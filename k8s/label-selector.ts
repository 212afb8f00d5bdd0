/**
 * Kubernetes label selectors (the `labelSelector` query string syntax): equality (`a=b`, `a==b`), inequality
 * (`a!=b`), set-based (`a in (x,y)`, `a notin (x,y)`) and existence (`a`, `!a`), requirements joined by commas.
 *
 * Used to validate `VECTIS_POD_SELECTOR` at start-up (a typo there would make the leader fence nothing) and by the
 * API emulator to filter pods exactly as an API server would. Label key/value syntax is checked like the API
 * server does (qualified names, values of at most 63 characters).
 */

export type Requirement =
  | { key: string, op: '=' | '!=', value: string }
  | { key: string, op: 'in' | 'notin', values: string[] }
  | { key: string, op: 'exists' | '!' }

export class LabelSelectorError extends Error {
  override name = 'LabelSelectorError'
}

const NAME_PART = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/

/** Why `key` is not a valid label (or annotation) key, or undefined when it is. */
export function labelKeyError (key: string): string | undefined {
  const slash = key.indexOf('/')
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined
  const name = slash >= 0 ? key.slice(slash + 1) : key
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    return `prefix of "${key}" must be a DNS subdomain of at most 253 characters`
  }
  if (name.length === 0 || name.length > 63 || !NAME_PART.test(name)) {
    return `name part of "${key}" must be 1-63 characters, alphanumeric at both ends, with '-', '_' or '.' inside`
  }
  return undefined
}

/** Why `value` is not a valid label value, or undefined when it is. */
export function labelValueError (value: string): string | undefined {
  if (value.length > 63 || !LABEL_VALUE.test(value)) {
    return `label value "${value}" must be at most 63 characters, alphanumeric at both ends, with '-', '_' or '.' inside`
  }
  return undefined
}

/** Splits on commas that are not inside parentheses. */
function splitTop (s: string): string[] {
  const out: string[] = []
  let depth = 0
  let cur = ''
  for (const ch of s) {
    if (ch === '(') depth++
    if (ch === ')') depth--
    if (depth < 0) throw new LabelSelectorError(`unbalanced ')' in selector "${s}"`)
    if (ch === ',' && depth === 0) { out.push(cur); cur = '' } else cur += ch
  }
  if (depth !== 0) throw new LabelSelectorError(`unbalanced '(' in selector "${s}"`)
  out.push(cur)
  return out
}

function checkKey (key: string, selector: string): string {
  const err = labelKeyError(key)
  if (err !== undefined) throw new LabelSelectorError(`invalid selector "${selector}": ${err}`)
  return key
}

function checkValue (value: string, selector: string): string {
  const err = labelValueError(value)
  if (err !== undefined) throw new LabelSelectorError(`invalid selector "${selector}": ${err}`)
  return value
}

/** Parses a selector; the empty selector matches everything. Throws LabelSelectorError with the reason. */
export function parseLabelSelector (selector: string): Requirement[] {
  const trimmed = selector.trim()
  if (trimmed === '') return []
  const reqs: Requirement[] = []
  for (const raw of splitTop(trimmed)) {
    const part = raw.trim()
    if (part === '') throw new LabelSelectorError(`invalid selector "${selector}": empty requirement`)
    const set = /^(\S+)\s+(in|notin)\s*\((.*)\)$/.exec(part)
    if (set !== null) {
      const values = set[3]!.split(',').map((v) => v.trim())
      if (values.length === 1 && values[0] === '') {
        throw new LabelSelectorError(`invalid selector "${selector}": "${set[2]}" needs at least one value`)
      }
      reqs.push({ key: checkKey(set[1]!, selector), op: set[2] as 'in' | 'notin', values: values.map((v) => checkValue(v, selector)) })
      continue
    }
    const cmp = /^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/.exec(part)
    if (cmp !== null) {
      reqs.push({ key: checkKey(cmp[1]!, selector), op: cmp[2] === '!=' ? '!=' : '=', value: checkValue(cmp[3]!.trim(), selector) })
      continue
    }
    if (part.startsWith('!')) {
      reqs.push({ key: checkKey(part.slice(1).trim(), selector), op: '!' })
      continue
    }
    if (/\s/.test(part)) throw new LabelSelectorError(`invalid selector "${selector}": cannot parse "${part}"`)
    reqs.push({ key: checkKey(part, selector), op: 'exists' })
  }
  return reqs
}

/**
 * Parses `VECTIS_POD_SELECTOR` and checks what the label controller needs of it besides the syntax: it must not be
 * empty (it bounds the pods whose labels are changed) nor select on the leader label (standbys would fall out of
 * it). Throws LabelSelectorError with the reason. The daemon's configuration runs it at start-up; the controller
 * runs it again on what it is given.
 */
export function validatePodSelector (selector: string, leaderLabel: string): Requirement[] {
  const reqs = parseLabelSelector(selector)
  if (reqs.length === 0) throw new LabelSelectorError('must not be empty: it bounds the pods whose labels are changed')
  if (reqs.some((r) => r.key === leaderLabel)) {
    throw new LabelSelectorError(`must not use the leader label "${leaderLabel}" (VECTIS_LEADER_LABEL): standbys would fall out of it`)
  }
  return reqs
}

export function matchesSelector (reqs: readonly Requirement[], labels: Readonly<Record<string, string>> | undefined): boolean {
  const l = labels ?? {}
  for (const r of reqs) {
    const has = Object.prototype.hasOwnProperty.call(l, r.key)
    const v = has ? l[r.key] : undefined
    switch (r.op) {
      case '=': if (v !== r.value) return false; break
      // As in Kubernetes: `a!=b` also matches objects without the label.
      case '!=': if (v === r.value) return false; break
      case 'in': if (v === undefined || !r.values.includes(v)) return false; break
      case 'notin': if (v !== undefined && r.values.includes(v)) return false; break
      case 'exists': if (!has) return false; break
      case '!': if (has) return false; break
    }
  }
  return true
}

/** The `key=value` requirements of a selector as the labels a pod needs to match them (the dev cluster's pods). */
export function equalityLabels (reqs: readonly Requirement[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const r of reqs) if (r.op === '=') out[r.key] = r.value
  return out
}
