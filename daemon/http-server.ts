/**
 * The HTTP side of the contract (docs/contract.md §3): probes, metrics and the basic-auth API, on plain
 * `node:http` (a handful of routes do not justify a framework). Other parts plug routes in with `route()` and
 * WebSocket endpoints with `websocket()` before `start()`. Every error answer is JSON `{"error": "..."}`;
 * credentials are compared in constant time and never logged. A request that changes state must look same-origin
 * and be typed JSON (`crossSiteRefusal`), so a page of another site cannot use a browser's cached credentials.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import { createHash, timingSafeEqual } from 'node:crypto'
import type { Duplex } from 'node:stream'
import type { WebSocket, WebSocketServer } from 'ws'
import type { Logger } from '../common/logger.js'
import type { Startable } from '../common/lifecycle.js'
import { readTlsFilesSync, TlsFileWatcher, type TlsFiles } from '../common/tls-files.js'

/** Close code of a stream whose client stopped reading (RFC 6455 1013: try again later). */
export const CLOSE_NOT_READING = 1013

/**
 * Sends `data` on an open stream, unless its client stopped reading: past `maxBufferedBytes` unsent (a frozen tab, a
 * stalled link) the stream is closed with CLOSE_NOT_READING rather than buffered for without bound, and the client
 * reconnects and reads the state afresh. False when nothing was sent.
 */
export function sendUnlessStalled (ws: Pick<WebSocket, 'readyState' | 'OPEN' | 'bufferedAmount' | 'send' | 'close'>, data: string, maxBufferedBytes: number): boolean {
  if (ws.readyState !== ws.OPEN) return false
  if (ws.bufferedAmount > maxBufferedBytes) {
    ws.close(CLOSE_NOT_READING, 'not reading: reconnect')
    return false
  }
  ws.send(data)
  return true
}

export class HttpError extends Error {
  override name = 'HttpError'
  constructor (readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message)
  }
}

export interface Request {
  method: string
  path: string
  /** Values of the route's `{name}` segments, decoded. */
  params: Record<string, string>
  query: URLSearchParams
  /** Parsed JSON body (undefined when empty); a malformed body never reaches a handler (400). */
  body: unknown
  raw: IncomingMessage
}

export interface Reply {
  status?: number
  headers?: Record<string, string>
  /** Serialised as JSON unless `raw` is set. */
  json?: unknown
  raw?: string | Buffer
}

export type Handler = (req: Request) => Promise<Reply> | Reply

interface Route {
  auth: boolean
  handlers: Map<string, Handler>
}

/** A route with `{name}` segments (`/api/transfers/{id}`): its segments, a parameter's as `{name}`. */
interface PatternRoute extends Route {
  segments: string[]
}

export interface HttpServerInit {
  host: string
  port: number
  user: string
  password: string
  /** Largest accepted request body, bytes. */
  maxBodyBytes?: number
  /** HTTPS with these files (reloaded when they change) instead of HTTP */
  tls?: TlsFiles
}

const REALM = 'Basic realm="vectis"'

function digest (s: string | Buffer): Buffer {
  return createHash('sha256').update(s).digest()
}

/** Methods that change nothing: no cross-site check (docs/contract.md §3.4). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

/** `application/json; charset=utf-8` → `application/json` (a media type is case-insensitive). */
function mediaType (contentType: string): string {
  return contentType.split(';')[0]!.trim().toLowerCase()
}

/** Header values are shortened in error messages, so an answer never carries a huge or hostile one back whole. */
function clip (v: string): string {
  return v.length > 80 ? `${v.slice(0, 80)}…` : v
}

export class HttpServer implements Startable {
  private server: Server | HttpsServer | undefined
  private tlsWatcher: TlsFileWatcher | undefined
  // `ws` is loaded at the first upgrade request, not at start-up: few clients ever open the event stream.
  private wss: WebSocketServer | undefined
  private wssLoading: Promise<WebSocketServer> | undefined
  private readonly routes = new Map<string, Route>()
  private readonly patterns: PatternRoute[] = []
  private readonly sockets = new Map<string, { auth: boolean, onConnection: (ws: WebSocket, req: IncomingMessage) => void }>()
  private readonly userDigest: Buffer
  private readonly passwordDigest: Buffer
  private readonly log: Logger
  private boundPort: number | undefined

  constructor (components: { logger: Logger }, private readonly init: HttpServerInit) {
    this.log = components.logger.child({ component: 'daemon:http' })
    this.userDigest = digest(init.user)
    this.passwordDigest = digest(init.password)
  }

  /**
   * Registers a handler; `auth` routes need the API's basic-auth credentials. A `{name}` segment of `path` matches
   * one non-empty segment of the request's, given to the handler in `params`; exact paths win over patterns.
   */
  route (method: string, path: string, handler: Handler, opts: { auth: boolean }): void {
    let r: Route | undefined
    if (path.includes('{')) {
      r = this.patterns.find((p) => p.segments.join('/') === path)
      if (r === undefined) {
        const p: PatternRoute = { auth: opts.auth, handlers: new Map(), segments: path.split('/') }
        this.patterns.push(p)
        r = p
      }
    } else {
      r = this.routes.get(path)
      if (r === undefined) {
        r = { auth: opts.auth, handlers: new Map() }
        this.routes.set(path, r)
      }
    }
    r.handlers.set(method.toUpperCase(), handler)
  }

  private match (pathname: string): { route: Route, params: Record<string, string> } | undefined {
    const exact = this.routes.get(pathname)
    if (exact !== undefined) return { route: exact, params: {} }
    const parts = pathname.split('/')
    for (const p of this.patterns) {
      if (p.segments.length !== parts.length) continue
      const params: Record<string, string> = {}
      const ok = p.segments.every((seg, i) => {
        const part = parts[i]!
        if (!seg.startsWith('{')) return seg === part
        if (part === '') return false
        try {
          params[seg.slice(1, -1)] = decodeURIComponent(part)
        } catch {
          return false // malformed percent-encoding: no such resource
        }
        return true
      })
      if (ok) return { route: p, params }
    }
    return undefined
  }

  websocket (path: string, onConnection: (ws: WebSocket, req: IncomingMessage) => void, opts: { auth: boolean }): void {
    this.sockets.set(path, { auth: opts.auth, onConnection })
  }

  get port (): number | undefined { return this.boundPort }

  async start (): Promise<void> {
    if (this.server !== undefined) return
    const options = { keepAliveTimeout: 5000, requestTimeout: 30_000, headersTimeout: 10_000 }
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
      this.handle(req, res).catch((err: unknown) => {
        this.log.error({ err }, 'request handler failed')
        if (!res.headersSent) this.sendJson(res, 500, { error: 'internal error' })
        else res.destroy()
      })
    }
    const tls = this.init.tls
    let server: Server | HttpsServer
    if (tls === undefined) {
      server = createServer(options, onRequest)
    } else {
      const https = createHttpsServer({ ...options, ...readTlsFilesSync(tls), minVersion: 'TLSv1.2' }, onRequest)
      this.tlsWatcher = new TlsFileWatcher(tls, (m) => { https.setSecureContext({ ...m, minVersion: 'TLSv1.2' }) }, this.log)
      await this.tlsWatcher.start()
      server = https
    }
    server.on('upgrade', (req, socket, head) => { this.upgrade(req, socket, head) })
    server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"error":"malformed request"}')
      else socket.destroy()
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.init.port, this.init.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    const addr = server.address()
    this.boundPort = typeof addr === 'object' && addr !== null ? addr.port : this.init.port
    this.server = server
    this.log.info({ host: this.init.host, port: this.boundPort, tls: tls !== undefined }, tls !== undefined ? 'https listening' : 'http listening')
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    this.tlsWatcher?.stop()
    const clients = (): Iterable<WebSocket> => this.wss?.clients ?? []
    for (const ws of clients()) ws.close(1001, 'server shutting down')
    await new Promise<void>((resolve) => {
      server.close(() => { resolve() })
      server.closeIdleConnections()
      // In-flight requests get a moment; then every connection goes, so stop() is bounded.
      setTimeout(() => { server.closeAllConnections(); for (const ws of clients()) ws.terminate() }, 1000).unref()
    })
  }

  /** True when the request carries the API's credentials. Constant time in their content. */
  private authorized (req: IncomingMessage): boolean {
    const h = req.headers.authorization
    if (h === undefined) return false
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(h)
    if (m === null) return false
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8')
    const i = decoded.indexOf(':')
    if (i < 0) return false
    const userOk = timingSafeEqual(digest(decoded.slice(0, i)), this.userDigest)
    const passOk = timingSafeEqual(digest(decoded.slice(i + 1)), this.passwordDigest)
    return userOk && passOk
  }

  private sendJson (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body)
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers })
    res.end(text)
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint()
    res.on('finish', () => {
      this.log.debug({ method: req.method, path: req.url?.split('?')[0], status: res.statusCode, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'request')
    })
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://localhost')
    } catch {
      this.sendJson(res, 400, { error: 'malformed request target' })
      return
    }
    const matched = this.match(url.pathname)
    if (matched === undefined) {
      req.resume()
      this.sendJson(res, 404, { error: `no such path: ${url.pathname}` })
      return
    }
    const { route, params } = matched
    if (route.auth && !this.authorized(req)) {
      req.resume()
      this.sendJson(res, 401, { error: 'authentication required' }, { 'www-authenticate': REALM })
      return
    }
    const method = (req.method ?? 'GET').toUpperCase()
    const handler = route.handlers.get(method) ?? (method === 'HEAD' ? route.handlers.get('GET') : undefined)
    if (handler === undefined) {
      req.resume()
      const allow = [...route.handlers.keys()].join(', ')
      this.sendJson(res, 405, { error: `method ${method} not allowed on ${url.pathname}; allowed: ${allow}` }, { allow })
      return
    }
    const refusal = this.crossSiteRefusal(req, method)
    if (refusal !== undefined) {
      req.resume()
      this.sendJson(res, refusal.status, { error: refusal.message })
      return
    }
    let body: unknown
    try {
      body = await this.readBody(req)
    } catch (err) {
      if (err instanceof HttpError) {
        this.sendJson(res, err.status, { error: err.message }, err.headers)
        return
      }
      throw err
    }
    let reply: Reply
    try {
      reply = await handler({ method, path: url.pathname, params, query: url.searchParams, body, raw: req })
    } catch (err) {
      if (err instanceof HttpError) {
        this.sendJson(res, err.status, { error: err.message }, err.headers)
        return
      }
      throw err
    }
    const status = reply.status ?? 200
    if (reply.raw !== undefined) {
      res.writeHead(status, { 'cache-control': 'no-store', ...reply.headers })
      res.end(method === 'HEAD' ? undefined : reply.raw)
    } else {
      this.sendJson(res, status, reply.json ?? {}, reply.headers)
    }
  }

  /**
   * Why a state-changing request (any method but GET, HEAD, OPTIONS) is refused as possibly cross-site, if it is.
   * A browser attaches its cached Basic credentials to a request another site's page makes, but such a page can
   * send, without a CORS preflight (which this server never grants), only a form's content types: requiring
   * `application/json` even with an empty body shuts those out. `Origin` and `Sec-Fetch-Site`, which browsers set
   * and pages cannot forge, refuse what is left; clients that send neither (curl, the CLI) are not browsers.
   */
  private crossSiteRefusal (req: IncomingMessage, method: string): HttpError | undefined {
    if (SAFE_METHODS.has(method)) return undefined
    const foreign = this.foreignOrigin(req)
    if (foreign !== undefined) return new HttpError(403, `cross-site request refused: ${foreign}`)
    const site = req.headers['sec-fetch-site']
    if (site !== undefined && site !== 'same-origin' && site !== 'none') {
      return new HttpError(403, `cross-site request refused: Sec-Fetch-Site is ${clip(site)}; only same-origin or none may change state`)
    }
    const type = req.headers['content-type']
    if (type === undefined || mediaType(type) !== 'application/json') {
      return new HttpError(415, `a ${method} request needs content-type application/json, even with an empty body; got ${type === undefined ? 'none' : clip(type)}`)
    }
    return undefined
  }

  /**
   * Why the request's `Origin` is another site's, if it carries one whose host and port are not the `Host` header's,
   * or whose scheme this server's pages cannot have: `https` when it serves HTTPS; `http` or `https` when it serves
   * plain HTTP (no other page can be served on this very host and port, and a proxy that terminates TLS in front of
   * the member makes `https://` pages of it).
   */
  private foreignOrigin (req: IncomingMessage): string | undefined {
    const origin = req.headers.origin
    if (origin === undefined) return undefined
    const host = req.headers.host
    if (host === undefined || host === '') return `Origin ${clip(origin)} cannot be checked: no Host header`
    let authority: string | undefined
    try {
      const u = new URL(origin)
      if (u.protocol === 'https:' || (u.protocol === 'http:' && this.init.tls === undefined)) authority = u.host
    } catch {
      // not a URL (such as "null", an opaque origin): foreign
    }
    if (authority !== undefined && authority === host.toLowerCase()) return undefined
    return `Origin ${clip(origin)} is not this server's (${clip(host)})`
  }

  private async readBody (req: IncomingMessage): Promise<unknown> {
    const max = this.init.maxBodyBytes ?? 64 * 1024
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of req) {
      size += (chunk as Buffer).length
      if (size > max) throw new HttpError(413, `request body larger than ${max} bytes`)
      chunks.push(chunk as Buffer)
    }
    if (size === 0) return undefined
    const text = Buffer.concat(chunks).toString('utf8')
    // A state-changing request's content type was checked already; a GET's body, if any, is read as JSON unless typed otherwise.
    const type = req.headers['content-type'] ?? 'application/json'
    if (mediaType(type) !== 'application/json') throw new HttpError(415, `expected a JSON body (content-type application/json), got ${clip(type)}`)
    try {
      return JSON.parse(text) as unknown
    } catch (err) {
      throw new HttpError(400, `malformed JSON body: ${(err as Error).message}`)
    }
  }

  private upgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const refuse = (status: number, reason: string, extra = '', error = reason): void => {
      const body = JSON.stringify({ error })
      socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`)
    }
    const path = new URL(req.url ?? '/', 'http://localhost').pathname
    const ep = this.sockets.get(path)
    if (ep === undefined) { refuse(404, 'Not Found'); return }
    if (ep.auth && !this.authorized(req)) { refuse(401, 'Unauthorized', `www-authenticate: ${REALM}\r\n`); return }
    // Browsers send the credentials they cached for this server with a WebSocket that any site's page opens (no CORS
    // applies to WebSockets), and always send that page's Origin: a foreign one is refused. The CLI sends none.
    const foreign = this.foreignOrigin(req)
    if (foreign !== undefined) { refuse(403, 'Forbidden', '', `cross-site WebSocket refused: ${foreign}`); return }
    // A WebSocket client sends nothing before it has the 101 answer, so nothing is lost while `ws` loads.
    this.wssLoading ??= import('ws').then(({ WebSocketServer }) => (this.wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 })))
    this.wssLoading.then((wss) => {
      if (this.server === undefined || socket.destroyed) { socket.destroy(); return }
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('error', (err) => { this.log.debug({ err }, 'websocket error') })
        ep.onConnection(ws, req)
      })
    }, (err: unknown) => {
      this.wssLoading = undefined
      this.log.error({ err }, 'cannot load the WebSocket server')
      refuse(500, 'Internal Server Error')
    })
  }
}
