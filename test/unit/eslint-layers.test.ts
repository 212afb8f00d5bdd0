// The layer rule of the lint (eslint-layers.js): a folder imports only itself and the folders before it.
import { describe, it } from 'node:test'
import { join } from 'node:path'
import { RuleTester } from 'eslint'
import tseslint from 'typescript-eslint'
import { layersPlugin } from '../../eslint-layers.js'

RuleTester.describe = describe
RuleTester.it = it
RuleTester.itOnly = it.only

const at = (path: string): string => join(process.cwd(), path)
const tester = new RuleTester({ languageOptions: { parser: tseslint.parser, ecmaVersion: 2023, sourceType: 'module' } })

tester.run('layers/order', layersPlugin.rules.order, {
  valid: [
    { filename: at('cluster/transport.ts'), code: "import { Deadline } from '../common/abortable.js'" },
    { filename: at('cluster/membership/machine.ts'), code: "import { memberKey } from '../messages.js'" },
    { filename: at('daemon/daemon.ts'), code: "export { K8sDeferred } from '../k8s/deferred-parts.js'" },
    { filename: at('bin/vectisd.ts'), code: "await import('../daemon/vectisd.js')" },
    { filename: at('test/unit/x.test.ts'), code: "import { Daemon } from '../../daemon/daemon.js'" },
    { filename: at('store/journal.ts'), code: "import Database from 'better-sqlite3'" },
    { filename: at('console/main.tsx'), code: "import { getStatus } from './api.js'" },
    { filename: at('console/api.ts'), code: "import type { StatusMemberDetail } from '../daemon/daemon.js'" },
    { filename: at('console/main.tsx'), code: "import { render } from 'preact'" }
  ],
  invalid: [
    { filename: at('store/journal.ts'), code: "import type { Leadership } from '../cluster/leadership-api.js'", errors: [{ messageId: 'upward', data: { from: 'store', to: 'cluster', specifier: '../cluster/leadership-api.js' } }] },
    { filename: at('cluster/membership/machine.ts'), code: "import { PesitServer } from '../../transfer/pesit-server.js'", errors: [{ messageId: 'upward' }] },
    { filename: at('common/logger.ts'), code: "export * from '../daemon/config.js'", errors: [{ messageId: 'upward' }] },
    { filename: at('k8s/parts.ts'), code: "const m = await import('../daemon/config.js')", errors: [{ messageId: 'upward' }] },
    { filename: at('daemon/http-server.ts'), code: "import { getStatus } from '../console/api.js'", errors: [{ messageId: 'intoConsole' }] },
    { filename: at('console/api.ts'), code: "import { Daemon } from '../daemon/daemon.js'", errors: [{ messageId: 'fromConsole' }] },
    { filename: at('console/api.ts'), code: "import { sleep } from '../test/helpers/x.js'", errors: [{ messageId: 'fromConsole' }] }
  ]
})
