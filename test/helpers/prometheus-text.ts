/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), enough to prove that `/metrics`
 * parses: every sample line is `name{labels} value [timestamp]`, names and label names are legal, values are floats
 * (or ±Inf/NaN), TYPE appears at most once per family and before its samples. Throws on the first violation.
 */
export interface Sample { name: string, labels: Record<string, string>, value: number }

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/

function parseValue (s: string, line: number): number {
  if (s === '+Inf' || s === 'Inf') return Infinity
  if (s === '-Inf') return -Infinity
  if (s === 'NaN') return NaN
  if (!/^[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)$/.test(s)) throw new Error(`line ${line}: bad value "${s}"`)
  return Number(s)
}

export function parsePrometheusText (text: string): Sample[] {
  const samples: Sample[] = []
  const typed = new Map<string, string>()
  const seenSamples = new Set<string>()
  const lines = text.split('\n')
  lines.forEach((raw, i) => {
    const n = i + 1
    if (raw === '') return
    if (raw.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(raw)
      if (m === null) return // a plain comment
      if (!NAME.test(m[2]!)) throw new Error(`line ${n}: bad metric name ${m[2]}`)
      if (m[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3] ?? '')) throw new Error(`line ${n}: bad type ${m[3]}`)
        if (typed.has(m[2]!)) throw new Error(`line ${n}: second TYPE for ${m[2]}`)
        if (seenSamples.has(m[2]!)) throw new Error(`line ${n}: TYPE after samples of ${m[2]}`)
        typed.set(m[2]!, m[3]!)
      }
      return
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(raw)
    if (m === null) throw new Error(`line ${n}: not a sample: ${raw}`)
    const labels: Record<string, string> = {}
    if (m[3] !== undefined && m[3] !== '') {
      const re = /\s*([^=\s]+)="((?:[^"\\]|\\.)*)"\s*(,|$)/gy
      let lm: RegExpExecArray | null
      let consumed = 0
      while ((lm = re.exec(m[3])) !== null) {
        if (!LABEL.test(lm[1]!)) throw new Error(`line ${n}: bad label name ${lm[1]}`)
        labels[lm[1]!] = lm[2]!
        consumed = re.lastIndex
        if (lm[3] === '') break
      }
      if (consumed !== m[3].length) throw new Error(`line ${n}: bad labels {${m[3]}}`)
    }
    const family = m[1]!.replace(/_(bucket|sum|count|total|created)$/, '')
    seenSamples.add(m[1]!)
    seenSamples.add(family)
    samples.push({ name: m[1]!, labels, value: parseValue(m[4]!, n) })
  })
  return samples
}
