/**
 * The Hors-SIT FPDU catalogue (docs/pesit.md §3), the PI definitions (§4.5) and the per-FPDU parameter templates
 * (§4.6), as data: the codec encodes in template order and validates received FPDUs against the same table.
 */

export const PHASE_CONNECTION = 0x40
export const PHASE_DATA = 0x00
export const PHASE_OTHER = 0xc0

export const FPDU_TYPES = {
  CONNECT: [PHASE_CONNECTION, 0x20],
  ACONNECT: [PHASE_CONNECTION, 0x21],
  RCONNECT: [PHASE_CONNECTION, 0x22],
  RELEASE: [PHASE_CONNECTION, 0x23],
  RELCONF: [PHASE_CONNECTION, 0x24],
  ABORT: [PHASE_CONNECTION, 0x25],
  READ: [PHASE_OTHER, 0x01],
  WRITE: [PHASE_OTHER, 0x02],
  SYN: [PHASE_OTHER, 0x03],
  DTF_END: [PHASE_OTHER, 0x04],
  RESYN: [PHASE_OTHER, 0x05],
  IDT: [PHASE_OTHER, 0x06],
  TRANS_END: [PHASE_OTHER, 0x08],
  CREATE: [PHASE_OTHER, 0x11],
  SELECT: [PHASE_OTHER, 0x12],
  DESELECT: [PHASE_OTHER, 0x13],
  ORF: [PHASE_OTHER, 0x14],
  CRF: [PHASE_OTHER, 0x15],
  MSG: [PHASE_OTHER, 0x16],
  MSGDM: [PHASE_OTHER, 0x17],
  MSGMM: [PHASE_OTHER, 0x18],
  MSGFM: [PHASE_OTHER, 0x19],
  ACK_CREATE: [PHASE_OTHER, 0x30],
  ACK_SELECT: [PHASE_OTHER, 0x31],
  ACK_DESELECT: [PHASE_OTHER, 0x32],
  ACK_ORF: [PHASE_OTHER, 0x33],
  ACK_CRF: [PHASE_OTHER, 0x34],
  ACK_READ: [PHASE_OTHER, 0x35],
  ACK_WRITE: [PHASE_OTHER, 0x36],
  ACK_TRANS_END: [PHASE_OTHER, 0x37],
  ACK_SYN: [PHASE_OTHER, 0x38],
  ACK_RESYN: [PHASE_OTHER, 0x39],
  ACK_IDT: [PHASE_OTHER, 0x3a],
  ACK_MSG: [PHASE_OTHER, 0x3b],
  DTF: [PHASE_DATA, 0x00],
  DTFMA: [PHASE_DATA, 0x40],
  DTFDA: [PHASE_DATA, 0x41],
  DTFFA: [PHASE_DATA, 0x42]
} as const satisfies Record<string, readonly [number, number]>

export type FpduType = keyof typeof FPDU_TYPES

const BY_CODE = new Map<number, FpduType>()
for (const [name, [phase, code]] of Object.entries(FPDU_TYPES)) BY_CODE.set((phase << 8) | code, name as FpduType)

export function fpduTypeOf (phase: number, code: number): FpduType | undefined {
  return BY_CODE.get((phase << 8) | code)
}

/** The data FPDUs: raw payload instead of parameters. */
export function isDataFpdu (t: FpduType): t is 'DTF' | 'DTFDA' | 'DTFMA' | 'DTFFA' {
  return t === 'DTF' || t === 'DTFDA' || t === 'DTFMA' || t === 'DTFFA'
}

/** FPDUs allowed to share an entity (docs/pesit.md §2.1). */
export function isConcatenable (t: FpduType): boolean {
  return isDataFpdu(t) || t === 'DTF_END' || t === 'SYN'
}

/** The spelling used in logs and in the spec: `ACK(TRANS.END)`, `DTF.END`. */
export function fpduDisplayName (t: FpduType): string {
  const dotted = t.replace('DTF_END', 'DTF.END').replace('TRANS_END', 'TRANS.END')
  return dotted.startsWith('ACK_') ? `ACK(${dotted.slice(4)})` : dotted
}

/**
 * Value kinds (docs/pesit.md §4.4). `C` and `D` decode to strings, `N`/`S`/`M` to numbers, `A` stays bytes,
 * `DIAG` (PI 2) decodes to a Diagnostic.
 */
export type PiKind = 'C' | 'N' | 'S' | 'M' | 'D' | 'A' | 'DIAG'

export interface PiDefinition {
  readonly code: number
  readonly name: string
  readonly kind: PiKind
  /** maximum value length in bytes */
  readonly max: number
  /** exact length for fixed-size aggregates */
  readonly exact?: number
}

function pi (code: number, name: string, kind: PiKind, max: number, exact?: number): PiDefinition {
  return exact === undefined ? { code, name, kind, max } : { code, name, kind, max, exact }
}

export const PI_DEFINITIONS: ReadonlyMap<number, PiDefinition> = new Map([
  pi(1, 'crc', 'S', 1),
  pi(2, 'diagnostic', 'DIAG', 3),
  pi(3, 'requesterId', 'C', 24),
  pi(4, 'serverId', 'C', 24),
  // PI 5 stays bytes: bytes 1-8 the password, 9-16 a new one; blank trimming applies to each half separately.
  pi(5, 'accessControl', 'A', 16),
  pi(6, 'version', 'N', 2),
  pi(7, 'syncOption', 'A', 3, 3),
  pi(11, 'fileType', 'N', 2),
  pi(12, 'fileName', 'C', 76),
  pi(13, 'transferId', 'N', 3),
  pi(14, 'requestedAttributes', 'M', 1),
  pi(15, 'restart', 'S', 1),
  pi(16, 'dataCode', 'S', 1),
  pi(17, 'priority', 'S', 1),
  pi(18, 'restartPoint', 'N', 3),
  pi(19, 'endCode', 'S', 1),
  pi(20, 'syncNumber', 'N', 3),
  pi(21, 'compression', 'A', 2, 2),
  pi(22, 'accessType', 'S', 1),
  pi(23, 'resync', 'S', 1),
  pi(25, 'maxEntitySize', 'N', 2),
  pi(26, 'watchdog', 'N', 2),
  pi(27, 'byteCount', 'N', 8),
  pi(28, 'articleCount', 'N', 4),
  pi(29, 'diagnosticText', 'C', 254),
  pi(31, 'articleFormat', 'M', 1),
  pi(32, 'articleLength', 'N', 2),
  pi(33, 'organisation', 'S', 1),
  pi(37, 'label', 'C', 80),
  pi(38, 'keyLength', 'N', 2),
  pi(39, 'keyOffset', 'N', 2),
  pi(41, 'reservationUnit', 'S', 1),
  pi(42, 'maxReservation', 'N', 4),
  pi(51, 'creationDate', 'D', 12),
  pi(52, 'extractionDate', 'D', 12),
  pi(61, 'clientId', 'C', 24),
  pi(62, 'bankId', 'C', 24),
  pi(63, 'fileAccessControl', 'C', 16),
  pi(64, 'serverDate', 'D', 12),
  pi(91, 'message', 'C', 4096),
  pi(99, 'freeMessage', 'C', 254)
].map((p) => [p.code, p] as const))

/** PGI codes and their names (docs/pesit.md §4.2). */
export const PGI_CODES: ReadonlyMap<number, string> = new Map([
  [9, 'fileIdentifier'],
  [30, 'logicalAttributes'],
  [40, 'physicalAttributes'],
  [50, 'historicalAttributes']
])

/**
 * PIs that exist but have no meaning in Hors-SIT ("unused"): tolerated anywhere and dropped on receipt, so an
 * ETEBAC-minded partner is not refused for them.
 */
export const TOLERATED_UNUSED_PIS: ReadonlySet<number> = new Set([63, 64])

export interface TemplateItem {
  readonly code: number
  readonly optional: boolean
  /** present for a PGI */
  readonly members?: readonly TemplateItem[]
}

/**
 * Parses the notation of docs/pesit.md §4.6: `PGI9{[3] [4] 11 12} 13 [15] ...`, `[x]` optional,
 * `[PGI50{51 [52]}]`.
 */
function parseTemplate (spec: string): TemplateItem[] {
  const items: TemplateItem[] = []
  const re = /(\[)?(?:PGI(\d+)\{([^}]*)\}|(\d+))\]?/g
  for (const m of spec.matchAll(re)) {
    const optional = m[1] === '['
    if (m[2] !== undefined) {
      items.push({ code: Number(m[2]), optional, members: parseTemplate(m[3] ?? '') })
    } else {
      items.push({ code: Number(m[4]), optional })
    }
  }
  for (let i = 1; i < items.length; i++) {
    if (items[i]!.code <= items[i - 1]!.code) throw new Error(`template not in ascending order: ${spec}`)
  }
  return items
}

const PGI30 = 'PGI30{[31] 32 [33] [37] [38] [39]}'
const PGI40 = 'PGI40{[41] 42}'
const PGI9 = 'PGI9{[3] [4] 11 12}'

/** docs/pesit.md §4.6, canonical order. */
const TEMPLATE_SPECS: Record<FpduType, string> = {
  CONNECT: '[1] 3 4 [5] 6 [7] 22 [23] [26] [99]',
  ACONNECT: '[5] 6 [7] [23] [99]',
  RCONNECT: '2 [29] [99]',
  RELEASE: '2 [29] [99]',
  RELCONF: '[99]',
  ABORT: '2 [29]',
  CREATE: `${PGI9} 13 [15] [16] 17 25 ${PGI30} ${PGI40} [PGI50{51 [52]}] [61] [62] [99]`,
  ACK_CREATE: '2 [13] 25 [29] [99]',
  SELECT: `${PGI9} 13 [14] [15] 17 25 [61] [62] [99]`,
  ACK_SELECT: `2 ${PGI9} 13 [16] 25 [29] [${PGI30}] [${PGI40}] [PGI50{51 [52]}] [61] [62] [99]`,
  DESELECT: '2 [29] [99]',
  ACK_DESELECT: '2 [29] [99]',
  ORF: '[21]',
  ACK_ORF: '2 [21] [29]',
  CRF: '2 [29]',
  ACK_CRF: '2 [29]',
  READ: '18',
  ACK_READ: '2 [29]',
  WRITE: '',
  ACK_WRITE: '2 18 [29]',
  DTF: '',
  DTFDA: '',
  DTFMA: '',
  DTFFA: '',
  DTF_END: '2 [29]',
  SYN: '20',
  ACK_SYN: '20',
  RESYN: '2 18 [29]',
  ACK_RESYN: '18',
  IDT: '2 19 [29]',
  ACK_IDT: '',
  TRANS_END: '[27] [28]',
  ACK_TRANS_END: '2 [27] [28] [29]',
  MSG: `${PGI9} 13 [14] [16] [17] [PGI50{51}] [61] [62] [91]`,
  MSGDM: `${PGI9} 13 [14] [16] [17] [PGI50{51}] [61] [62] [91]`,
  MSGMM: '[91]',
  MSGFM: '[91]',
  ACK_MSG: '2 [13] [16] [29] [91]'
}

export const TEMPLATES: Readonly<Record<FpduType, readonly TemplateItem[]>> = Object.fromEntries(
  Object.entries(TEMPLATE_SPECS).map(([k, v]) => [k, parseTemplate(v)])
) as Record<FpduType, TemplateItem[]>

/**
 * Mandatory parameters that a receiver tolerates when absent, because known partners omit them
 * (docs/pesit.md §4.3, §12: a requester accepts an ACK(CREATE) without PI 25, a server an IDT without PI 19). They
 * are still always emitted.
 */
export const TOLERATED_MISSING: Partial<Record<FpduType, ReadonlySet<number>>> = {
  ACK_CREATE: new Set([25]),
  // An IDT without its end-of-transfer code: read as code 4 (error, a restart will follow), the safe reading.
  IDT: new Set([19])
}
