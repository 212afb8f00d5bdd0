/**
 * Builds the Kubernetes parts of the daemon: the API connection, the leader label controller and (clustered) the
 * pod watch. This module is the one that pulls in `@kubernetes/client-node` (about 800 modules, most of the
 * daemon's load time): `deferred-parts.ts` imports it with `import()` only when the Kubernetes part is on.
 */
import { loadKubeConfig } from './env.js'
import { K8sLabelController, type K8sLabelMetrics } from './label-controller.js'
import { K8sPodWatch } from './pod-watch.js'
import type { Leadership } from '../cluster/leadership-api.js'
import { ConfigError } from '../common/config-error.js'
import type { Logger } from '../common/logger.js'

export interface K8sPartsComponents {
  logger: Logger
  leadership: Leadership
  metrics: K8sLabelMetrics
}

/** `VECTIS_K8S`: on in a pod or with a `KUBECONFIG` when `auto`. */
export type K8sMode = 'on' | 'off' | 'auto'

/** What the parts need of the daemon's configuration (the variables of the same names, docs/contract.md §2). */
export interface K8sSettings {
  /** `KUBECONFIG`, when set. */
  kubeconfig: string | undefined
  k8sMode: K8sMode
  podNamespace: string
  podName: string
  podSelector: string
  leaderLabel: string
}

export interface K8sPartsInit {
  config: K8sSettings
  /** The pod watch feeds the membership's verified deaths: only a clustered member has one. */
  podWatch: boolean
  /** This process's incarnation, which the pod watch writes on its own pod. */
  incarnation?: string | undefined
  env?: Record<string, string | undefined>
}

export interface K8sParts {
  labels: K8sLabelController
  podWatch: K8sPodWatch | undefined
}

/** Throws ConfigError for a KUBECONFIG (or in-cluster account) that cannot be loaded; K8sConfigError for bad selectors. */
export function createK8sParts (components: K8sPartsComponents, init: K8sPartsInit): K8sParts {
  const c = init.config
  const env = init.env ?? process.env
  let kubeConfig
  try {
    kubeConfig = loadKubeConfig(env, () => env.KUBERNETES_SERVICE_HOST !== undefined)
  } catch (err) {
    throw new ConfigError(c.kubeconfig !== undefined ? 'KUBECONFIG' : 'VECTIS_K8S', c.kubeconfig ?? c.k8sMode, (err as Error).message, { cause: err })
  }
  const labels = new K8sLabelController({ logger: components.logger, leadership: components.leadership, metrics: components.metrics },
    { namespace: c.podNamespace, podName: c.podName, selector: c.podSelector, label: c.leaderLabel, kubeConfig })
  const podWatch = init.podWatch
    ? new K8sPodWatch({ logger: components.logger }, {
      namespace: c.podNamespace,
      selector: c.podSelector,
      kubeConfig,
      leaderLabel: c.leaderLabel,
      ...(init.incarnation !== undefined ? { annotate: { podName: c.podName, incarnation: init.incarnation } } : {})
    })
    : undefined
  return { labels, podWatch }
}
