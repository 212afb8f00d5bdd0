/**
 * Reading the Kubernetes part of the environment (SPEC §2): whether the label controller runs (`VECTIS_K8S`), how
 * the API is reached (in-cluster service account, or `KUBECONFIG`), and the metric handles of SPEC §4.
 */
import { existsSync } from 'node:fs'
import { KubeConfig } from '@kubernetes/client-node'
import { Counter, Gauge, type Registry } from 'prom-client'
import { K8sConfigError } from './k8s-errors.js'
import type { K8sLabelMetrics } from './k8s-labels.js'

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'

type Env = Record<string, string | undefined>

/** True when running in a pod: the API server's address is injected and a service-account token is mounted. */
export function inPod (env: Env = process.env, tokenPath = `${SERVICE_ACCOUNT_DIR}/token`): boolean {
  return (env.KUBERNETES_SERVICE_HOST ?? '') !== '' && existsSync(tokenPath)
}

/** `VECTIS_K8S`: `on`, `off`, or `auto` (default: on in a pod or when `KUBECONFIG` is set). */
export function k8sEnabled (env: Env = process.env, podCheck: () => boolean = () => inPod(env)): boolean {
  const v = (env.VECTIS_K8S ?? 'auto').trim().toLowerCase()
  if (v === 'on') return true
  if (v === 'off') return false
  if (v !== 'auto') throw new K8sConfigError(`VECTIS_K8S must be on, off or auto, not "${env.VECTIS_K8S ?? ''}"`)
  return podCheck() || (env.KUBECONFIG ?? '') !== ''
}

/**
 * The API connection. An explicit `KUBECONFIG` wins (tests, the local cluster, running outside the cluster);
 * otherwise the in-cluster service account (its token file is re-read, so projected-token rotation works).
 */
export function loadKubeConfig (env: Env = process.env, podCheck: () => boolean = () => inPod(env)): KubeConfig {
  const kc = new KubeConfig()
  const file = env.KUBECONFIG ?? ''
  try {
    if (file !== '') kc.loadFromDefault() // honours KUBECONFIG, including a list of files
    else if (podCheck()) kc.loadFromCluster()
    else throw new K8sConfigError('VECTIS_K8S is on but there is neither an in-cluster service account nor KUBECONFIG')
  } catch (err) {
    if (err instanceof K8sConfigError) throw err
    throw new K8sConfigError(`KUBECONFIG (${file || 'in-cluster'}): ${(err as Error).message}`, { cause: err })
  }
  if (kc.getCurrentCluster() === null) {
    throw new K8sConfigError(`KUBECONFIG (${file}): no current cluster (set current-context)`)
  }
  return kc
}

/** `vectis_k8s_label_errors_total` and `vectis_k8s_labels_in_sync`, registered in the daemon's registry. */
export function createK8sLabelMetrics (registry: Registry): Required<K8sLabelMetrics> {
  return {
    labelErrorsTotal: new Counter({
      name: 'vectis_k8s_label_errors_total',
      help: 'Failed Kubernetes API calls while managing the leader label (conflicts that resolve by re-reading excluded)',
      registers: [registry]
    }),
    labelsInSync: new Gauge({
      name: 'vectis_k8s_labels_in_sync',
      help: '1 when the pod labels are as this member wants them (leader: only its pod labelled; standby: its pod unlabelled)',
      registers: [registry]
    })
  }
}
