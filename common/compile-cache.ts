/**
 * Node's on-disk compile cache (V8 code cache per module, `module.enableCompileCache()`, Node >= 22.1): most of the
 * daemon's start-up is compiling its dependencies, and the cache lets a restarted process skip that.
 *
 * Where: Node's default, i.e. `NODE_COMPILE_CACHE` when set, else `<os.tmpdir()>/node-compile-cache`. Not
 * `VECTIS_DATA_DIR`: that is the member's own state, on a persistent volume, and a cache is not state (entries are
 * keyed by the file's content and Node's version; a stale or torn entry is rejected and recompiled). In the
 * manifests `/tmp` is an `emptyDir`, which survives a container restart in place (the case where start-up time
 * matters most) and goes away with the pod. Members on one machine (the local cluster, tests) share it.
 *
 * NOT guaranteed: any effect on Node 20 (no such API: nothing happens), nor that the cache can be written (a
 * read-only or full directory only costs the speed-up; Node never throws for it). `NODE_DISABLE_COMPILE_CACHE=1`
 * turns it off.
 */
import * as nodeModule from 'node:module'

/** The parts of the API used here; absent on Node 20 (feature-detected, not version-checked). */
interface CompileCacheApi {
  enableCompileCache?: () => { status: number, message?: string, directory?: string }
  flushCompileCache?: () => void
  getCompileCacheDir?: () => string | undefined
  constants?: { compileCacheStatus?: Record<string, number> }
}

export interface CompileCacheResult {
  status: 'enabled' | 'already-enabled' | 'failed' | 'disabled' | 'unsupported'
  directory?: string
  message?: string
}

const api = nodeModule as unknown as CompileCacheApi

/** Call first thing in an entry point, before the modules to cache are imported (they are loaded with `import()`). */
export function enableCompileCache (): CompileCacheResult {
  if (typeof api.enableCompileCache !== 'function') return { status: 'unsupported' }
  const r = api.enableCompileCache()
  const names = api.constants?.compileCacheStatus ?? {}
  const status = r.status === names.ENABLED
    ? 'enabled'
    : r.status === names.ALREADY_ENABLED ? 'already-enabled' : r.status === names.DISABLED ? 'disabled' : 'failed'
  return { status, ...(r.directory !== undefined ? { directory: r.directory } : {}), ...(r.message !== undefined ? { message: r.message } : {}) }
}

/**
 * Writes what was compiled so far (Node >= 22.10; otherwise it is written at a normal exit only). Called once the
 * daemon has started: a process that is later killed (kill -9, OOM) would otherwise leave no cache for its successor.
 */
export function flushCompileCache (): void {
  api.flushCompileCache?.()
}

/** The directory in use, or undefined when the cache is off (or the Node version cannot say: before 22.8). */
export function compileCacheDir (): string | undefined {
  return api.getCompileCacheDir?.()
}
