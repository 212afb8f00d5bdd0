/**
 * Defaults of the Kubernetes variables, in the one module that the daemon's configuration (which must not load
 * `@kubernetes/client-node`), the Kubernetes parts and the dev cluster can all import: it imports nothing.
 */

/** `VECTIS_POD_SELECTOR`: the pods of this cluster, the only ones whose labels are ever changed. */
export const DEFAULT_POD_SELECTOR = 'app=vectis'
/** `VECTIS_LEADER_LABEL`: set to `"true"` on the leader's pod; the PeSIT Service selects on it. */
export const DEFAULT_LEADER_LABEL = 'vectis-leader'
