#!/usr/bin/env node
// Builds the web console (console/*.tsx, browser code) into dist/console/ with esbuild: one JS and one CSS file,
// named by their content's hash (served as immutable), and index.html, which loads them and holds no inline script
// or style (the Content-Security-Policy forbids both). Prints the gzipped size; over the budget (150 KB, issue 15) it fails.
import { build } from 'esbuild'
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'

const here = fileURLToPath(new URL('.', import.meta.url))
const out = join(here, '..', 'dist', 'console')
const BUDGET = 150 * 1024

mkdirSync(out, { recursive: true })
for (const f of readdirSync(out)) rmSync(join(out, f), { force: true, recursive: true })

const result = await build({
  entryPoints: [join(here, 'main.tsx')],
  tsconfig: join(here, 'tsconfig.json'),
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022'],
  outdir: out,
  entryNames: 'console-[hash]',
  assetNames: 'asset-[hash]',
  metafile: true,
  legalComments: 'linked',
  logLevel: 'warning'
})
const files = Object.keys(result.metafile.outputs).map((p) => basename(p))
const js = files.find((f) => f.endsWith('.js'))
const css = files.find((f) => f.endsWith('.css'))
if (js === undefined || css === undefined) throw new Error(`esbuild made no JS or CSS: ${files.join(', ')}`)
const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Vectis console</title>
<link rel="stylesheet" href="/console/${css}">
<script type="module" src="/console/${js}"></script>
</head>
<body>
<div id="app"><noscript>The Vectis console needs JavaScript; the same data is in the JSON API (/api/cluster/status, /api/transfers).</noscript></div>
</body>
</html>
`
writeFileSync(join(out, 'index.html'), html)
let total = 0
const sizes = []
for (const f of readdirSync(out)) {
  const raw = readFileSync(join(out, f))
  const gz = gzipSync(raw, { level: 9 }).length
  if (!f.endsWith('.map')) total += gz
  sizes.push(`${f} ${raw.length} B (${gz} B gzipped)`)
}
console.log(`console: dist/console/: ${sizes.join(', ')}; ${(total / 1024).toFixed(1)} KB gzipped in all (budget ${BUDGET / 1024} KB)`)
if (total > BUDGET) {
  console.error(`console: ${total} B gzipped is over the ${BUDGET} B budget`)
  process.exit(1)
}
