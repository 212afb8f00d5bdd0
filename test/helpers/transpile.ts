/**
 * Transpiles a TypeScript entry point and every module it imports relatively into plain ES modules under
 * `outDir`, so that a test that starts the same script a hundred times can run it with bare `node`: loading
 * the TypeScript loader costs about three times the CPU of the script's own start-up, which on two cores
 * decides whether such a test takes twenty seconds or a minute and a half. Types are not checked here (tsc does
 * that for the whole project); the output keeps the repository's layout, and `outDir/node_modules` links to the
 * project's dependencies.
 */
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** `from './x.js'`, `import './x.js'`, `import('./x.js')`; `import type` lines are erased by the transpiler anyway. */
const RELATIVE_IMPORT = /(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)\.js['"]/g

/** Returns the path of the transpiled entry point. */
export function transpileForNode (entry: string, outDir: string): string {
  const seen = new Set<string>()
  const queue = [resolve(entry)]
  while (queue.length > 0) {
    const file = queue.pop()!
    if (seen.has(file)) continue
    seen.add(file)
    const source = readFileSync(file, 'utf8')
    const out = ts.transpileModule(source, {
      fileName: file,
      compilerOptions: {
        module: ts.ModuleKind.ESNext,
        target: ts.ScriptTarget.ES2022,
        verbatimModuleSyntax: true,
        sourceMap: false
      }
    })
    const target = join(outDir, relative(ROOT, file)).replace(/\.ts$/, '.js')
    mkdirSync(dirname(target), { recursive: true })
    writeFileSync(target, out.outputText)
    for (const m of source.matchAll(RELATIVE_IMPORT)) queue.push(resolve(dirname(file), `${m[1]!}.ts`))
  }
  writeFileSync(join(outDir, 'package.json'), JSON.stringify({ type: 'module' }))
  symlinkSync(join(ROOT, 'node_modules'), join(outDir, 'node_modules'), 'dir')
  return join(outDir, relative(ROOT, resolve(entry))).replace(/\.ts$/, '.js')
}
