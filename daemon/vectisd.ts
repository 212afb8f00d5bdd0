// The polyfill must be the first import: libp2p reads Promise.withResolvers at load time on Node 20.
import '../common/polyfill.js'
import { DEMO, loadConfig } from './config.js'
import { ConfigError } from '../common/config-error.js'
import { createLogger } from '../common/logger.js'
import { Daemon } from './daemon.js'
import { compileCacheDir, flushCompileCache } from '../common/compile-cache.js'

/**
 * `vectisd`: reads the configuration (docs/contract.md §2), starts the parts, and stops them on SIGTERM/SIGINT.
 * Exit codes: 0 after a graceful stop, 2 bad configuration (one line on stderr), 1 any other failure.
 */
async function main (): Promise<number> {
  let loaded
  try {
    loaded = loadConfig(process.env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`vectisd: configuration error: ${err.message}\n`)
      return 2
    }
    throw err
  }
  const { config, warnings } = loaded
  const logger = createLogger({ level: config.logLevel, base: { node: config.podName } })
  const log = logger.child({ component: 'daemon:main' })

  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception: exiting')
    process.exit(1)
  })
  process.on('unhandledRejection', (err) => {
    log.fatal({ err }, 'unhandled promise rejection: exiting')
    process.exit(1)
  })

  for (const w of warnings) log.warn(w)
  if (config.apiPasswordGenerated) {
    // Logged once, on purpose: the operator needs it to use the API; set VECTIS_API_PASSWORD(_FILE) to avoid it.
    log.warn({ user: config.apiUser, generatedPassword: config.apiPassword }, 'no VECTIS_API_PASSWORD set: generated an API password for this run')
  }
  if (config.demo !== undefined) {
    // Logged once, like the API password: a real configuration (VECTIS_CONFIG) replaces the demo partner.
    const d = config.demo
    const pesitPort = config.pesit.servers[0]?.port ?? 5000
    const common = `--host 127.0.0.1 --port ${pesitPort} --partner ${d.partner} --password ${d.password} --server ${config.pesit.servers[0]?.id ?? 'PESITSRV'}`
    log.warn({
      partner: d.partner, demoPassword: d.password,
      send: `vectis send ${common} --file ${DEMO.file} FILE`,
      receive: `vectis receive ${common} --file ${DEMO.file} --name ${d.sample} ${d.sample}`
    }, `no VECTIS_CONFIG: a demo partner is configured for this run (push to and pull from ${DEMO.file})`)
  }
  const daemon = new Daemon({ logger }, config)
  let stopping: Promise<number> | undefined
  let resolveDone!: (code: number) => void
  const done = new Promise<number>((resolve) => { resolveDone = resolve })

  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping !== undefined) {
      log.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    log.info({ signal, timeoutMs: config.shutdownTimeoutMs }, 'stopping')
    const timer = setTimeout(() => {
      log.error({ timeoutMs: config.shutdownTimeoutMs }, 'graceful stop took too long: exiting')
      process.exit(1)
    }, config.shutdownTimeoutMs)
    timer.unref()
    stopping = daemon.stop().then(() => {
      clearTimeout(timer)
      log.info('stopped')
      return 0
    }, (err: unknown) => {
      log.error({ err }, 'stop failed')
      return 1
    })
    void stopping.then(resolveDone)
  }
  process.on('SIGTERM', shutdown)
  process.on('SIGINT', shutdown)

  log.info({ version: process.env.npm_package_version, nodeVersion: process.version, clusterEnabled: config.clusterEnabled, dataDir: config.dataDir, compileCache: compileCacheDir() }, 'vectisd starting')

  try {
    await daemon.start()
  } catch (err) {
    if (stopping !== undefined) return await stopping
    if (err instanceof ConfigError) {
      log.fatal({ err: { message: err.message } }, 'configuration error')
      process.stderr.write(`vectisd: configuration error: ${err.message}\n`)
      return 2
    }
    log.fatal({ err }, 'start failed')
    // One readable line for whoever watches the terminal or `kubectl logs --previous`; the JSON line has the rest.
    process.stderr.write(`vectisd: start failed: ${(err as Error).message}\n`)
    return 1
  }
  if (stopping !== undefined) return await stopping
  log.info({ httpPort: daemon.http.port }, 'vectisd started')
  // Every module is loaded by now (libp2p and the Kubernetes client included): keep their compiled code for the next
  // start even if this process is killed rather than stopped.
  flushCompileCache()
  // Runs until a signal; settles when the graceful stop completes.
  return await done
}

main().then((code) => {
  process.exitCode = code
  // Anything left (a stuck socket) must not keep a stopped daemon alive.
  setTimeout(() => process.exit(code), 200).unref()
}, (err: unknown) => {
  process.stderr.write(`vectisd: fatal: ${(err as Error)?.stack ?? String(err)}\n`)
  process.exit(1)
})
