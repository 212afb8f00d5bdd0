import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer, connect, type Server } from 'node:net'
import { TcpLoadBalancer, type ConnectionEvent } from '../../dev-cluster/load-balancer.js'
import { silentLogger } from '../../common/logger.js'
import { ManualClock } from '../helpers/manual-clock.js'
import { waitFor } from '../helpers/wait.js'

async function backend (tag: string): Promise<{ server: Server, port: number }> {
  const server = createServer((s) => { s.on('data', (d) => { s.write(`${tag}:${d.toString()}`) }) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const a = server.address()
  return { server, port: typeof a === 'object' && a !== null ? a.port : 0 }
}

async function ask (port: number, msg: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port })
    let got = ''
    s.on('data', (d) => { got += d.toString(); s.end() })
    s.on('close', () => { resolve(got) })
    s.on('error', reject)
    s.write(msg)
  })
}

describe('TcpLoadBalancer', () => {
  it('routes new connections to the current endpoint, keeps established ones, refuses without one', async () => {
    const a = await backend('a')
    const b = await backend('b')
    const lb = new TcpLoadBalancer({ logger: silentLogger() }, { host: '127.0.0.1', port: 0 })
    await lb.start()
    try {
      const port = lb.port!
      assert.equal(await ask(port, 'x'), '', 'no endpoint: closed at once')
      assert.equal(lb.refused, 1)
      lb.setEndpoint({ host: '127.0.0.1', port: a.port, name: 'pod-a' })
      assert.equal(await ask(port, 'hello'), 'a:hello')
      // An established connection stays on its backend when the endpoint moves.
      const held = connect({ host: '127.0.0.1', port })
      await new Promise<void>((resolve) => held.once('connect', () => { resolve() }))
      lb.setEndpoint({ host: '127.0.0.1', port: b.port, name: 'pod-b' })
      const heldAnswer = new Promise<string>((resolve) => held.once('data', (d) => { resolve(d.toString()) }))
      held.write('still')
      assert.equal(await heldAnswer, 'a:still')
      held.destroy()
      assert.equal(await ask(port, 'new'), 'b:new')
      assert.deepEqual([...lb.routed.entries()].sort(), [['pod-a', 2], ['pod-b', 1]])
    } finally {
      await lb.stop()
      a.server.close()
      b.server.close()
    }
  })

  it('with a rate cap, forwards each direction a bucket at a time as its clock moves, the bytes intact', async () => {
    // 100 000 B/s: a bucket of 10 000 bytes, refilled by 10 000 each 100 ms of the (hand-moved) clock.
    const rate = 100_000
    const bucket = 10_000
    const clock = new ManualClock()
    const overCap: string[] = []
    let atBackend = 0
    const echo = createServer((s) => {
      s.on('data', (d: Buffer) => {
        atBackend += d.length
        // The invariant, checked at each arrival: never more than a full bucket plus what the clock has refilled.
        const allowed = bucket + clock.now() * rate / 1000
        if (atBackend > allowed) overCap.push(`${atBackend} bytes at ${clock.now()} ms, ${allowed} allowed`)
        s.write(d)
      })
    })
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
    const a = echo.address()
    const lb = new TcpLoadBalancer({ logger: silentLogger(), clock }, { host: '127.0.0.1', port: 0, bytesPerSecond: rate })
    lb.setEndpoint({ host: '127.0.0.1', port: typeof a === 'object' && a !== null ? a.port : 0 })
    await lb.start()
    const client = connect({ host: '127.0.0.1', port: lb.port! })
    try {
      const sent = randomBytes(4.5 * bucket)
      const back: Buffer[] = []
      let atClient = 0
      client.on('data', (d: Buffer) => { back.push(d); atClient += d.length })
      client.write(sent)
      // The clock stands still between steps: each step lets exactly one more bucket through, both ways.
      for (let step = 1; ; step++) {
        const expected = Math.min(sent.length, step * bucket)
        await waitFor(() => atBackend >= expected && atClient >= expected, { timeoutMs: 10_000, what: `${expected} bytes through both ways at ${clock.now()} ms` })
        assert.deepEqual({ atBackend, atClient }, { atBackend: expected, atClient: expected }, `at ${clock.now()} ms`)
        if (expected === sent.length) break
        clock.advance(100)
      }
      assert.deepEqual(overCap, [])
      assert.ok(Buffer.concat(back).equals(sent), 'the bytes came back intact and in order')
    } finally {
      client.destroy()
      await lb.stop()
      echo.close()
    }
  })

  for (const bytesPerSecond of [undefined, 10_000_000]) {
    it(`tells an observer every byte forwarded each way and each connection's end, once (${bytesPerSecond === undefined ? 'no cap' : 'capped'})`, async () => {
      // A backend that answers each chunk with its length in decimal and a newline.
      const server = createServer((s) => { s.on('data', (d: Buffer) => { s.write(`${d.length}\n`) }) })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      const a = server.address()
      const events: ConnectionEvent[] = []
      const seen = new Map<string, Buffer[]>()
      const lb = new TcpLoadBalancer({ logger: silentLogger() }, {
        host: '127.0.0.1', port: 0, ...(bytesPerSecond !== undefined ? { bytesPerSecond } : {}),
        observe: (e) => {
          if (e.type !== 'forwarded') events.push(e)
          else {
            const k = `${e.connection}:${e.toEndpoint ? 'up' : 'down'}`
            seen.set(k, [...(seen.get(k) ?? []), Buffer.from(e.bytes)])
          }
        }
      })
      lb.setEndpoint({ host: '127.0.0.1', port: typeof a === 'object' && a !== null ? a.port : 0, name: 'echo' })
      await lb.start()
      try {
        const sent = [randomBytes(200_000), randomBytes(3)]
        const answers: string[] = []
        for (const data of sent) {
          answers.push(await new Promise<string>((resolve, reject) => {
            const s = connect({ host: '127.0.0.1', port: lb.port! })
            let got = ''
            s.on('data', (d) => { got += d.toString() })
            s.on('close', () => { resolve(got) })
            s.on('error', reject)
            s.end(data)
          }))
        }
        await waitFor(() => events.filter((e) => e.type === 'closed').length === 2, { timeoutMs: 10_000, what: 'both connections reported closed' })
        for (const [i, data] of sent.entries()) {
          const c = i + 1
          const up = Buffer.concat(seen.get(`${c}:up`) ?? [])
          const down = Buffer.concat(seen.get(`${c}:down`) ?? [])
          assert.ok(up.equals(data), `connection ${c}: the bytes to the endpoint, in order`)
          assert.equal(down.toString(), answers[i], `connection ${c}: the bytes back`)
          assert.deepEqual(events.filter((e) => e.connection === c), [
            { type: 'opened', connection: c, endpoint: 'echo' },
            { type: 'closed', connection: c, toEndpoint: data.length, toClient: down.length }
          ])
        }
      } finally {
        await lb.stop()
        server.close()
      }
    })
  }

  it('takes a rate cap only as a positive integer of bytes per second', () => {
    for (const bytesPerSecond of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => new TcpLoadBalancer({ logger: silentLogger() }, { host: '127.0.0.1', port: 0, bytesPerSecond }), /positive integer/, String(bytesPerSecond))
    }
  })
})
