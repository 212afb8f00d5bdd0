/**
 * A real Prometheus against a real cluster: `vectis dev-cluster`'s members scraped by Debian's `prometheus`
 * (DevCluster `prometheusPort`) with the alert rules of deploy/ loaded. Checks that every query of the Grafana
 * dashboard (deploy/components/monitoring/grafana-dashboard.json) is valid against the live series and that the
 * panels of healthy signals return data, that Prometheus sees one leader, and that no alert fires on a healthy
 * cluster.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../common/logger.js'
import { DevCluster } from '../../dev-cluster/dev-cluster.js'
import { PROMETHEUS_BINARY } from '../../dev-cluster/prometheus.js'
import { freePort, ROOT } from '../helpers/daemon-process.js'
import { waitFor } from '../helpers/wait-for.js'

interface Panel { title: string, targets: Array<{ expr: string }> }

/** Panels that show signals present on any healthy cluster (the others wait for transfers, takeovers, failures). */
const HEALTHY = ['Leaders', 'Leader per member', 'Members in the view', 'Quorum per member', 'Epoch', 'Leader changes (15 min)',
  'Heartbeat age (max)', 'Leader label in sync', 'Label API errors', 'Transfers ended, by status', 'Throughput', 'PeSIT connections',
  'Journal position', 'Journal replication lag', 'Last verified backup']

test('a live Prometheus scraping the dev cluster: the dashboard\'s queries work, one leader, no alert fires', async (t) => {
  if (spawnSync(PROMETHEUS_BINARY, ['--version']).error !== undefined) {
    t.skip('prometheus is not installed (Debian package prometheus: apt-get install prometheus; .ci/run installs it)')
    return
  }
  const data = await mkdtemp(join(tmpdir(), 'vectis-prom-'))
  const dc = new DevCluster({ logger: silentLogger() }, {
    nodes: 3, baseIp: '127.0.71.10', dataDir: data, lbHost: '127.0.0.1', lbPort: 0, httpPort: 8080, clusterPort: 7800,
    demoPesitPort: 5000, apiUser: 'vectis', apiPassword: 'prom-test-password', demoPassword: 'prom1234',
    clusterSecret: 'prom-test-cluster-secret-012345', logLevel: 'warn', restart: false, prometheusPort: await freePort()
  })
  t.after(async () => { await dc.stop(); await rm(data, { recursive: true, force: true }) })
  await dc.start()
  const prom = dc.prometheus!
  const value = async (expr: string): Promise<number | undefined> => {
    const r = await prom.query(expr)
    return r.length === 0 ? undefined : Number(r[0]!.value[1])
  }
  await waitFor(async () => await value('count(up{job="vectis-headless"} == 1)') === 3 && await value('sum(vectis_cluster_is_leader)') === 1 &&
    await value('count(vectis_cluster_quorum == 1)') === 3, { timeoutMs: 90_000, intervalMs: 500, what: 'Prometheus seeing three members, one leader, all in the primary view' })
  // Rates need two samples in their window.
  await waitFor(async () => await value('count(rate(vectis_transfers_total[1m]))') !== undefined, { timeoutMs: 30_000, intervalMs: 500, what: 'rates over the scrapes' })

  const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy', 'components', 'monitoring', 'grafana-dashboard.json'), 'utf8')) as { panels: Panel[] }
  const titles = dashboard.panels.map((p) => p.title)
  for (const h of HEALTHY) assert.ok(titles.includes(h), `the dashboard has no panel "${h}"`)
  for (const p of dashboard.panels) {
    for (const target of p.targets) {
      const expr = target.expr.replaceAll('$namespace', 'vectis').replaceAll('$__rate_interval', '1m')
      const result = await prom.query(expr) // throws with Prometheus's reason on an invalid query
      if (HEALTHY.includes(p.title)) assert.ok(result.length > 0, `panel "${p.title}" returns no data: ${expr}`)
    }
  }
  // The rules are loaded, and none fires on this healthy cluster.
  const rules = await (await fetch(`${prom.url}/api/v1/rules`)).json() as { data: { groups: Array<{ rules: unknown[] }> } }
  assert.ok(rules.data.groups.flatMap((g) => g.rules).length >= 10, 'the alert rules of deploy/ are loaded')
  assert.deepEqual(await prom.query('ALERTS{alertstate="firing"}'), [])
})
