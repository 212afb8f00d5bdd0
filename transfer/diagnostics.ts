/**
 * PI 2 diagnostics (docs/pesit.md §5): `[type][reason hi][reason lo]`, written `Dt-rrr`.
 *
 * The catalogue below is the 1989 annex plus the few codes partners are known to send; a code missing from it is
 * still carried and logged, only without a description.
 */

export interface Diagnostic {
  /** 0 success, 1 transmission, 2 file/transfer, 3 connection/protocol */
  readonly type: number
  /** decimal reason of the annex, 0..65535 */
  readonly reason: number
}

function d (type: number, reason: number): Diagnostic {
  return Object.freeze({ type, reason })
}

/** The diagnostics this implementation emits or interprets, by name. */
export const DIAG = Object.freeze({
  OK: d(0, 0),
  TRANSMISSION_ERROR: d(1, 100),
  FILE_CHARACTERISTICS: d(2, 200),
  SYSTEM_RESOURCES: d(2, 201),
  USER_RESOURCES: d(2, 202),
  FILE_EXISTS: d(2, 204),
  FILE_NOT_FOUND: d(2, 205),
  QUOTA_EXCEEDED: d(2, 206),
  FILE_BUSY: d(2, 207),
  MESSAGE_NOT_ACCEPTED: d(2, 209),
  PRESENTATION_NEGOTIATION: d(2, 210),
  CANNOT_OPEN: d(2, 211),
  CANNOT_CLOSE: d(2, 212),
  IO_ERROR: d(2, 213),
  RESTART_NEGOTIATION: d(2, 214),
  SYSTEM_ERROR: d(2, 215),
  VOLUNTARY_STOP: d(2, 216),
  TOO_MANY_UNACKED_SYNC: d(2, 217),
  RESYNC_IMPOSSIBLE: d(2, 218),
  SPACE_EXHAUSTED: d(2, 219),
  ARTICLE_TOO_LONG: d(2, 220),
  TOO_MUCH_DATA_WITHOUT_SYNC: d(2, 222),
  ABNORMAL_END: d(2, 223),
  FILE_LARGER_THAN_ANNOUNCED: d(2, 224),
  NOT_DELIVERED: d(2, 225),
  TRANSFER_REFUSED: d(2, 226),
  UNKNOWN_SYNC_POINT: d(2, 228),
  FILE_MODIFIED: d(2, 229),
  NO_RESTART_CONTEXT: d(2, 233),
  OTHER_FILE_ERROR: d(2, 299),
  CONGESTED: d(3, 300),
  CALLED_UNKNOWN: d(3, 301),
  REMOTE_CONGESTED: d(3, 303),
  REQUESTER_NOT_AUTHORISED: d(3, 304),
  SELECT_NEGOTIATION: d(3, 305),
  RESYN_NEGOTIATION: d(3, 306),
  SYNC_NEGOTIATION: d(3, 307),
  VERSION_NOT_SUPPORTED: d(3, 308),
  TOO_MANY_PARTNER_CONNECTIONS: d(3, 309),
  NETWORK_INCIDENT: d(3, 310),
  PROTOCOL_ERROR: d(3, 311),
  SERVICE_CLOSED: d(3, 312),
  INACTIVITY_TIMEOUT: d(3, 313),
  NEGOTIATION_FAILURE: d(3, 315),
  CUT_BY_ADMINISTRATOR: d(3, 316),
  TIMER_EXPIRED: d(3, 317),
  BAD_PARAMETER: d(3, 318),
  BAD_COUNT: d(3, 319),
  OTHER: d(3, 399)
})

const DESCRIPTIONS: ReadonlyMap<string, string> = new Map([
  ['D0-000', 'success'],
  ['D1-100', 'transmission error'],
  ['D2-200', 'file characteristics insufficient'],
  ['D2-201', 'system resources temporarily insufficient'],
  ['D2-202', 'user resources temporarily insufficient'],
  ['D2-203', 'transfer not priority'],
  ['D2-204', 'file already exists'],
  ['D2-205', 'file does not exist'],
  ['D2-206', 'disk quota would be exceeded'],
  ['D2-207', 'file busy'],
  ['D2-208', 'file too old'],
  ['D2-209', 'message of this type not accepted'],
  ['D2-210', 'presentation context negotiation failed'],
  ['D2-211', 'cannot open file'],
  ['D2-212', 'cannot close file normally'],
  ['D2-213', 'blocking I/O error'],
  ['D2-214', 'restart point negotiation failed'],
  ['D2-215', 'system-specific error'],
  ['D2-216', 'voluntary premature stop'],
  ['D2-217', 'too many unacknowledged sync points'],
  ['D2-218', 'resynchronisation impossible'],
  ['D2-219', 'file space exhausted'],
  ['D2-220', 'article longer than expected'],
  ['D2-221', 'end-of-transmission timer expired'],
  ['D2-222', 'too much data without sync point'],
  ['D2-223', 'abnormal end of transfer'],
  ['D2-224', 'file larger than announced'],
  ['D2-225', 'file received but not delivered to the application'],
  ['D2-226', 'transfer refused'],
  ['D2-227', 'restart impossible: not restartable'],
  ['D2-228', 'restart impossible: unknown sync point'],
  ['D2-229', 'restart impossible: file modified'],
  ['D2-230', 'restart impossible: delay exceeded'],
  ['D2-233', 'no restart context'],
  ['D2-299', 'other file error'],
  ['D3-300', 'local communication system congested'],
  ['D3-301', 'called identification unknown'],
  ['D3-302', 'requester not attached'],
  ['D3-303', 'remote system congested'],
  ['D3-304', 'requester identification not authorised'],
  ['D3-305', 'SELECT negotiation failure'],
  ['D3-306', 'RESYN negotiation failure'],
  ['D3-307', 'SYNC negotiation failure'],
  ['D3-308', 'version not supported'],
  ['D3-309', 'too many connections for this partner'],
  ['D3-310', 'network incident'],
  ['D3-311', 'remote PeSIT protocol error'],
  ['D3-312', 'service closed by the user'],
  ['D3-313', 'connection cut after inactivity'],
  ['D3-314', 'idle connection cut to admit a new one'],
  ['D3-315', 'negotiation failure'],
  ['D3-316', 'cut by administrator'],
  ['D3-317', 'timer expired'],
  ['D3-318', 'mandatory PI missing or illegal PI content'],
  ['D3-319', 'byte or article count incorrect'],
  ['D3-320', 'too many resynchronisations'],
  ['D3-321', 'call the backup number'],
  ['D3-322', 'call back later'],
  ['D3-399', 'other']
])

export function formatDiagnostic (diag: Diagnostic): string {
  return `D${diag.type}-${String(diag.reason).padStart(3, '0')}`
}

/**
 * The code of a diagnostic of PROTOCOL.md's annex, or `other`: a metric label, bounded whatever a partner sends
 * (a code comes from the peer in IDT, ABORT and DTF.END).
 */
export function diagnosticLabel (diag: Diagnostic): string {
  const code = formatDiagnostic(diag)
  return DESCRIPTIONS.has(code) ? code : 'other'
}

export function describeDiagnostic (diag: Diagnostic): string {
  const code = formatDiagnostic(diag)
  const text = DESCRIPTIONS.get(code)
  return text === undefined ? code : `${code} ${text}`
}

export function isSuccess (diag: Diagnostic): boolean {
  return diag.type === 0 && diag.reason === 0
}

export function encodeDiagnostic (diag: Diagnostic): Uint8Array {
  if (!Number.isInteger(diag.type) || diag.type < 0 || diag.type > 255) throw new RangeError(`diagnostic type ${diag.type} out of range`)
  if (!Number.isInteger(diag.reason) || diag.reason < 0 || diag.reason > 0xffff) throw new RangeError(`diagnostic reason ${diag.reason} out of range`)
  return Uint8Array.of(diag.type, diag.reason >> 8, diag.reason & 0xff)
}

/**
 * Decodes a PI 2 value. Accepts the 1- and 2-byte forms some implementations send (missing high bytes are 0);
 * returns undefined for anything else so the caller can answer D3-318.
 */
export function decodeDiagnostic (value: Uint8Array): Diagnostic | undefined {
  if (value.length === 3) return { type: value[0]!, reason: (value[1]! << 8) | value[2]! }
  if (value.length === 2) return { type: 0, reason: (value[0]! << 8) | value[1]! }
  if (value.length === 1) return { type: 0, reason: value[0]! }
  return undefined
}
