/**
 * How the Kubernetes API is reached (docs/contract.md §6): `KUBECONFIG`, or the in-cluster service account. Whether
 * the Kubernetes part runs at all (`VECTIS_K8S`) is the daemon's configuration.
 */
import { KubeConfig } from '@kubernetes/client-node'
import { K8sConfigError } from './errors.js'

type Env = Record<string, string | undefined>

/**
 * The API connection. An explicit `KUBECONFIG` wins (tests, the local cluster, running outside the cluster);
 * otherwise the in-cluster service account (its token file is re-read, so projected-token rotation works).
 */
export function loadKubeConfig (env: Env, podCheck: () => boolean): KubeConfig {
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
