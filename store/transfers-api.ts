/**
 * `GET /api/transfers` (docs/contract.md §3.7) as a pure function: the HTTP layer authenticates, passes the query
 * string, and answers 200 with the returned body as JSON, or 400 `{"error": err.message}` on a
 * TransfersQueryError.
 *
 * Parameters: `limit` (1..1000, default 100), `status` (in-progress | interrupted | completed | failed), `partner`
 * (exact requester id), `before` (the cursor: a transfer's id, for the rows after it). Unknown or repeated
 * parameters are refused rather than ignored, so a typo (`?stauts=`) does not silently return everything. Rows are
 * newest first (creation time); `next` is the `before` of the following page, null on the last one.
 */
import { TransferNotFoundError, TransfersQueryError } from './errors.js'
import { TRANSFER_STATUSES, type Journal, type TransferRecord, type TransferStatus } from './journal.js'

export const DEFAULT_TRANSFERS_LIMIT = 100
export const MAX_TRANSFERS_LIMIT = 1000
/** Longer than any id (`<epoch>-<serial>@<backup id>`): a longer cursor cannot name a row. */
const MAX_CURSOR_LENGTH = 256
const KNOWN = new Set(['limit', 'status', 'partner', 'before'])

export interface TransfersQuery {
  limit: number
  status?: TransferStatus
  partner?: string
  before?: string
}

export interface TransfersResponse {
  transfers: TransferRecord[]
  /** The id to pass as `before` for the next page; null when no row follows. */
  next: string | null
}

/** Parses `?limit=&status=&partner=` (a URLSearchParams, or a query string with or without its `?`). */
export function parseTransfersQuery (query: URLSearchParams | string): TransfersQuery {
  const params = typeof query === 'string' ? new URLSearchParams(query) : query
  for (const key of new Set(params.keys())) {
    if (!KNOWN.has(key)) throw new TransfersQueryError(`unknown parameter "${clip(key)}" (known: limit, status, partner, before)`)
    if (params.getAll(key).length > 1) throw new TransfersQueryError(`parameter "${key}" given more than once`)
  }
  const q: TransfersQuery = { limit: DEFAULT_TRANSFERS_LIMIT }
  const limit = params.get('limit')
  if (limit !== null) {
    if (!/^[0-9]{1,7}$/.test(limit) || Number(limit) < 1 || Number(limit) > MAX_TRANSFERS_LIMIT) {
      throw new TransfersQueryError(`limit must be an integer from 1 to ${MAX_TRANSFERS_LIMIT}, got "${clip(limit)}"`)
    }
    q.limit = Number(limit)
  }
  const status = params.get('status')
  if (status !== null) {
    if (!(TRANSFER_STATUSES as readonly string[]).includes(status)) {
      throw new TransfersQueryError(`status must be one of ${TRANSFER_STATUSES.join(', ')}, got "${clip(status)}"`)
    }
    q.status = status as TransferStatus
  }
  const partner = params.get('partner')
  if (partner !== null) {
    if (partner.length === 0 || partner.length > 64) {
      throw new TransfersQueryError('partner must be a requester id of 1 to 64 characters')
    }
    q.partner = partner
  }
  const before = params.get('before')
  if (before !== null) {
    if (before.length === 0 || before.length > MAX_CURSOR_LENGTH) {
      throw new TransfersQueryError(`before must be a transfer id of 1 to ${MAX_CURSOR_LENGTH} characters (the "next" of the previous page)`)
    }
    q.before = before
  }
  return q
}

/** The handler body: parse, query, and return a JSON-serialisable answer. Throws TransfersQueryError (400). */
export function listTransfers (journal: Pick<Journal, 'list'>, query: URLSearchParams | string): TransfersResponse {
  const q = parseTransfersQuery(query)
  let rows: TransferRecord[]
  try {
    // One row more than asked tells whether a next page exists.
    rows = journal.list({ ...q, limit: q.limit + 1 })
  } catch (err) {
    if (err instanceof TransferNotFoundError && q.before !== undefined) {
      throw new TransfersQueryError(`before: no transfer "${clip(q.before)}" in this member's journal (pruned by retention since the previous page?)`)
    }
    throw err
  }
  const more = rows.length > q.limit
  if (more) rows.pop()
  return { transfers: rows, next: more ? rows[rows.length - 1]!.id : null }
}

/** Echoed values are shortened so an error message never carries a huge or hostile query back whole. */
function clip (v: string): string {
  return v.length > 40 ? `${v.slice(0, 40)}…` : v
}
