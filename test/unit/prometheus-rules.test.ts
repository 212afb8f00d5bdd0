// The alerts of deploy/components/monitoring/prometheusrule.yaml, tested with Prometheus's own `promtool test rules`
// (test/fixtures/prometheus/vectis-rules.test.yaml): every alert fires in one case and stays silent in another;
// no `for:` is shorter than two scrape intervals (scrapes of different members are not simultaneous, so a
// hand-over shows 0 or 2 leaders for one scrape); every alert has its runbook section in docs/runbook.md.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse, stringify } from 'yaml'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const RULES = join(ROOT, 'deploy', 'components', 'monitoring', 'prometheusrule.yaml')
const MONITOR = join(ROOT, 'deploy', 'components', 'monitoring', 'servicemonitor.yaml')
const CASES = join(ROOT, 'test', 'fixtures', 'prometheus', 'vectis-rules.test.yaml')
const RUNBOOK = join(ROOT, 'docs', 'runbook.md')

interface Rule { alert: string, expr: string, for?: string, annotations: Record<string, string> }
interface Cases { tests: Array<{ alert_rule_test?: Array<{ alertname: string, exp_alerts: unknown[] }> }> }

const groups = (parse(readFileSync(RULES, 'utf8')) as { spec: { groups: Array<{ name: string, rules: Rule[] }> } }).spec.groups
const rules = groups.flatMap((g) => g.rules)

function seconds (d: string): number {
  const m = /^(\d+)(s|m|h)$/.exec(d)
  assert.ok(m !== null, `duration ${d}`)
  return Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] as 's' | 'm' | 'h']
}

test('promtool test rules: every alert\'s cases pass', (t) => {
  if (spawnSync('promtool', ['--version']).error !== undefined) {
    t.skip('promtool is not installed (Debian package prometheus: apt-get install prometheus; .ci/run installs it)')
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'vectis-rules-'))
  try {
    writeFileSync(join(dir, 'vectis-rules.yaml'), stringify({ groups }))
    copyFileSync(CASES, join(dir, 'vectis-rules.test.yaml'))
    const check = spawnSync('promtool', ['check', 'rules', 'vectis-rules.yaml'], { cwd: dir, encoding: 'utf8' })
    assert.equal(check.status, 0, `${check.stdout}${check.stderr}`)
    const run = spawnSync('promtool', ['test', 'rules', 'vectis-rules.test.yaml'], { cwd: dir, encoding: 'utf8' })
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('every alert has a case where it fires and one where it does not', () => {
  const cases = (parse(readFileSync(CASES, 'utf8')) as Cases).tests.flatMap((x) => x.alert_rule_test ?? [])
  for (const r of rules) {
    const mine = cases.filter((c) => c.alertname === r.alert)
    assert.ok(mine.some((c) => c.exp_alerts.length > 0), `${r.alert}: no case where it fires`)
    assert.ok(mine.some((c) => c.exp_alerts.length === 0), `${r.alert}: no case where it stays silent`)
  }
  const names = new Set(rules.map((r) => r.alert))
  for (const c of cases) assert.ok(names.has(c.alertname), `a case for an alert that does not exist: ${c.alertname}`)
})

test('no alert waits less than two scrape intervals; each has its runbook section', () => {
  const monitor = parse(readFileSync(MONITOR, 'utf8')) as { spec: { endpoints: Array<{ interval: string }> } }
  const scrape = Math.max(...monitor.spec.endpoints.map((e) => seconds(e.interval)))
  const runbook = readFileSync(RUNBOOK, 'utf8')
  for (const r of rules) {
    if (r.for !== undefined) assert.ok(seconds(r.for) >= 2 * scrape, `${r.alert}: for ${r.for} is shorter than two scrapes (${scrape} s each)`)
    else assert.match(r.expr, /\[\d+[mh]\]/, `${r.alert}: without for:, it must look at a window of several scrapes`)
    assert.equal(r.annotations.runbook, `docs/runbook.md#${r.alert.toLowerCase()}`)
    assert.match(runbook, new RegExp(`^## ${r.alert}$`, 'm'), `${r.alert}: no section in docs/runbook.md`)
  }
})
