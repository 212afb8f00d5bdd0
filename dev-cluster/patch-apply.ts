/**
 * The three patch dialects an API server accepts, applied to plain JSON values: RFC 6902 JSON patch (with `test`),
 * RFC 7386 merge patch, and the subset of strategic merge patch that matters for object metadata.
 *
 * NOT implemented: strategic merge patch's list merging by key (`containers` merged by `name`, `$patch`,
 * `$retainKeys` directives). The emulator only lets patches change metadata, where strategic merge behaves exactly
 * like a merge patch, so lists are replaced whole here.
 */

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json }

/** A JSON patch that could not be applied (a failed `test`, a missing path): the API server answers 422. */
export class PatchApplyError extends Error {
  override name = 'PatchApplyError'
}

/** A patch document that is not even well formed: the API server answers 400. */
export class PatchFormatError extends Error {
  override name = 'PatchFormatError'
}

function isObject (v: unknown): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function deepClone<T> (v: T): T {
  return structuredClone(v)
}

export function deepEqual (a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false
    return a.every((x, i) => deepEqual(x, b[i]))
  }
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a)
    const kb = Object.keys(b)
    if (ka.length !== kb.length) return false
    return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual(a[k], b[k]))
  }
  return false
}

/** RFC 6901: `/a/b~1c/~0d` → `['a', 'b/c', '~d']`. */
export function parsePointer (pointer: string): string[] {
  if (pointer === '') return []
  if (!pointer.startsWith('/')) throw new PatchApplyError(`JSON pointer "${pointer}" must start with "/"`)
  return pointer.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'))
}

export function escapePointerToken (token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1')
}

function arrayIndex (token: string, length: number, forAdd: boolean): number {
  if (forAdd && token === '-') return length
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchApplyError(`"${token}" is not an array index`)
  const i = Number(token)
  if (i > length || (!forAdd && i === length)) throw new PatchApplyError(`array index ${i} out of bounds`)
  return i
}

function getAt (doc: Json, tokens: string[]): Json {
  let cur: Json = doc
  for (const t of tokens) {
    if (Array.isArray(cur)) {
      const i = arrayIndex(t, cur.length, false)
      cur = cur[i]!
    } else if (isObject(cur)) {
      if (!Object.prototype.hasOwnProperty.call(cur, t)) throw new PatchApplyError(`path element "${t}" does not exist`)
      cur = cur[t]!
    } else {
      throw new PatchApplyError(`cannot descend into a scalar at "${t}"`)
    }
  }
  return cur
}

function parentOf (doc: Json, tokens: string[]): { parent: Json, last: string } {
  if (tokens.length === 0) throw new PatchApplyError('the root cannot be the target of this operation')
  return { parent: getAt(doc, tokens.slice(0, -1)), last: tokens[tokens.length - 1]! }
}

function addAt (doc: Json, tokens: string[], value: Json): Json {
  if (tokens.length === 0) return value
  const { parent, last } = parentOf(doc, tokens)
  if (Array.isArray(parent)) parent.splice(arrayIndex(last, parent.length, true), 0, value)
  else if (isObject(parent)) parent[last] = value
  else throw new PatchApplyError(`cannot add "${last}" to a scalar`)
  return doc
}

function removeAt (doc: Json, tokens: string[]): { doc: Json, removed: Json } {
  const { parent, last } = parentOf(doc, tokens)
  if (Array.isArray(parent)) {
    const i = arrayIndex(last, parent.length, false)
    const [removed] = parent.splice(i, 1)
    return { doc, removed: removed! }
  }
  if (isObject(parent)) {
    if (!Object.prototype.hasOwnProperty.call(parent, last)) throw new PatchApplyError(`cannot remove missing member "${last}"`)
    const removed = parent[last]!
    delete parent[last]
    return { doc, removed }
  }
  throw new PatchApplyError(`cannot remove "${last}" from a scalar`)
}

interface Operation { op: string, path: string, value?: Json, from?: string }

function readOps (patch: unknown): Operation[] {
  if (!Array.isArray(patch)) throw new PatchFormatError('a JSON patch must be an array of operations')
  return patch.map((o, i) => {
    if (!isObject(o) || typeof o.op !== 'string' || typeof o.path !== 'string') {
      throw new PatchFormatError(`operation ${i} needs string "op" and "path"`)
    }
    if (['add', 'replace', 'test'].includes(o.op) && !Object.prototype.hasOwnProperty.call(o, 'value')) {
      throw new PatchFormatError(`operation ${i} (${o.op}) needs a "value"`)
    }
    if (['move', 'copy'].includes(o.op) && typeof o.from !== 'string') {
      throw new PatchFormatError(`operation ${i} (${o.op}) needs a string "from"`)
    }
    if (!['add', 'remove', 'replace', 'move', 'copy', 'test'].includes(o.op)) {
      throw new PatchFormatError(`operation ${i}: unknown op "${o.op}"`)
    }
    return o as unknown as Operation
  })
}

/** Applies an RFC 6902 patch to a copy of `doc`; all or nothing. */
export function applyJsonPatch (doc: Json, patch: unknown): Json {
  const ops = readOps(patch)
  let out = deepClone(doc)
  for (const o of ops) {
    const tokens = parsePointer(o.path)
    switch (o.op) {
      case 'add': out = addAt(out, tokens, deepClone(o.value!)); break
      case 'remove': out = removeAt(out, tokens).doc; break
      case 'replace':
        getAt(out, tokens) // must exist
        out = tokens.length === 0 ? deepClone(o.value!) : addAt(removeAt(out, tokens).doc, tokens, deepClone(o.value!))
        break
      case 'move': {
        const from = parsePointer(o.from!)
        const { doc: d, removed } = removeAt(out, from)
        out = addAt(d, tokens, removed)
        break
      }
      case 'copy': out = addAt(out, tokens, deepClone(getAt(out, parsePointer(o.from!)))); break
      case 'test':
        if (!deepEqual(getAt(out, tokens), o.value)) throw new PatchApplyError(`testing value ${o.path} failed`)
        break
    }
  }
  return out
}

/** RFC 7386: objects merge recursively, `null` deletes, anything else replaces. */
export function applyMergePatch (target: Json, patch: Json): Json {
  if (!isObject(patch)) return deepClone(patch)
  const out: Record<string, Json> = isObject(target) ? deepClone(target) : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) {
      delete out[k]
    } else {
      out[k] = applyMergePatch(out[k] ?? null, v)
    }
  }
  return out
}

/** Strategic merge patch restricted to what metadata needs (see the module note): merge semantics, directives refused. */
export function applyStrategicMergePatch (target: Json, patch: Json): Json {
  const check = (v: Json, path: string): void => {
    if (isObject(v)) {
      for (const [k, x] of Object.entries(v)) {
        if (k.startsWith('$')) throw new PatchFormatError(`strategic merge directive "${k}" at ${path} is not supported by this emulator`)
        check(x, `${path}.${k}`)
      }
    }
  }
  check(patch, '')
  if (!isObject(patch)) throw new PatchFormatError('a strategic merge patch must be a JSON object')
  return applyMergePatch(target, patch)
}
