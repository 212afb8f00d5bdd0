/**
 * What the programs that drive the web console in a real browser (puppeteer-core) share: where Chromium is, and the
 * page's side of the functions they give to `page.evaluate` and `page.waitForFunction`, typed by hand because the
 * Node-side tsconfig has no DOM lib. Those functions run in the page: they may use these types, never this module's
 * values (puppeteer sends their source text, not their closures).
 */
import { spawnSync } from 'node:child_process'

/** Debian's chromium (or another Chromium on PATH), if installed. */
export function chromiumPath (): string | undefined {
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    const r = spawnSync('which', [name], { encoding: 'utf8' })
    if (r.status === 0 && r.stdout.trim() !== '') return r.stdout.trim()
  }
  return undefined
}

/** An element of the page, as far as these programs read it. */
export interface PageElement {
  id: string
  textContent: string | null
  getAttribute: (name: string) => string | null
  querySelector: (selector: string) => PageElement | null
}

/** `globalThis` in a function run by the page. */
export interface PageGlobals {
  document: {
    activeElement: PageElement | null
    querySelector: (selector: string) => PageElement | null
    querySelectorAll: (selector: string) => ArrayLike<PageElement> & Iterable<PageElement>
  }
  performance: { now: () => number }
}
