/**
 * The YAML file of docs/contract.md §5 (`VECTIS_CONFIG`): parsed and validated into the PeSIT part's configuration
 * (transfer/config-types.ts), every error a `ConfigError` naming the key path (`servers[0].port`,
 * `schedules[1].cron`). The files it names (passwords, TLS certificates) are read through `readFile`, so a missing
 * one stops the start with the key's name; nothing else has side effects. daemon/config.ts reads the environment
 * and calls it.
 */
import { readFileSync } from 'node:fs'
import { isAbsolute, resolve, relative } from 'node:path'
import { ConfigError } from '../common/config-error.js'
import { cronError } from '../common/cron.js'
import {
  DEFAULT_OUTBOUND_CONNECTIONS, MAX_ENTITY_SIZE, MAX_OUTBOUND_CONNECTIONS, MIN_ENTITY_SIZE, derivedScheduleId, directoryTemplateError,
  fileIdError, filenamePatternError, hostError, partnerIdError, pesitPasswordError, scheduleIdError, schedulePatternError,
  serverIdError, timezoneError, type AfterSend, type PartnerOutbound, type PesitConfig, type PesitFileConfig,
  type PesitPartnerConfig, type PesitServerConfig, type ScheduleConfig, type ServerTlsConfig
} from '../transfer/config-types.js'

// ---- embedded defaults of the YAML (docs/contract.md §5) -------------------------------------------------------

export const DEFAULT_PESIT_PORT = 5000
export const DEFAULT_FILENAME_PATTERN = '${partner}_${file}_${transferId}'
export const DEFAULT_SERVER_ID = 'PESITSRV'
export const DEFAULT_MAX_CONNECTIONS = 100
export const DEFAULT_SYNC_INTERVAL_KB = 1024
export const DEFAULT_MAX_ENTITY_SIZE = 65535

// ---- YAML helpers ----------------------------------------------------------------------------------------------

type Obj = Record<string, unknown>

function isObj (v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function show (v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v) ?? String(v)
}

function checkKeys (path: string, o: Obj, allowed: string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new ConfigError(`${path}.${k}`, undefined, `unknown key; expected one of ${allowed.join(', ')}`)
  }
}

function yStr (path: string, v: unknown, re?: RegExp, what?: string): string {
  if (typeof v !== 'string' || v === '') throw new ConfigError(path, v === undefined ? undefined : show(v), `expected ${what ?? 'a non-empty string'}`)
  if (re !== undefined && !re.test(v)) throw new ConfigError(path, v, `expected ${what ?? re.source}`)
  return v
}

/** A non-empty string that `error` (a rule of transfer/config-types.ts) accepts. */
function yId (path: string, v: unknown, error: (id: string) => string | undefined): string {
  const id = yStr(path, v)
  const why = error(id)
  if (why !== undefined) throw new ConfigError(path, id, why)
  return id
}

function yInt (path: string, v: unknown, def: number | undefined, min: number, max: number): number {
  if (v === undefined) {
    if (def === undefined) throw new ConfigError(path, undefined, `required: an integer from ${min} to ${max}`)
    return def
  }
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(path, show(v), `expected an integer from ${min} to ${max}`)
  }
  return v
}

function yEnum<T extends string> (path: string, v: unknown, allowed: readonly T[], def: T): T {
  if (v === undefined) return def
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new ConfigError(path, show(v), `expected one of ${allowed.join(', ')}`)
  }
  return v as T
}

/** A file path of the configuration, used as given, that can be read now. */
function yReadableFile (path: string, v: unknown, readFile: (p: string) => string): string {
  const f = yStr(path, v)
  try {
    readFile(f)
  } catch (err) {
    throw new ConfigError(path, f, `expected a readable file (${(err as Error).message})`, { cause: err })
  }
  return f
}

/**
 * `servers[i].tls`: the files must be readable and the certificate must match its key now, so a mistake stops the
 * start with the key's name instead of failing the first handshake.
 */
function yServerTls (path: string, v: unknown, readFile: (p: string) => string): ServerTlsConfig {
  if (!isObj(v)) throw new ConfigError(path, show(v), 'expected a mapping {certFile, keyFile, caFile, clientAuth, minVersion}')
  checkKeys(path, v, ['certFile', 'keyFile', 'caFile', 'clientAuth', 'minVersion'])
  const file = (k: string, value: unknown): string => yReadableFile(`${path}.${k}`, value, readFile)
  const t: ServerTlsConfig = {
    certFile: file('certFile', v.certFile),
    keyFile: file('keyFile', v.keyFile),
    clientAuth: yEnum(`${path}.clientAuth`, v.clientAuth, ['none', 'optional', 'required'] as const, 'none'),
    minVersion: yEnum(`${path}.minVersion`, v.minVersion, ['TLSv1.2', 'TLSv1.3'] as const, 'TLSv1.2')
  }
  if (v.caFile !== undefined) t.caFile = file('caFile', v.caFile)
  if (t.clientAuth !== 'none' && t.caFile === undefined) throw new ConfigError(`${path}.caFile`, undefined, `required to verify client certificates (clientAuth: ${t.clientAuth})`)
  return t
}

/**
 * A directory of the configuration: relative paths resolve against VECTIS_SHARED_DIR and must stay inside it;
 * `${partner}` is the only placeholder.
 */
function yDirectory (path: string, raw: string, sharedDir: string): string {
  const placeholderError = directoryTemplateError(raw)
  if (placeholderError !== undefined) throw new ConfigError(path, raw, placeholderError)
  const directory = isAbsolute(raw) ? resolve(raw) : resolve(sharedDir, raw)
  if (!isAbsolute(raw) && relative(sharedDir, directory).startsWith('..')) {
    throw new ConfigError(path, raw, 'a relative directory must stay inside VECTIS_SHARED_DIR')
  }
  return directory
}

function yList (path: string, v: unknown): unknown[] {
  if (v === undefined || v === null) return []
  if (!Array.isArray(v)) throw new ConfigError(path, show(v), 'expected a list')
  return v
}

/**
 * A PeSIT password given inline (`key`, a string or a number) or in a file (`fileKey`, its content with one trailing
 * newline removed): exactly one of them. The password never appears in a message.
 */
function yPassword (p: string, x: Obj, key: string, fileKey: string, readFile: (p: string) => string): string {
  if (x[key] !== undefined && x[fileKey] !== undefined) throw new ConfigError(`${p}.${key}`, undefined, `set either ${key} or ${fileKey}, not both`)
  let password: string
  if (x[fileKey] !== undefined) {
    const file = yStr(`${p}.${fileKey}`, x[fileKey])
    try {
      password = readFile(file).replace(/\r?\n$/, '')
    } catch (err) {
      throw new ConfigError(`${p}.${fileKey}`, file, `expected a readable file (${(err as Error).message})`, { cause: err })
    }
  } else {
    const v = x[key]
    if (typeof v !== 'string' && typeof v !== 'number') throw new ConfigError(`${p}.${key}`, undefined, `required (or ${fileKey}): a string of 1 to 8 characters`)
    password = String(v)
  }
  const why = pesitPasswordError(password)
  if (why !== undefined) throw new ConfigError(x[fileKey] !== undefined ? `${p}.${fileKey}` : `${p}.${key}`, undefined, why)
  return password
}

/** The keys of a partner entry that say how the cluster calls it: each needs `host`. */
const OUTBOUND_KEYS = ['port', 'serverId', 'localId', 'remotePassword', 'remotePasswordFile', 'tls', 'maxConnections']

/**
 * `partners[i]` with `host`: how the cluster reaches the partner (docs/contract.md §5.3); undefined without `host`,
 * where any other outbound key is an error. The TLS files are checked readable now, as the servers' are.
 */
function yOutbound (p: string, x: Obj, servers: PesitServerConfig[], readFile: (p: string) => string): PartnerOutbound | undefined {
  if (x.host === undefined) {
    const stray = OUTBOUND_KEYS.find((k) => x[k] !== undefined)
    if (stray !== undefined) throw new ConfigError(`${p}.${stray}`, undefined, 'only with host: the outbound keys say how the cluster calls the partner')
    return undefined
  }
  const host = yId(`${p}.host`, x.host, hostError)
  for (const k of ['port', 'serverId']) {
    if (x[k] === undefined) throw new ConfigError(`${p}.${k}`, undefined, `required with host: ${k === 'port' ? 'the TCP port of the partner\'s PeSIT server' : 'the partner\'s PeSIT server id (PI 4)'}`)
  }
  const port = yInt(`${p}.port`, x.port, undefined, 1, 65535)
  const serverId = yId(`${p}.serverId`, x.serverId, serverIdError)
  let localId: string
  if (x.localId !== undefined) localId = yId(`${p}.localId`, x.localId, serverIdError)
  else if (servers[0] !== undefined) localId = servers[0].id
  else throw new ConfigError(`${p}.localId`, undefined, 'required when no server is configured: our requester id at the partner (PI 3), 1 to 8 upper-case letters or digits')
  const password = yPassword(p, x, 'remotePassword', 'remotePasswordFile', readFile)
  const tls = x.tls === undefined ? undefined : yClientTls(`${p}.tls`, x.tls, readFile)
  const maxConnections = yInt(`${p}.maxConnections`, x.maxConnections, DEFAULT_OUTBOUND_CONNECTIONS, 1, MAX_OUTBOUND_CONNECTIONS)
  return { host, port, serverId, localId, password, ...(tls !== undefined ? { tls } : {}), maxConnections }
}

/** `partners[i].tls`: PeSIT over TLS to the partner, as `vectis send --tls --ca --cert --key` (`{}`: the system's CAs). */
function yClientTls (path: string, v: unknown, readFile: (p: string) => string): NonNullable<PartnerOutbound['tls']> {
  if (!isObj(v)) throw new ConfigError(path, show(v), "expected a mapping {caFile, certFile, keyFile} ({} to verify the partner against the system's CAs)")
  checkKeys(path, v, ['caFile', 'certFile', 'keyFile'])
  if ((v.certFile === undefined) !== (v.keyFile === undefined)) {
    throw new ConfigError(`${path}.${v.certFile === undefined ? 'certFile' : 'keyFile'}`, undefined, 'certFile and keyFile go together: our client certificate and its key, or neither')
  }
  const t: NonNullable<PartnerOutbound['tls']> = {}
  for (const k of ['caFile', 'certFile', 'keyFile'] as const) {
    if (v[k] !== undefined) t[k] = yReadableFile(`${path}.${k}`, v[k], readFile)
  }
  return t
}

/**
 * `schedules` (docs/contract.md §5.5), checked against the partners and files already parsed: a partner the cluster
 * can call, a local virtual file it can send from, one id per schedule.
 */
function ySchedules (v: unknown, partners: PesitPartnerConfig[], files: PesitFileConfig[]): ScheduleConfig[] {
  const idGiven: boolean[] = []
  const schedules = yList('schedules', v).map((x, i): ScheduleConfig => {
    const p = `schedules[${i}]`
    if (!isObj(x)) throw new ConfigError(p, show(x), 'expected a mapping')
    checkKeys(p, x, ['id', 'cron', 'timezone', 'direction', 'partner', 'file', 'pattern', 'remoteFile'])
    if (x.direction !== undefined && x.direction !== 'send') {
      throw new ConfigError(`${p}.direction`, show(x.direction), x.direction === 'fetch'
        ? 'expected send: fetch schedules are not supported by this version'
        : 'expected send (the only direction of a schedule in this version)')
    }
    const timezone = x.timezone === undefined ? 'UTC' : yId(`${p}.timezone`, x.timezone, timezoneError)
    const cron = yStr(`${p}.cron`, x.cron, undefined, 'a cron expression: 5 fields (minute first) or 6 (second first)').trim()
    const cronWhy = cronError(cron, timezone)
    if (cronWhy !== undefined) throw new ConfigError(`${p}.cron`, cron, `expected a cron expression (time zone ${timezone}): ${cronWhy}`)

    const partner = yId(`${p}.partner`, x.partner, partnerIdError)
    const target = partners.find((q) => q.id === partner)
    if (target === undefined) throw new ConfigError(`${p}.partner`, partner, 'not a configured partner (partners[].id)')
    if (target.outbound === undefined) {
      throw new ConfigError(`${p}.partner`, partner, 'this partner has no host: a schedule needs a partner the cluster can call (host, port, serverId, remotePassword)')
    }
    const file = yId(`${p}.file`, x.file, fileIdError)
    const source = files.find((f) => f.id === file)
    if (source === undefined) throw new ConfigError(`${p}.file`, file, 'not a configured virtual file (files[].id)')
    if (source.direction === 'receive') {
      throw new ConfigError(`${p}.file`, file, 'a receive virtual file: a schedule sends the files of a send (or both) virtual file')
    }
    const pattern = x.pattern === undefined ? '*' : yId(`${p}.pattern`, x.pattern, schedulePatternError)
    const remoteFile = yId(`${p}.remoteFile`, x.remoteFile, fileIdError)
    idGiven.push(x.id !== undefined)
    const id = x.id === undefined ? derivedScheduleId({ file, partner, remoteFile }) : yId(`${p}.id`, x.id, scheduleIdError)
    return { id, cron, timezone, direction: 'send', partner, file, pattern, remoteFile }
  })
  const seen = new Set<string>()
  schedules.forEach((s, i) => {
    if (seen.has(s.id)) {
      const given = idGiven[i] === true
      throw new ConfigError(given ? `schedules[${i}].id` : `schedules[${i}]`, s.id, given
        ? 'duplicate schedule id; each must be unique'
        : 'duplicate schedule id (derived from file, partner and remoteFile): give one of the schedules an id')
    }
    seen.add(s.id)
  })
  return schedules
}

/**
 * Parses and validates the YAML document of docs/contract.md §5. `sharedDir` anchors relative directories. The
 * result always has `schedules` (empty without the key).
 */
export function parsePesitConfig (doc: unknown, sharedDir: string, readFile: (p: string) => string = (p) => readFileSync(p, 'utf8')): Required<PesitConfig> {
  if (doc === null || doc === undefined) doc = {}
  if (!isObj(doc)) throw new ConfigError('VECTIS_CONFIG', undefined, 'expected a YAML mapping with servers, partners, files and schedules')
  checkKeys('', doc, ['servers', 'partners', 'files', 'schedules'])

  const servers: PesitServerConfig[] = yList('servers', doc.servers).map((s, i) => {
    const p = `servers[${i}]`
    if (!isObj(s)) throw new ConfigError(p, show(s), 'expected a mapping')
    checkKeys(p, s, ['id', 'port', 'maxConnections', 'syncIntervalKb', 'maxEntitySize', 'tls'])
    return {
      id: yId(`${p}.id`, s.id, serverIdError),
      port: yInt(`${p}.port`, s.port, undefined, 1, 65535),
      maxConnections: yInt(`${p}.maxConnections`, s.maxConnections, DEFAULT_MAX_CONNECTIONS, 1, 100_000),
      syncIntervalKb: yInt(`${p}.syncIntervalKb`, s.syncIntervalKb, DEFAULT_SYNC_INTERVAL_KB, 0, 65534),
      maxEntitySize: yInt(`${p}.maxEntitySize`, s.maxEntitySize, DEFAULT_MAX_ENTITY_SIZE, MIN_ENTITY_SIZE, MAX_ENTITY_SIZE),
      ...(s.tls !== undefined ? { tls: yServerTls(`${p}.tls`, s.tls, readFile) } : {})
    }
  })

  const partners: PesitPartnerConfig[] = yList('partners', doc.partners).map((x, i) => {
    const p = `partners[${i}]`
    if (!isObj(x)) throw new ConfigError(p, show(x), 'expected a mapping')
    checkKeys(p, x, ['id', 'password', 'passwordFile', 'access', 'tlsClientCn', 'host', ...OUTBOUND_KEYS])
    const id = yId(`${p}.id`, x.id, partnerIdError)
    const password = yPassword(p, x, 'password', 'passwordFile', readFile)
    const tlsClientCn = x.tlsClientCn === undefined ? undefined : yStr(`${p}.tlsClientCn`, x.tlsClientCn)
    if (tlsClientCn !== undefined && !/^[\x20-\x7e]{1,64}$/.test(tlsClientCn)) throw new ConfigError(`${p}.tlsClientCn`, tlsClientCn, 'expected 1 to 64 printable ASCII characters')
    const access = yEnum(`${p}.access`, x.access, ['read', 'write', 'both'] as const, 'both')
    const outbound = yOutbound(p, x, servers, readFile)
    return { id, password, access, ...(tlsClientCn !== undefined ? { tlsClientCn } : {}), ...(outbound !== undefined ? { outbound } : {}) }
  })

  const files: PesitFileConfig[] = yList('files', doc.files).map((f, i) => {
    const p = `files[${i}]`
    if (!isObj(f)) throw new ConfigError(p, show(f), 'expected a mapping')
    checkKeys(p, f, ['id', 'direction', 'directory', 'filenamePattern', 'afterSend'])
    const directory = yDirectory(`${p}.directory`, yStr(`${p}.directory`, f.directory), sharedDir)
    const direction = yEnum(`${p}.direction`, f.direction, ['receive', 'send', 'both'] as const, 'receive')
    let afterSend: AfterSend = { action: 'keep' }
    if (f.afterSend !== undefined) {
      const raw = yStr(`${p}.afterSend`, f.afterSend)
      if (direction === 'receive') throw new ConfigError(`${p}.afterSend`, raw, 'only a send (or both) virtual file has an after-send action')
      if (raw === 'keep' || raw === 'delete') afterSend = { action: raw }
      else if (raw.startsWith('move:') && raw.length > 5) afterSend = { action: 'move', directory: yDirectory(`${p}.afterSend`, raw.slice(5), sharedDir) }
      else throw new ConfigError(`${p}.afterSend`, raw, 'expected keep, delete or move:<directory>')
    }
    const pattern = f.filenamePattern === undefined ? DEFAULT_FILENAME_PATTERN : yStr(`${p}.filenamePattern`, f.filenamePattern)
    const patternError = filenamePatternError(pattern)
    if (patternError !== undefined) throw new ConfigError(`${p}.filenamePattern`, pattern, patternError)
    return { id: yId(`${p}.id`, f.id, fileIdError), direction, directory, filenamePattern: pattern, ...(direction !== 'receive' ? { afterSend } : {}) }
  })

  const unique = (what: string, ids: Array<string | number>): void => {
    const seen = new Set<string | number>()
    ids.forEach((id, i) => {
      if (seen.has(id)) throw new ConfigError(`${what}[${i}]`, String(id), 'duplicate; each must be unique')
      seen.add(id)
    })
  }
  unique('servers', servers.map((s) => s.tls === undefined ? s.id : `${s.id} over TLS`))
  unique('servers', servers.map((s) => s.port))
  unique('partners', partners.map((p) => p.id))
  unique('files', files.map((f) => f.id))
  return { servers, partners, files, schedules: ySchedules(doc.schedules, partners, files) }
}

/** The embedded default when no VECTIS_CONFIG is given: one server on 5000, no partners, no files, no schedules. */
export function defaultPesitConfig (): Required<PesitConfig> {
  return {
    servers: [{ id: DEFAULT_SERVER_ID, port: DEFAULT_PESIT_PORT, maxConnections: DEFAULT_MAX_CONNECTIONS, syncIntervalKb: DEFAULT_SYNC_INTERVAL_KB, maxEntitySize: DEFAULT_MAX_ENTITY_SIZE }],
    partners: [],
    files: [],
    schedules: []
  }
}

