/**
 * The PeSIT part of the configuration (docs/contract.md §5), as the daemon's loader hands it over: already
 * validated for shape, with every `directory` resolved to an absolute path under VECTIS_SHARED_DIR.
 * `validatePesitConfig` re-checks what the PeSIT code relies on, so a bad object fails at start-up with a message
 * naming the key.
 */
import { isAbsolute } from 'node:path'
import { isIP } from 'node:net'
import { cronError } from '../common/cron.js'
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

/** How the cluster reaches a partner for the transfers it initiates (docs/contract.md §5.3). */
export interface PartnerOutbound {
  /** DNS name or IP address of the partner's PeSIT server */
  host: string
  port: number
  /** the partner's PeSIT server id: PI 4 of our CONNECT */
  serverId: string
  /** our requester id at the partner: PI 3 of our CONNECT (`localId`; default: the id of the first configured server) */
  localId: string
  /**
   * PI 5 we present (at most 8 characters): `remotePassword`, or the content of `remotePasswordFile` with one
   * trailing newline removed (as `passwordFile`)
   */
  password: string
  /**
   * PeSIT over TLS to the partner: CA to verify it with (absent: the system's CAs), our client certificate and key
   * (both or neither); absent: plain TCP. The paths as configured, checked readable when the configuration was loaded
   */
  tls?: { caFile?: string, certFile?: string, keyFile?: string }
  /** our concurrent transfers to this partner (default 2, 1–100) */
  maxConnections: number
}

/** The bounds of a partner's outbound `maxConnections` (docs/contract.md §5.3). */
export const MAX_OUTBOUND_CONNECTIONS = 100
export const DEFAULT_OUTBOUND_CONNECTIONS = 2

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
  /** present when the partner entry has `host`: the cluster can call it (the queue and schedules of issue 16) */
  outbound?: PartnerOutbound
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

/** A schedule (docs/contract.md §5.5): the leader sends the matching files of a local send virtual file to a partner. */
export interface ScheduleConfig {
  /** `id` if given, else `<file>-<partner>-<remoteFile>`; unique; a run is identified by (id, scheduled time) */
  id: string
  /** 5 fields (minute first) or 6 (second first), as `cronError` accepts */
  cron: string
  /** IANA time zone of the cron expression, default UTC */
  timezone: string
  direction: 'send'
  /** a partner with `outbound` */
  partner: string
  /** a local virtual file of direction send or both: its directory (with ${partner}) and afterSend apply */
  file: string
  /** glob on file names in that directory: `*` and `?` only, no `/`; default `*` */
  pattern: string
  /** the partner's virtual file id (PI 12 on their side) */
  remoteFile: string
}

export interface PesitConfig {
  servers: PesitServerConfig[]
  partners: PesitPartnerConfig[]
  files: PesitFileConfig[]
  /**
   * Absent means none. The daemon's loader always sets it (`Required<PesitConfig>`, empty without `schedules:`, the
   * embedded default included); optional here so that configurations built in code for the PeSIT servers alone (the
   * test harness) need not name it.
   */
  schedules?: ScheduleConfig[]
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

/** Why `host` cannot be a partner's host, or undefined when it can: a DNS name or an IP address. */
export function hostError (host: string): string | undefined {
  if (isIP(host) !== 0) return undefined
  return host.length <= 253 && /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(host)
    ? undefined
    : 'expected a DNS name or an IP address'
}

/** Why `password` cannot be a PeSIT password (PI 5), or undefined when it can. */
export function pesitPasswordError (password: string): string | undefined {
  return /^[\x20-\x7e]{1,8}$/.test(password) ? undefined : 'expected 1 to 8 printable ASCII characters (PeSIT carries 8 bytes of password)'
}

/** Why `id` cannot be a schedule id, or undefined when it can (a derived `<file>-<partner>-<remoteFile>` always can). */
export function scheduleIdError (id: string): string | undefined {
  return /^[\x21-\x7e][\x20-\x7e]{0,199}$/.test(id) ? undefined : 'expected 1 to 200 printable ASCII characters, not starting with a blank'
}

/** The id of a schedule without one: `<file>-<partner>-<remoteFile>`. */
export function derivedScheduleId (s: Pick<ScheduleConfig, 'file' | 'partner' | 'remoteFile'>): string {
  return `${s.file}-${s.partner}-${s.remoteFile}`
}

/**
 * Why `pattern` cannot be a schedule's `pattern`, or undefined when it can: a glob on the file names of one
 * directory, where `*` (any characters) and `?` (one character) are the only wildcards; no `/` or `\`, and none of
 * `[ ] { }`, which other globs read as wildcards.
 */
export function schedulePatternError (pattern: string): string | undefined {
  if (pattern === '') return 'expected a glob on file names, e.g. *.csv'
  if (/[/\\]/.test(pattern)) return 'expected a glob on the file names of the directory, without / or \\'
  if (/[[\]{}]/.test(pattern)) return 'only * and ? are wildcards: [ ] { } are not accepted'
  if (/\p{Cc}/u.test(pattern)) return 'expected printable characters, no control characters'
  return undefined
}

/** Why `tz` is not an IANA time zone this runtime knows, or undefined when it is. */
export function timezoneError (tz: string): string | undefined {
  try {
    Intl.DateTimeFormat('en-US', { timeZone: tz }).format(0)
  } catch {
    return 'expected an IANA time zone (e.g. UTC, Europe/Paris)'
  }
  return undefined
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
    if (p.outbound !== undefined) validateOutbound(`${k}.outbound`, p.outbound)
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
  const schedules = new Set<string>()
  for (const [i, s] of (c.schedules ?? []).entries()) {
    const k = `schedules[${i}]`
    checkId(k, s.id, scheduleIdError(s.id), schedules, 'schedule')
    const tzError = timezoneError(s.timezone)
    if (tzError !== undefined) throw new PesitConfigError(`${k}.timezone: "${s.timezone}": ${tzError}`)
    const cron = cronError(s.cron, s.timezone)
    if (cron !== undefined) throw new PesitConfigError(`${k}.cron: "${s.cron}": ${cron}`)
    if (s.direction !== 'send') throw new PesitConfigError(`${k}.direction: send (fetch schedules are not supported yet)`)
    const partner = c.partners.find((p) => p.id === s.partner)
    if (partner?.outbound === undefined) throw new PesitConfigError(`${k}.partner: ${s.partner} is ${partner === undefined ? 'not a configured partner' : 'a partner without host (the cluster cannot call it)'}`)
    const file = c.files.find((f) => f.id === s.file)
    if (file === undefined || file.direction === 'receive') throw new PesitConfigError(`${k}.file: ${s.file} is ${file === undefined ? 'not a configured virtual file' : 'a receive virtual file; a schedule sends from a send (or both) one'}`)
    const patternError = schedulePatternError(s.pattern)
    if (patternError !== undefined) throw new PesitConfigError(`${k}.pattern: "${s.pattern}": ${patternError}`)
    const remoteError = fileIdError(s.remoteFile)
    if (remoteError !== undefined) throw new PesitConfigError(`${k}.remoteFile: ${remoteError}`)
  }
}

/** What the requester side relies on in a partner's `outbound` (the loader has already checked the files are readable). */
function validateOutbound (k: string, o: PartnerOutbound): void {
  const host = hostError(o.host)
  if (host !== undefined) throw new PesitConfigError(`${k}.host: "${o.host}": ${host}`)
  if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new PesitConfigError(`${k}.port: ${o.port} is not a TCP port`)
  const serverId = serverIdError(o.serverId)
  if (serverId !== undefined) throw new PesitConfigError(`${k}.serverId: "${o.serverId}": ${serverId}`)
  const localId = serverIdError(o.localId)
  if (localId !== undefined) throw new PesitConfigError(`${k}.localId: "${o.localId}": ${localId}`)
  if (pesitPasswordError(o.password) !== undefined) throw new PesitConfigError(`${k}.password: 1 to 8 printable ASCII characters`)
  if (o.tls !== undefined && (o.tls.certFile === undefined) !== (o.tls.keyFile === undefined)) throw new PesitConfigError(`${k}.tls: certFile and keyFile go together`)
  if (!Number.isInteger(o.maxConnections) || o.maxConnections < 1 || o.maxConnections > MAX_OUTBOUND_CONNECTIONS) {
    throw new PesitConfigError(`${k}.maxConnections: 1..${MAX_OUTBOUND_CONNECTIONS}`)
  }
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
