import { mkdirSync, accessSync, constants, existsSync, writeFileSync, unlinkSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError } from '../common/config-error.js'
import { readTlsFilesSync, type TlsFiles } from '../common/tls-files.js'
import type { DemoSetup } from './config.js'

/**
 * Creates `dir` if missing and proves it writable by creating and removing a probe file (an access() check alone
 * says nothing on read-only mounts, or for root). Throws ConfigError naming `variable`.
 */
export function ensureWritableDir (variable: string, dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o750 })
    if (!statSync(dir).isDirectory()) throw new Error('not a directory')
    accessSync(dir, constants.W_OK)
    const probe = join(dir, `.vectis-probe-${process.pid}`)
    writeFileSync(probe, '')
    unlinkSync(probe)
  } catch (err) {
    throw new ConfigError(variable, dir, `expected a writable directory (${(err as Error).message})`, { cause: err })
  }
}

/** The files of a TLS listener can be read and the certificate matches its key; else ConfigError naming `key`. */
export function checkTlsFiles (key: string, files: TlsFiles): void {
  try {
    readTlsFilesSync(files)
  } catch (err) {
    throw new ConfigError(key, files.certFile, `expected a readable certificate and its matching key (${(err as Error).message.split('\n')[0]})`, { cause: err })
  }
}

/** The demo partner's sample file, to pull at once (written once; a file the user put there is left alone). */
export function writeDemoSample (demo: DemoSetup): void {
  const path = join(demo.outbox, demo.sample)
  if (existsSync(path)) return
  writeFileSync(path, 'Hello from Vectis.\nThis file waits in the demo outbox (DEMOOUT) of a standalone daemon; ' +
    'pull it with vectis receive, push your own with vectis send (DEMOIN).\n')
}
