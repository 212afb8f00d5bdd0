/**
 * The PeSIT part of the configuration (docs/contract.md §5), as the daemon's loader hands it over: already
 * validated for shape, with every `directory` resolved to an absolute path under VECTIS_SHARED_DIR.
 * `validatePesitConfig` re-checks what the PeSIT code relies on, so a bad object fails at start-up with a message
 * naming the key.
 */
import { isAbsolute } from 'node:path'
import { PesitConfigError } from './errors.js'

export type ClientAuth = 'none' | 'optional' | 'required'
export type TlsMinVersion = 'TLSv1.2' | 'TLSv1.3'

/** PeSIT over TLS on a listener of its own (docs/contract.md §5.2). */
export interface ServerTlsConfig {
  certFile: string
  keyFile: string
  /** CA bundle client certificates are verified against */
  caFile?: string
  /** none: no client certificate asked; optional: asked, verified if given; required: refused without one */
  clientAuth: ClientAuth
  minVersion: TlsMinVersion
}

export interface PesitServerConfig {
  /** PeSIT server id (PI 4), up to 8 upper-case letters/digits; one plain and one TLS entry may share it */
  id: string
  port: number
  /** concurrent TCP connections accepted; one more gets RCONNECT D3-303 */
  maxConnections: number
  /** upper bound of the sync-point interval offered in ACONNECT; 0 disables sync points */
  syncIntervalKb: number
  /** upper bound of PI 25 answered in ACK(CREATE)/ACK(SELECT), 2-byte prefix excluded */
  maxEntitySize: number
  tls?: ServerTlsConfig
}

export type PartnerAccess = 'read' | 'write' | 'both'

export interface PesitPartnerConfig {
  /** requester id (PI 3) */
  id: string
  /** PI 5 password (PeSIT carries at most 8 characters) */
  password: string
  /** write: may push (CREATE); read: may pull (SELECT); both */
  access: PartnerAccess
  /**
   * The partner is bound to a client certificate: it connects only over TLS, presenting a certificate trusted by the
   * listener's CA whose subject CN is this value (on top of its password)
   */
  tlsClientCn?: string
}

export type FileDirection = 'receive' | 'send' | 'both'

/** What happens to a file once a partner pulled it completely (after ACK(TRANS.END)). */
export type AfterSend =
  | { action: 'keep' }
  | { action: 'delete' }
  /** `directory`: absolute, may contain `${partner}`; on the same file system as the file's directory */
  | { action: 'move', directory: string }

export interface PesitFileConfig {
  /** virtual file id (PI 12) */
  id: string
  direction: FileDirection
  /**
   * absolute directory holding the files (under VECTIS_SHARED_DIR); `${partner}` is replaced by the requester id,
   * so that each partner has a directory of its own (`directoryFor`)
   */
  directory: string
  /** final name of a received file: `${partner}`, `${file}`, `${transferId}` are substituted */
  filenamePattern: string
  /** send direction: default keep */
  afterSend?: AfterSend
}

export interface PesitConfig {
  servers: PesitServerConfig[]
  partners: PesitPartnerConfig[]
  files: PesitFileConfig[]
}

const PATTERN_VARS = ['partner', 'file', 'transferId']
/** The bounds of a server's `maxEntitySize` (docs/contract.md §5). */
export const MIN_ENTITY_SIZE = 256
export const MAX_ENTITY_SIZE = 65535

/** Why `id` cannot be a server id, or undefined when it can (the daemon's configuration and the servers apply it). */
export function serverIdError (id: string): string | undefined {
  return /^[A-Z0-9]{1,8}$/.test(id) ? undefined : 'expected 1 to 8 upper-case letters or digits'
}

/** Why `id` cannot be a file id (PI 12, at most 76 characters), or undefined when it can. */
export function fileIdError (id: string): string | undefined {
  return /^[\x21-\x7e][\x20-\x7e]{0,75}$/.test(id) ? undefined : 'expected 1 to 76 printable ASCII characters'
}

/**
 * Why `id` cannot be a partner id, or undefined when it can. The daemon's configuration and the servers' own check
 * both apply it: PI 3 carries at most 24 characters, and decoding drops trailing blanks (docs/pesit.md), so an id
 * takes none at all.
 */
export function partnerIdError (id: string): string | undefined {
  return /^[\x21-\x7e]{1,24}$/.test(id) ? undefined : 'expected 1 to 24 printable ASCII characters without blanks'
}

/**
 * Why `pattern` cannot be a `filenamePattern`, or undefined when it can: known placeholders only; one file name in
 * the file's directory (no / \ or ..); not empty and not starting with a dot, the mark of the partial files.
 */
export function filenamePatternError (pattern: string): string | undefined {
  for (const m of pattern.matchAll(/\$\{([^}]*)\}/g)) {
    if (!PATTERN_VARS.includes(m[1]!)) return `unknown placeholder \${${m[1]}}; expected ${PATTERN_VARS.map((v) => `\${${v}}`).join(', ')}`
  }
  if (/[/\\]/.test(pattern) || pattern.includes('..')) return 'expected a file name without / \\ or ..'
  if (pattern.trim() === '' || pattern.startsWith('.')) return 'expected a file name that is not empty and does not start with a dot (partial files do)'
  return undefined
}

/** Why `dir` cannot be a `directory` (or a `move:` target), or undefined when it can: `${partner}` is the only placeholder. */
export function directoryTemplateError (dir: string): string | undefined {
  for (const m of dir.matchAll(/\$\{([^}]*)\}/g)) {
    if (m[1] !== 'partner') return `unknown placeholder \${${m[1]}}; a directory may contain \${partner} only`
  }
  return undefined
}

/** The directory of `template` for one partner (its id reduced to a safe path segment). */
export function directoryFor (template: string, partner: string): string {
  return template.replace(/\$\{partner\}/g, safePart(partner))
}

/**
 * Every concrete directory the configuration uses (a template with `${partner}` once per configured partner), with
 * the key it comes from: the daemon creates and checks them at start.
 */
export function configuredDirectories (c: PesitConfig): Array<{ key: string, directory: string }> {
  const out: Array<{ key: string, directory: string }> = []
  const add = (key: string, template: string): void => {
    const dirs = template.includes('${partner}') ? c.partners.map((p) => directoryFor(template, p.id)) : [template]
    for (const directory of new Set(dirs)) out.push({ key, directory })
  }
  for (const f of c.files) {
    add(`files[${f.id}].directory`, f.directory)
    if (f.afterSend?.action === 'move') add(`files[${f.id}].afterSend`, f.afterSend.directory)
  }
  return out
}

/** `id` at `${k}.id` satisfies its rule (`error`) and is not in `seen` (ids of the same kind); it is added. */
function checkId (k: string, id: string, error: string | undefined, seen: Set<string>, kind: string): void {
  if (error !== undefined) throw new PesitConfigError(`${k}.id: "${id}": ${error}`)
  if (seen.has(id)) throw new PesitConfigError(`${k}.id: duplicate ${kind} ${id}`)
  seen.add(id)
}

export function validatePesitConfig (c: PesitConfig): void {
  const ids = new Set<string>()
  const ports = new Set<number>()
  c.servers.forEach((s, i) => {
    const k = `servers[${i}]`
    // One plain and one TLS listener may serve the same server id.
    checkId(k, s.tls === undefined ? s.id : `${s.id} (TLS)`, serverIdError(s.id), ids, 'server id')
    if (s.port !== 0 && ports.has(s.port)) throw new PesitConfigError(`${k}.port: ${s.port} is used by another server`)
    ports.add(s.port)
    if (s.tls !== undefined) {
      if (!['none', 'optional', 'required'].includes(s.tls.clientAuth)) throw new PesitConfigError(`${k}.tls.clientAuth: none | optional | required`)
      if (!['TLSv1.2', 'TLSv1.3'].includes(s.tls.minVersion)) throw new PesitConfigError(`${k}.tls.minVersion: TLSv1.2 | TLSv1.3`)
      if (s.tls.clientAuth !== 'none' && s.tls.caFile === undefined) throw new PesitConfigError(`${k}.tls.caFile: required to verify client certificates (clientAuth ${s.tls.clientAuth})`)
    }
    if (!Number.isInteger(s.port) || s.port < 0 || s.port > 65535) throw new PesitConfigError(`${k}.port: ${s.port} is not a TCP port`)
    if (!Number.isInteger(s.maxConnections) || s.maxConnections < 1) throw new PesitConfigError(`${k}.maxConnections: must be ≥ 1`)
    if (!Number.isInteger(s.syncIntervalKb) || s.syncIntervalKb < 0 || s.syncIntervalKb > 0xfffe) throw new PesitConfigError(`${k}.syncIntervalKb: 0..65534`)
    if (!Number.isInteger(s.maxEntitySize) || s.maxEntitySize < MIN_ENTITY_SIZE || s.maxEntitySize > MAX_ENTITY_SIZE) {
      throw new PesitConfigError(`${k}.maxEntitySize: ${MIN_ENTITY_SIZE}..${MAX_ENTITY_SIZE}`)
    }
  })
  const partners = new Set<string>()
  c.partners.forEach((p, i) => {
    const k = `partners[${i}]`
    checkId(k, p.id, partnerIdError(p.id), partners, 'partner')
    if (p.password.length > 8) throw new PesitConfigError(`${k}.password: PeSIT passwords are at most 8 characters`)
    if (!['read', 'write', 'both'].includes(p.access)) throw new PesitConfigError(`${k}.access: read | write | both`)
    if (p.tlsClientCn !== undefined && !/^[\x20-\x7e]{1,64}$/.test(p.tlsClientCn)) throw new PesitConfigError(`${k}.tlsClientCn: 1 to 64 printable ASCII characters`)
  })
  const files = new Set<string>()
  c.files.forEach((f, i) => {
    const k = `files[${i}]`
    checkId(k, f.id, fileIdError(f.id), files, 'file')
    if (!['receive', 'send', 'both'].includes(f.direction)) throw new PesitConfigError(`${k}.direction: receive | send | both`)
    if (!isAbsolute(f.directory)) throw new PesitConfigError(`${k}.directory: must be absolute once resolved (got ${f.directory})`)
    const dirError = directoryTemplateError(f.directory)
    if (dirError !== undefined) throw new PesitConfigError(`${k}.directory: ${dirError}`)
    const after = f.afterSend
    if (after !== undefined) {
      if (!['keep', 'delete', 'move'].includes(after.action)) throw new PesitConfigError(`${k}.afterSend: keep | delete | move:<dir>`)
      if (after.action === 'move') {
        if (!isAbsolute(after.directory)) throw new PesitConfigError(`${k}.afterSend: the move directory must be absolute once resolved`)
        const moveError = directoryTemplateError(after.directory)
        if (moveError !== undefined) throw new PesitConfigError(`${k}.afterSend: ${moveError}`)
      }
    }
    const patternError = filenamePatternError(f.filenamePattern)
    if (patternError !== undefined) throw new PesitConfigError(`${k}.filenamePattern: ${patternError}`)
  })
}

const PLACEHOLDER_RE = new RegExp(`\\$\\{(${PATTERN_VARS.join('|')})\\}`, 'g')

/** Keeps a substituted value inside one file name. */
function safePart (s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_')
}

export function finalFileName (pattern: string, vars: { partner: string, file: string, transferId: number }): string {
  return pattern.replace(PLACEHOLDER_RE, (_m, k: string) =>
    safePart(k === 'partner' ? vars.partner : k === 'file' ? vars.file : String(vars.transferId)))
}

/** Base name of the partial file and of its checkpoint: hidden, keyed by what a restart presents. */
export function transferStem (vars: { partner: string, file: string, transferId: number }): string {
  return `.vectis-${safePart(vars.partner)}-${safePart(vars.file)}-${vars.transferId}`
}
