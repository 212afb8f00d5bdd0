#!/usr/bin/env node
// Runs the test suite with Node's own test runner. Node 20's `--test` does not expand globs, so the files are
// listed here. `node test/run.mjs [unit|integration|<path fragment>...]` narrows the run.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

function walk (dir) {
  const out = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...walk(p))
    else if (name.endsWith('.test.ts')) out.push(relative(root, p))
  }
  return out
}

const filters = process.argv.slice(2)
let files = walk(join(root, 'test')).sort()
if (filters.length > 0) files = files.filter((f) => filters.some((x) => f.includes(x)))
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`)
  process.exit(2)
}

const concurrency = process.env.VECTIS_TEST_CONCURRENCY ?? '2'
// Run after the others, one at a time: the heaviest files (whole clusters with a client, Prometheus, a second
// release), and the ones that check views and leaderships moment by moment under kill, SIGTERM and SIGSTOP, whose
// timing a neighbour's load on a 2-core machine distorts (a member starved of CPU for seconds is a partition).
const ALONE = ['test/integration/cluster-leadership.test.ts', 'test/integration/cluster-membership.test.ts',
  'test/integration/e2e-short.test.ts', 'test/integration/prometheus-live.test.ts', 'test/integration/rolling-upgrade.test.ts',
  'test/integration/console-browser.test.ts']
const phases = [
  { files: files.filter((f) => !ALONE.includes(f)), concurrency },
  { files: files.filter((f) => ALONE.includes(f)), concurrency: '1' }
].filter((p) => p.files.length > 0)
// Skipped tests are listed once more at the end, each with what to install to run it.
const skipsDir = mkdtempSync(join(tmpdir(), 'vectis-test-skips-'))
let status = 0
for (const [i, phase] of phases.entries()) {
  const skipsFile = join(skipsDir, `skipped-${i}.txt`)
  const args = [
    '--import', 'tsx',
    '--import', './common/polyfill.ts',
    '--test',
    `--test-concurrency=${phase.concurrency}`,
    '--test-timeout=300000',
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=./test/skip-reporter.mjs', `--test-reporter-destination=${skipsFile}`,
    ...phase.files
  ]
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' })
  if (r.status !== 0) status = r.status ?? 1
}
const skipped = readdirSync(skipsDir).flatMap((f) => readFileSync(join(skipsDir, f), 'utf8').split('\n').filter((l) => l !== ''))
rmSync(skipsDir, { recursive: true, force: true })
if (skipped.length > 0) {
  console.log(`\n${skipped.length} test(s) skipped:`)
  for (const line of skipped) console.log(`  skipped: ${line.startsWith(root) ? relative(root, line) : line}`)
}
process.exit(status)
