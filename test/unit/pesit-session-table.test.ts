import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { transition, expectedIn } from '../../transfer/session-table.js'
import { validatePesitConfig, finalFileName, transferStem, type PesitConfig } from '../../transfer/config-types.js'
import { PesitConfigError } from '../../transfer/errors.js'

describe('PeSIT state table', () => {
  it('server: the recorded push sequence is a path through the table', () => {
    const seq = ['CONNECT', 'CREATE', 'ORF', 'WRITE', 'DTF', 'DTFDA', 'DTFMA', 'DTFFA', 'SYN', 'DTF', 'DTF_END', 'TRANS_END', 'CRF', 'DESELECT', 'RELEASE'] as const
    let s = 'CN01' as Parameters<typeof transition>[1]
    for (const f of seq) {
      const n = transition('server', s, f)
      assert.ok(n !== undefined, `${f} in ${s}`)
      s = n
    }
    assert.equal(s, 'CN01')
  })

  it('server: the pull sequence (send direction) fits the same table', () => {
    let s = transition('server', 'CN03', 'SELECT')!
    s = transition('server', s, 'ORF')!
    assert.equal(transition('server', s, 'READ'), 'TDL02')
    assert.equal(transition('server', 'TDL02', 'ACK_SYN'), 'TDL02')
    assert.equal(transition('server', 'TDL07', 'TRANS_END'), 'OF02')
  })

  it('requester: answers expected after each request', () => {
    assert.equal(transition('requester', 'CN02', 'ACONNECT'), 'CN03')
    assert.equal(transition('requester', 'CN02', 'RCONNECT'), 'CN01')
    assert.equal(transition('requester', 'TDE08', 'ACK_SYN'), 'TDE08', 'late ACK(SYN) accepted')
    assert.equal(transition('requester', 'TDL02', 'DTF_END'), 'TDL07')
    assert.equal(transition('requester', 'SF01', 'ACK_SELECT'), undefined)
  })

  it('unexpected FPDUs have no transition; ABORT always has one', () => {
    assert.equal(transition('server', 'CN01', 'WRITE'), undefined)
    assert.equal(transition('server', 'CN03', 'DTF'), undefined)
    assert.equal(transition('server', 'TDE02', 'CRF'), undefined)
    assert.equal(transition('server', 'TDE07', 'DTF'), undefined)
    assert.equal(transition('server', 'SF03', 'WRITE'), undefined)
    for (const s of ['CN01', 'CN03', 'SF03', 'OF02', 'TDE02', 'TDX05'] as const) assert.equal(transition('server', s, 'ABORT'), 'CN01')
    assert.deepEqual(expectedIn('server', 'SF03').sort(), ['ABORT', 'DESELECT', 'ORF'])
  })
})

describe('PeSIT configuration', () => {
  const good = (): PesitConfig => ({
    servers: [{ id: 'PESITSRV', port: 5000, maxConnections: 100, syncIntervalKb: 1024, maxEntitySize: 65535 }],
    partners: [{ id: 'CXCLIENT', password: 'secret', access: 'both' }],
    files: [{ id: 'PAYMENTS', direction: 'receive', directory: '/shared/inbox', filenamePattern: '${partner}_${file}_${transferId}' }]
  })

  it('accepts a configuration shaped like docs/contract.md §5.6 and names the key of each problem', () => {
    validatePesitConfig(good())
    const bad: Array<[(c: PesitConfig) => void, RegExp]> = [
      [(c) => { c.servers[0]!.id = 'pesit srv' }, /servers\[0\]\.id/],
      [(c) => { c.servers[0]!.port = 70000 }, /servers\[0\]\.port/],
      [(c) => { c.servers[0]!.maxEntitySize = 10 }, /maxEntitySize/],
      [(c) => { c.servers.push({ ...c.servers[0]! }) }, /duplicate server/],
      [(c) => { c.partners[0]!.password = 'way too long' }, /partners\[0\]\.password/],
      [(c) => { c.files[0]!.directory = 'inbox' }, /files\[0\]\.directory/],
      [(c) => { c.partners[0]!.id = 'CX CLIENT' }, /partners\[0\]\.id: .*without blanks/],
      [(c) => { c.files[0]!.filenamePattern = '${user}' }, /unknown placeholder/],
      [(c) => { c.files[0]!.filenamePattern = 'a/b' }, /without \//],
      [(c) => { c.files[0]!.filenamePattern = '.${file}' }, /start with a dot/]
    ]
    for (const [mut, re] of bad) {
      const c = good()
      mut(c)
      assert.throws(() => { validatePesitConfig(c) }, (e: unknown) => e instanceof PesitConfigError && re.test(e.message))
    }
  })

  it('final names stay inside their directory', () => {
    assert.equal(finalFileName('${partner}_${file}_${transferId}', { partner: 'CX', file: 'PAY', transferId: 9417 }), 'CX_PAY_9417')
    assert.equal(finalFileName('${file}.dat', { partner: 'CX', file: '../etc/passwd', transferId: 1 }), '__etc_passwd.dat')
    assert.equal(transferStem({ partner: 'A/B', file: 'F', transferId: 3 }), '.vectis-A_B-F-3')
  })
})
