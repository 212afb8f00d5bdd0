/**
 * Defaults of the Kubernetes variables and the annotation names (docs/contract.md §6.1), in the one module that the daemon's configuration (which must not load
 * `@kubernetes/client-node`), the Kubernetes parts and the dev cluster can all import: it imports nothing.
 */

/** `VECTIS_POD_SELECTOR`: the pods of this cluster, the only ones whose labels are ever changed. */
export const DEFAULT_POD_SELECTOR = 'app=vectis'
/** `VECTIS_LEADER_LABEL`: set to `"true"` on the leader's pod; the PeSIT Service selects on it. */
export const DEFAULT_LEADER_LABEL = 'vectis-leader'

/** On the leader's pod, with the label: the leader's epoch. */
export const EPOCH_ANNOTATION = 'vectis.io/epoch'
/** On every other pod of the selector: the epoch of the leader that last fenced it. */
export const FENCED_EPOCH_ANNOTATION = 'vectis.io/fenced-epoch'
/** On every member's pod: the incarnation of the process running there (`<generation>-<8 hex>`). */
export const INCARNATION_ANNOTATION = 'vectis.io/incarnation'
