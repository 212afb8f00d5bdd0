import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TransfersQueryError } from '../../store/errors.js'
import { DEFAULT_TRANSFERS_LIMIT, listTransfers, MAX_TRANSFERS_LIMIT, parseTransfersQuery } from '../../store/transfers-api.js'
import { startStore, tempDataDir, transfer } from '../helpers/store-fixtures.js'

test('query parsing: defaults, bounds and filters', () => {
  assert.deepEqual(parseTransfersQuery(''), { limit: DEFAULT_TRANSFERS_LIMIT })
  assert.deepEqual(parseTransfersQuery('?'), { limit: 100 })
  assert.deepEqual(parseTransfersQuery('limit=1'), { limit: 1 })
  assert.deepEqual(parseTransfersQuery('?limit=1000'), { limit: MAX_TRANSFERS_LIMIT })
  assert.deepEqual(parseTransfersQuery('?limit=0042'), { limit: 42 })
  assert.deepEqual(parseTransfersQuery('?status=interrupted&partner=CXCLIENT'),
    { limit: 100, status: 'interrupted', partner: 'CXCLIENT' })
  assert.deepEqual(parseTransfersQuery(new URLSearchParams({ partner: 'A B', status: 'completed' })),
    { limit: 100, status: 'completed', partner: 'A B' })
  assert.deepEqual(parseTransfersQuery('?before=4-17%40x&limit=5'), { limit: 5, before: '4-17@x' })
})

test('bad queries are 400 errors whose message says what is wrong', () => {
  const cases: Array<[string, RegExp]> = [
    ['?limit=0', /limit must be an integer from 1 to 1000, got "0"/],
    ['?limit=1001', /limit must be an integer from 1 to 1000, got "1001"/],
    ['?limit=-5', /got "-5"/],
    ['?limit=abc', /got "abc"/],
    ['?limit=1.5', /got "1\.5"/],
    ['?limit=1e3', /got "1e3"/],
    ['?limit=', /got ""/],
    ['?limit=99999999999999999999', /limit must be/],
    ['?status=done', /status must be one of queued, in-progress, interrupted, completed, failed, cancelled, unconfirmed, got "done"/],
    ['?status=', /status must be one of/],
    ['?partner=', /partner must be a requester id/],
    [`?partner=${'x'.repeat(65)}`, /partner must be a requester id/],
    ['?stauts=completed', /unknown parameter "stauts"/],
    ['?limit=5&limit=6', /parameter "limit" given more than once/],
    ['?before=', /before must be a transfer id of 1 to 256 characters/],
    [`?before=${'1'.repeat(257)}`, /before must be a transfer id/],
    ['?before=1-1&before=1-2', /parameter "before" given more than once/]
  ]
  for (const [q, msg] of cases) {
    assert.throws(() => parseTransfersQuery(q), (err: unknown) => {
      assert.ok(err instanceof TransfersQueryError, q)
      assert.equal(err.statusCode, 400)
      assert.match(err.message, msg, q)
      return true
    })
  }
  const long = 'z'.repeat(500)
  assert.throws(() => parseTransfersQuery(`?status=${long}`), (err: unknown) =>
    err instanceof TransfersQueryError && err.message.length < 200)
})

test('listTransfers answers the journal newest first, filtered and limited, as plain JSON', async (t) => {
  const { store, clock } = await startStore(t, tempDataDir(t))
  const ids: string[] = []
  for (let i = 0; i < 5; i++) {
    clock.advance(1000)
    const r = store.journal.begin(transfer(1, { partner: i < 2 ? 'ALPHA' : 'BETA' }))
    if (i === 3) store.journal.interrupt(r.id, 'IDT')
    ids.push(r.id)
  }
  const all = listTransfers(store.journal, '?limit=10')
  assert.deepEqual(all.transfers.map((r) => r.id), [...ids].reverse())
  assert.deepEqual(store.listTransfers('limit=2').transfers.map((r) => r.id), [ids[4], ids[3]])
  assert.deepEqual(store.listTransfers('?partner=ALPHA').transfers.map((r) => r.id), [ids[1], ids[0]])
  const interrupted = store.listTransfers('?status=interrupted')
  assert.deepEqual(interrupted.transfers.map((r) => [r.id, r.status, r.diagnostic]), [[ids[3], 'interrupted', 'IDT']])
  assert.deepEqual(JSON.parse(JSON.stringify(all)), all)
  assert.throws(() => store.listTransfers('?limit=5000'), TransfersQueryError)
})

test('paging with the before cursor: every row once, newest first, filters kept, next null on the last page', async (t) => {
  const { store, clock } = await startStore(t, tempDataDir(t))
  const ids: string[] = []
  for (let i = 0; i < 11; i++) {
    // Pairs created in the same millisecond: the cursor must not skip or repeat a row of a tie.
    if (i % 2 === 0) clock.advance(1000)
    const r = store.journal.begin(transfer(1, { partner: i % 3 === 0 ? 'ALPHA' : 'BETA' }))
    if (i % 4 === 1) store.journal.fail(r.id, 'D2-205: refused')
    ids.push(r.id)
  }
  const pages = (query: string): string[][] => {
    const out: string[][] = []
    let before: string | null = null
    do {
      const page = store.listTransfers(`${query}${before === null ? '' : `&before=${encodeURIComponent(before)}`}`)
      out.push(page.transfers.map((r) => r.id))
      before = page.next
      if (before !== null) assert.equal(before, page.transfers.at(-1)!.id, 'next is the last row of the page')
    } while (before !== null && out.length < 20)
    return out
  }
  const newestFirst = [...ids].reverse()
  assert.deepEqual(pages('?limit=4'), [newestFirst.slice(0, 4), newestFirst.slice(4, 8), newestFirst.slice(8)])
  // A last page that is exactly full says so: no empty page after it.
  assert.deepEqual(pages('?limit=11'), [newestFirst])
  assert.deepEqual(pages(''), [newestFirst])
  const alpha = newestFirst.filter((_, i) => (10 - i) % 3 === 0)
  assert.deepEqual(pages('?partner=ALPHA&limit=2').flat(), alpha)
  const failed = store.listTransfers('?status=failed&limit=100').transfers.map((r) => r.id)
  assert.deepEqual(failed, newestFirst.filter((id) => ids.indexOf(id) % 4 === 1))
  assert.deepEqual(pages('?status=failed&limit=1').flat(), failed)
  // The cursor need not match the filter: a page of ALPHA rows after a BETA row.
  assert.deepEqual(store.listTransfers(`?partner=ALPHA&before=${ids[8]!}`).transfers.map((r) => r.id), alpha.filter((id) => ids.indexOf(id) < 8))
  assert.deepEqual(store.listTransfers(`?before=${ids[0]!}`), { transfers: [], next: null })
  assert.throws(() => store.listTransfers('?before=99-1'),
    (err: unknown) => err instanceof TransfersQueryError && /before: no transfer "99-1" in this member's journal/.test(err.message))
})
