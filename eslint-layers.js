// The layer rule: the source folders form one dependency order, and a module may import only from its own folder
// and the folders before it. `bin` starts the programs, `cli` is the command-line tool, `dev-cluster` the local HA
// cluster and its emulators, `daemon` wires the parts of `vectisd`, `transfer` serves PeSIT, `k8s` talks to the
// Kubernetes API, `cluster` agrees on membership and leadership, `store` remembers, `common` is what all of them use.
// Tests and benchmarks stand outside the order: they may import anything.
import { dirname, relative, resolve, sep } from 'node:path'

export const LAYERS = ['common', 'store', 'cluster', 'k8s', 'transfer', 'daemon', 'dev-cluster', 'cli', 'bin']

const ORDER = LAYERS.join(' ← ')

function layerOf (root, file) {
  const top = relative(root, file).split(sep)[0]
  return LAYERS.includes(top) ? top : undefined
}

/** @type {import('eslint').Rule.RuleModule} */
const layersRule = {
  meta: {
    type: 'problem',
    docs: { description: 'a source folder imports only itself and the folders before it in the layer order' },
    messages: {
      upward: 'layers: {{from}}/ may not import {{to}}/ ({{specifier}}); the order is ' + ORDER + ', and a folder imports only the folders to its left'
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
      const to = layerOf(root, resolve(dirname(context.filename), specifier))
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
