/**
 * The web console's files (built from console/ into dist/console by `npm run build`), served by every member at
 * `GET /` and `GET /console/<file>` behind the API's credentials (docs/contract.md §3.10). Read once at start-up
 * from the package, relative to this module: `dist/daemon/` → `dist/console/` (run from the sources, as the tests
 * do: `daemon/` → `dist/console/`). The Content-Security-Policy allows scripts, styles and connections of this
 * origin only: no inline script or style, no frame around it.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { HttpError, type HttpServer, type Reply } from './http-server.js'

export const CONSOLE_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2'
}

const SECURITY_HEADERS = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin'
}

/** Where the built console is: the first of the candidate folders that holds an index.html. */
export function consoleDir (): string | undefined {
  const candidates = [new URL('../console/', import.meta.url), new URL('../dist/console/', import.meta.url)].map((u) => fileURLToPath(u))
  return candidates.find((d) => existsSync(join(d, 'index.html')))
}

/**
 * Registers the console's routes. Its assets carry their content's hash in their names and are cached for a year;
 * the page itself is revalidated at every load. Without a built console (`dir` null), `GET /` is a 404 saying so.
 */
export function registerConsole (http: HttpServer, dir: string | null = consoleDir() ?? null): { files: string[] } {
  if (dir === null) {
    http.route('GET', '/', () => { throw new HttpError(404, 'the web console is not built in this package: npm run build builds it into dist/console') }, { auth: true })
    return { files: [] }
  }
  const files = readdirSync(dir).filter((f) => TYPES[extname(f)] !== undefined)
  const reply = (file: string, cache: string): Reply => {
    const body = readFileSync(join(dir, file))
    return { raw: body, headers: { ...SECURITY_HEADERS, 'content-type': TYPES[extname(file)]!, 'cache-control': cache } }
  }
  const index = reply('index.html', 'no-cache, private')
  http.route('GET', '/', () => index, { auth: true })
  for (const f of files) {
    if (f === 'index.html') continue
    const r = reply(f, 'private, max-age=31536000, immutable')
    http.route('GET', `/console/${f}`, () => r, { auth: true })
  }
  return { files }
}
