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
    ['?status=done', /status must be one of in-progress, interrupted, completed, failed, got "done"/],
    ['?status=', /status must be one of/],
    ['?partner=', /partner must be a requester id/],
    [`?partner=${'x'.repeat(65)}`, /partner must be a requester id/],
    ['?stauts=completed', /unknown parameter "stauts"/],
    ['?limit=5&limit=6', /parameter "limit" given more than once/]
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
