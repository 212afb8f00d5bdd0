#!/usr/bin/env node
// Entry point of `vectisd` (docs/contract.md §1.1; the program is daemon/vectisd.ts). Only the compile cache comes
// before the program is imported: it must be on before the modules it caches are compiled, and static imports
// would be compiled before this line runs.
import { enableCompileCache } from '../common/compile-cache.js'

enableCompileCache()
await import('../daemon/vectisd.js')
