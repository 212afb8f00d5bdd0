// The layer rule: the source folders form one dependency order, and a module may import only from its own folder
// and the folders before it. `bin` starts the programs, `cli` is the command-line tool, `dev-cluster` the local HA
// cluster and its emulators, `daemon` wires the parts of `vectisd`, `transfer` serves PeSIT, `k8s` talks to the
// Kubernetes API, `cluster` agrees on membership and leadership, `store` remembers, `common` is what all of them use.
// Tests and benchmarks stand outside the order: they may import anything. `console` (the web console, browser code
// bundled into dist/console) stands apart: no folder of the order imports it, and it imports none of them but their
// types (`import type`, erased by the bundler).
import { dirname, relative, resolve, sep } from 'node:path'

export const LAYERS = ['common', 'store', 'cluster', 'k8s', 'transfer', 'daemon', 'dev-cluster', 'cli', 'bin']
/** The browser's folder, outside the order. */
export const CONSOLE = 'console'

const ORDER = LAYERS.join(' ← ')

function layerOf (root, file) {
  const top = relative(root, file).split(sep)[0]
  return LAYERS.includes(top) || top === CONSOLE ? top : undefined
}

/** @type {import('eslint').Rule.RuleModule} */
const layersRule = {
  meta: {
    type: 'problem',
    docs: { description: 'a source folder imports only itself and the folders before it in the layer order' },
    messages: {
      upward: 'layers: {{from}}/ may not import {{to}}/ ({{specifier}}); the order is ' + ORDER + ', and a folder imports only the folders to its left',
      intoConsole: 'layers: {{from}}/ may not import console/ ({{specifier}}): the console is browser code, served from dist/console as files',
      fromConsole: 'layers: console/ may import only types of {{to}}/ ({{specifier}}): its code runs in the browser (use `import type`)'
    },
    schema: []
  },
  create (context) {
    const root = context.cwd
    const from = layerOf(root, context.filename)
    if (from === undefined) return {}
    const check = (node, source) => {
      if (source === null || source === undefined || source.type !== 'Literal' || typeof source.value !== 'string') return
      const specifier = source.value
      if (!specifier.startsWith('.')) return
      const target = resolve(dirname(context.filename), specifier)
      const to = layerOf(root, target)
      if (from === CONSOLE) {
        const inside = !relative(resolve(root, CONSOLE), target).startsWith('..')
        if (!inside && node.importKind !== 'type' && node.exportKind !== 'type') {
          context.report({ node: source, messageId: 'fromConsole', data: { to: to ?? relative(root, target).split(sep)[0], specifier } })
        }
        return
      }
      if (to === CONSOLE) {
        context.report({ node: source, messageId: 'intoConsole', data: { from, specifier } })
        return
      }
      if (to !== undefined && LAYERS.indexOf(to) > LAYERS.indexOf(from)) {
        context.report({ node: source, messageId: 'upward', data: { from, to, specifier } })
      }
    }
    return {
      ImportDeclaration: (node) => { check(node, node.source) },
      ExportNamedDeclaration: (node) => { check(node, node.source) },
      ExportAllDeclaration: (node) => { check(node, node.source) },
      ImportExpression: (node) => { check(node, node.source) }
    }
  }
}

export const layersPlugin = { rules: { order: layersRule } }
