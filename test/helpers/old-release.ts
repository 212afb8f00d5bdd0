/**
 * An earlier release, built from its git tag for the rolling-upgrade tests: the tagged tree exported (`git archive`)
 * to a temporary directory and compiled there with this checkout's TypeScript, against this checkout's
 * node_modules (a symlink: the tagged release's dependencies are the same majors, and a fresh `npm ci` would
 * compile better-sqlite3 again). Returns how to start its `vectisd`, or why it cannot be built here.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT } from './daemon-process.js'

export interface OldRelease {
  dir: string
  /** argv of its `vectisd` */
  vectisd: string[]
  remove: () => void
}

export function buildRelease (tag: string): OldRelease | { skip: string } {
  const known = spawnSync('git', ['-C', ROOT, 'rev-parse', '-q', '--verify', `${tag}^{commit}`], { encoding: 'utf8' })
  if (known.status !== 0) {
    return { skip: `${tag} is not in this clone (a shallow clone, or tags not fetched): git fetch --tags --unshallow to run it` }
  }
  const dir = mkdtempSync(join(tmpdir(), `vectis-${tag}-`))
  const remove = (): void => { rmSync(dir, { recursive: true, force: true }) }
  try {
    const unpack = spawnSync('bash', ['-c', `set -o pipefail; git -C "${ROOT}" archive "${tag}" | tar -x -C "${dir}"`], { encoding: 'utf8' })
    if (unpack.status !== 0) throw new Error(`git archive ${tag}: ${unpack.stderr}`)
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
    const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: dir, encoding: 'utf8' })
    if (tsc.status !== 0) throw new Error(`building ${tag} failed: ${tsc.stdout}${tsc.stderr}`)
    const bin = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin.vectisd
    if (bin === undefined) throw new Error(`${tag} has no vectisd in its package.json`)
    return { dir, vectisd: [process.execPath, join(dir, bin)], remove }
  } catch (err) {
    remove()
    throw err
  }
}
