/** The membership state read back from the store is validated before a member starts on it. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decodePersistedState, InvalidPersistedStateError } from '../../cluster/membership/persisted-state.js'

const member = { name: 'vectis-0', peerId: 'peer-0', incarnation: '1-0000abcd', address: '10.0.0.1:7800' }
const valid = {
  highestEpoch: { number: 4, leader: 'vectis-0' },
  maxCounter: 12,
  maxApplied: 11,
  committed: { id: { coordinator: 'vectis-0', counter: 11 }, members: [member] },
  member
}

void test('a state as the machine persists it decodes unchanged; nothing persisted stays undefined', () => {
  assert.deepEqual(decodePersistedState(JSON.parse(JSON.stringify(valid))), valid)
  assert.equal(decodePersistedState(undefined), undefined)
})

void test('a state this version cannot read is refused, naming the field', () => {
  const cases: Array<[unknown, RegExp]> = [
    [['not', 'an', 'object'], /expected a JSON object/],
    [{ ...valid, highestEpoch: { number: -1, leader: 'x' } }, /highestEpoch: expected \{number/],
    [{ ...valid, maxCounter: '12' }, /maxCounter: expected an integer >= 0/],
    [{ ...valid, maxApplied: undefined }, /maxApplied/],
    [{ ...valid, committed: { id: { coordinator: 'vectis-0', counter: 11 }, members: [{ name: 'vectis-0' }] } }, /committed\.members\[0\]/],
    [{ ...valid, pending: { members: [] } }, /pending\.id/]
  ]
  for (const [state, message] of cases) {
    assert.throws(() => decodePersistedState(state), (err: unknown) =>
      err instanceof InvalidPersistedStateError && /^the persisted membership state cannot be read: /.test(err.message) && message.test(err.message),
    JSON.stringify(state))
  }
})
