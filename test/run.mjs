#!/usr/bin/env node
// Runs the test suite with Node's own test runner. Node 20's `--test` does not expand globs, so the files are
// listed here. `node test/run.mjs [unit|integration|<path fragment>...]` narrows the run.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
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
// Skipped tests are listed once more at the end, each with what to install to run it.
const skipsDir = mkdtempSync(join(tmpdir(), 'vectis-test-skips-'))
const skipsFile = join(skipsDir, 'skipped.txt')
const args = [
  '--import', 'tsx',
  '--import', './common/polyfill.ts',
  '--test',
  `--test-concurrency=${concurrency}`,
  '--test-timeout=300000',
  '--test-reporter=spec', '--test-reporter-destination=stdout',
  '--test-reporter=./test/skip-reporter.mjs', `--test-reporter-destination=${skipsFile}`,
  ...files
]
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' })
const skipped = existsSync(skipsFile) ? readFileSync(skipsFile, 'utf8').split('\n').filter((l) => l !== '') : []
rmSync(skipsDir, { recursive: true, force: true })
if (skipped.length > 0) {
  console.log(`\n${skipped.length} test(s) skipped:`)
  for (const line of skipped) console.log(`  skipped: ${line.startsWith(root) ? relative(root, line) : line}`)
}
process.exit(r.status ?? 1)
