#!/usr/bin/env node
// Entry point of `vectis` (docs/contract.md §1.2; the program is cli/vectis.ts). The compile cache comes first,
// before the program's modules are compiled (see bin/vectisd.ts).
import { enableCompileCache } from '../common/compile-cache.js'

enableCompileCache()
await import('../cli/vectis.js')
