import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, connect, type Server } from 'node:net'
import { TcpLoadBalancer } from '../../dev-cluster/load-balancer.js'
import { silentLogger } from '../../common/logger.js'

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
})
