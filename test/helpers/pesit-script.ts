/** A scripted PeSIT requester for protocol tests: send FPDUs or raw bytes, expect answers. */
import { connect, type Socket } from 'node:net'
import { encodeEntity, encodeFpdu, encodeAccessControl, encodeSyncOption, packArticles, type Fpdu, type Params } from '../../transfer/codec.js'
import { FpduChannel, type ChannelEvent } from '../../transfer/fpdu-channel.js'
import { DIAG } from '../../transfer/diagnostics.js'
import type { FpduType } from '../../transfer/fpdu-types.js'

export class ScriptClient {
  y = 0
  readonly x = 0x62
  private constructor (readonly socket: Socket, readonly ch: FpduChannel) {}

  static async open (port: number): Promise<ScriptClient> {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true })
    socket.on('error', () => {})
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve).once('error', reject) })
    return new ScriptClient(socket, new FpduChannel(socket))
  }

  async raw (bytes: Uint8Array): Promise<void> { await this.ch.write(bytes) }

  async send (type: FpduType, params: Params = {}, extra: Partial<Fpdu> = {}): Promise<void> {
    await this.ch.write(encodeEntity([encodeFpdu({ type, idDst: this.y, idSrc: 0, params, ...extra })]))
  }

  async next (timeoutMs = 5000): Promise<ChannelEvent> { return await this.ch.next(timeoutMs) }

  async expect (type: FpduType, timeoutMs = 5000): Promise<Fpdu> {
    const ev = await this.next(timeoutMs)
    if (ev.kind !== 'fpdu') throw new Error(`expected ${type}, got ${ev.kind}`)
    if (ev.fpdu.type !== type) throw new Error(`expected ${type}, got ${ev.fpdu.type} ${JSON.stringify(ev.fpdu.params)}`)
    return ev.fpdu
  }

  /** Resolves when the server has closed the connection (after reading whatever it sent). */
  async closed (timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (let i = 0; i < 10_000; i++) {
      if (this.socket.destroyed || this.socket.readableEnded) return
      const ev = await this.ch.next(Math.max(1, deadline - Date.now())).catch((e: Error) => e)
      if (ev instanceof Error) {
        if (/no FPDU within/.test(ev.message)) throw new Error('server did not close the connection')
        return
      }
      if (ev.kind === 'end') return
    }
  }

  destroy (): void { this.socket.destroy() }

  // --- a valid push, step by step ---------------------------------------------------------------------------

  async connectPesit (opts: { password?: string, sync?: [number, number], server?: string, partner?: string } = {}): Promise<Fpdu> {
    await this.ch.write(encodeEntity([encodeFpdu({
      type: 'CONNECT', idDst: 0, idSrc: this.x,
      params: { 3: opts.partner ?? 'CXCLIENT', 4: opts.server ?? 'PESITSRV', 5: encodeAccessControl(opts.password ?? 'test123'), 6: 2, 7: encodeSyncOption({ intervalKb: opts.sync?.[0] ?? 32, window: opts.sync?.[1] ?? 2 }), 22: 0 }
    })]))
    const ev = await this.next()
    if (ev.kind !== 'fpdu') throw new Error('no answer to CONNECT')
    if (ev.fpdu.type === 'ACONNECT') this.y = ev.fpdu.idSrc
    return ev.fpdu
  }

  async toDataPhase (transferId: number, opts: { articleLength?: number, format?: number, restart?: boolean, announcedKb?: number } = {}): Promise<void> {
    await this.send('CREATE', createParams(transferId, opts))
    const ack = await this.expect('ACK_CREATE')
    const d = ack.params[2] as { type: number, reason: number }
    if (d.type !== 0 || d.reason !== 0) throw new Error(`CREATE refused ${d.type}-${d.reason}`)
    await this.send('ORF', { 21: Uint8Array.of(0, 0) })
    await this.expect('ACK_ORF')
    await this.send('WRITE')
    await this.expect('ACK_WRITE')
  }

  async dtf (articles: Uint8Array[]): Promise<void> {
    await this.send('DTF', {}, { idSrc: articles.length, data: packArticles(articles) })
  }
}

export function createParams (transferId: number, opts: { articleLength?: number, format?: number, restart?: boolean, announcedKb?: number, file?: string } = {}): Params {
  const p: Params = {
    9: { 11: 0, 12: opts.file ?? 'TESTFILE' }, 13: transferId, 16: 2, 17: 0, 25: 4096,
    30: { 31: opts.format ?? 0x80, 32: opts.articleLength ?? 1024 }, 40: { 41: 0, 42: opts.announcedKb ?? 1024 }, 50: { 51: '260119012505' }
  }
  if (opts.restart === true) p[15] = 1
  return p
}

export { DIAG }
