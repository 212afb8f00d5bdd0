/**
 * A real Prometheus for the local cluster (`vectis dev-cluster --prometheus`): Debian's `prometheus` binary, run with
 * a generated configuration that scrapes every member's `/metrics` (labels `namespace` and `pod`, as the
 * ServiceMonitor of deploy/ gives them) and loads the alert rules of deploy/, so queries, dashboards and alerts can
 * be tried against live members. Its data lives under the dev cluster's data directory.
 *
 * NOT a production component: it exists for `vectis dev-cluster`, the end-to-end runs and their tests.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse, stringify } from 'yaml'
import type { Logger } from '../common/logger.js'
import type { Startable } from '../common/lifecycle.js'

export const PROMETHEUS_BINARY = 'prometheus'

export interface LocalPrometheusInit {
  /** Its configuration and time series go here. */
  dir: string
  host: string
  port: number
  /** Members to scrape: pod name and `host:port` of its HTTP port. */
  targets: Array<{ pod: string, address: string }>
  namespace: string
  scrapeIntervalS?: number
  /** A PrometheusRule manifest whose groups are loaded as rules (deploy/components/monitoring/prometheusrule.yaml). */
  rulesManifest?: string
}

export class LocalPrometheus implements Startable {
  private proc: ChildProcess | undefined
  private exited: Promise<void> | undefined
  private readonly log: Logger
  private stderr = ''

  constructor (components: { logger: Logger }, private readonly init: LocalPrometheusInit) {
    this.log = components.logger.child({ component: 'dev:prometheus' })
  }

  get url (): string { return `http://${this.init.host}:${this.init.port}` }

  /** Writes the configuration, starts Prometheus and waits until it is ready (30 s at most). */
  async start (): Promise<void> {
    if (this.proc !== undefined) return
    const i = this.init
    mkdirSync(join(i.dir, 'data'), { recursive: true })
    const interval = `${i.scrapeIntervalS ?? 2}s`
    const ruleFiles: string[] = []
    if (i.rulesManifest !== undefined) {
      const manifest = parse(readFileSync(i.rulesManifest, 'utf8')) as { spec?: { groups?: unknown } }
      writeFileSync(join(i.dir, 'rules.yaml'), stringify({ groups: manifest.spec?.groups ?? [] }))
      ruleFiles.push('rules.yaml')
    }
    writeFileSync(join(i.dir, 'prometheus.yml'), stringify({
      global: { scrape_interval: interval, evaluation_interval: interval },
      rule_files: ruleFiles,
      scrape_configs: [{
        job_name: 'vectis-headless',
        scrape_timeout: interval,
        static_configs: i.targets.map((t) => ({ targets: [t.address], labels: { namespace: i.namespace, pod: t.pod } }))
      }]
    }))
    const proc = spawn(PROMETHEUS_BINARY, [
      `--config.file=${join(i.dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(i.dir, 'data')}`,
      `--web.listen-address=${i.host}:${i.port}`, '--log.level=warn', '--storage.tsdb.retention.time=1d'
    ], { cwd: i.dir, stdio: ['ignore', 'ignore', 'pipe'] })
    this.proc = proc
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => { this.stderr = (this.stderr + d).slice(-4000) })
    this.exited = new Promise((resolve) => { proc.once('exit', () => { resolve() }) })
    const spawnError = new Promise<Error>((resolve) => { proc.once('error', resolve) })
    const deadline = Date.now() + 30_000
    for (;;) {
      const failed = await Promise.race([spawnError, new Promise<undefined>((resolve) => setTimeout(() => { resolve(undefined) }, 200))])
      if (failed !== undefined) {
        this.proc = undefined
        throw new Error(`cannot run ${PROMETHEUS_BINARY}: ${failed.message} (Debian: apt-get install prometheus)`)
      }
      if (proc.exitCode !== null) {
        this.proc = undefined
        throw new Error(`${PROMETHEUS_BINARY} exited with code ${proc.exitCode}: ${this.stderr.trim().split('\n').at(-1) ?? ''}`)
      }
      const ready = await fetch(`${this.url}/-/ready`).then((r) => r.ok, () => false)
      if (ready) break
      if (Date.now() > deadline) {
        await this.stop()
        throw new Error(`${PROMETHEUS_BINARY} not ready within 30 s: ${this.stderr.trim().split('\n').at(-1) ?? ''}`)
      }
    }
    this.log.info({ url: this.url, targets: i.targets.length }, 'prometheus ready')
  }

  async stop (): Promise<void> {
    const proc = this.proc
    if (proc === undefined) return
    this.proc = undefined
    proc.kill('SIGTERM')
    const killer = setTimeout(() => { proc.kill('SIGKILL') }, 5000)
    await this.exited
    clearTimeout(killer)
  }

  /** An instant query: the result vector, or an error naming Prometheus's reason. */
  async query (expr: string): Promise<Array<{ metric: Record<string, string>, value: [number, string] }>> {
    const res = await fetch(`${this.url}/api/v1/query?${new URLSearchParams({ query: expr }).toString()}`)
    const body = await res.json() as { status: string, error?: string, data?: { resultType: string, result: unknown } }
    if (body.status !== 'success') throw new Error(`query ${expr}: ${body.error ?? res.status}`)
    const r = body.data?.result
    if (body.data?.resultType === 'scalar') return [{ metric: {}, value: r as [number, string] }]
    return r as Array<{ metric: Record<string, string>, value: [number, string] }>
  }
}
