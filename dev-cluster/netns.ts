/**
 * Network namespaces for partitions (`vectis dev-cluster --netns`, the partition tests): N hosts, each a namespace with one veth (`eth0`, 10.S.0.(10+i)/24)
 * plugged into a bridge in the test's own namespace, which holds 10.S.0.1 (the tests reach members, members reach
 * the dev cluster's or test's DNS server and Kubernetes API emulator there). Partitions are iptables DROP rules inside the member namespaces, so packets
 * vanish silently as on a cut network (no RST, no ICMP), symmetric or one-way.
 *
 * Needs root, `ip` (iproute2) and, for partitions, `iptables` (Debian package `iptables`). `NetnsLab.unavailable()`
 * names what is missing so a caller can refuse or `t.skip(reason)`; nothing here passes silently without namespaces.
 *
 * Everything created is named `vx<S>…` and removed by `destroy()` (registered with the caller's `after` hook and a
 * process 'exit' hook by `create()`); leftovers of a crashed run with the same subnet are removed before creating.
 */
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface NetnsHost {
  index: number
  /** Namespace name. */
  ns: string
  ip: string
}

/** Where `create()` registers the lab's removal (a `node:test` context has this shape). */
export interface AfterHook {
  after: (fn: () => Promise<void>) => void
}

export interface NetnsLabOptions {
  /** Second octet of 10.S.0.0/24, 1–254: one per test file (or dev cluster) so parallel ones do not collide. */
  subnet: number
  hosts: number
}

const live = new Set<NetnsLab>()
let exitHook = false

async function ip (...args: string[]): Promise<void> {
  await run('ip', args)
}

function hasCommand (cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

export class NetnsLab {
  readonly hosts: NetnsHost[]
  readonly gateway: string
  readonly bridge: string
  private destroyed = false
  private readonly blocked = new Set<string>()

  /** The plan only (addresses and names); `build()` or `create()` makes it. */
  constructor (readonly opts: NetnsLabOptions) {
    if (!Number.isInteger(opts.subnet) || opts.subnet < 1 || opts.subnet > 254) throw new RangeError('subnet must be 1..254')
    if (!Number.isInteger(opts.hosts) || opts.hosts < 1 || opts.hosts > 200) throw new RangeError('hosts must be 1..200')
    const s = opts.subnet
    this.bridge = `vx${s}br`
    this.gateway = `10.${s}.0.1`
    this.hosts = Array.from({ length: opts.hosts }, (_, i) => ({ index: i, ns: `vx${s}h${i}`, ip: `10.${s}.0.${10 + i}` }))
  }

  /** Why namespaces cannot be used here (for `t.skip`), or undefined when they can. */
  static unavailable (opts: { partitions?: boolean } = {}): string | undefined {
    if (process.platform !== 'linux') return 'network namespaces need Linux'
    if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'network namespaces need root'
    if (!hasCommand('ip')) return 'the ip command (Debian package iproute2) is not installed'
    if (opts.partitions !== false && !hasCommand('iptables')) return 'iptables (Debian package iptables) is not installed: partitions need it'
    const probe = `vxprobe${process.pid}`
    try {
      execFileSync('ip', ['netns', 'add', probe], { stdio: 'ignore' })
      execFileSync('ip', ['netns', 'del', probe], { stdio: 'ignore' })
    } catch (err) {
      return `cannot create a network namespace: ${(err as Error).message}`
    }
    return undefined
  }

  /** Builds the lab; destroyed after the test (and at process exit if the caller dies first). */
  static async create (t: AfterHook | undefined, opts: NetnsLabOptions): Promise<NetnsLab> {
    const lab = new NetnsLab(opts)
    t?.after(() => lab.destroy())
    await lab.build()
    return lab
  }

  /** Creates the bridge and the namespaces (removing leftovers of a crashed run first); undone by `destroy()`. */
  async build (): Promise<void> {
    this.removeLeftovers()
    this.destroyed = false
    live.add(this)
    if (!exitHook) {
      exitHook = true
      process.on('exit', () => { for (const l of live) l.destroySync() })
    }
    try {
      await ip('link', 'add', this.bridge, 'type', 'bridge')
      await ip('addr', 'add', `${this.gateway}/24`, 'dev', this.bridge)
      await ip('link', 'set', this.bridge, 'up')
      for (const h of this.hosts) {
        const peer = `${h.ns}p`
        await ip('netns', 'add', h.ns)
        await ip('link', 'add', peer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns)
        await ip('link', 'set', peer, 'master', this.bridge)
        await ip('link', 'set', peer, 'up')
        await ip('-n', h.ns, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0')
        await ip('-n', h.ns, 'link', 'set', 'eth0', 'up')
        await ip('-n', h.ns, 'link', 'set', 'lo', 'up')
      }
    } catch (err) {
      this.destroySync()
      throw err
    }
  }

  host (i: number): NetnsHost {
    const h = this.hosts[i]
    if (h === undefined) throw new RangeError(`no host ${i} in this lab`)
    return h
  }

  /** The command line that runs `argv` inside host i's namespace (same pid: `ip netns exec` execs it). */
  wrap (i: number, argv: string[]): string[] {
    return ['ip', 'netns', 'exec', this.host(i).ns, ...argv]
  }

  /** Spawns a process inside host i's namespace; signals reach it directly (SIGSTOP, SIGKILL). */
  spawn (i: number, command: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const [cmd, ...rest] = this.wrap(i, [command, ...args]) as [string, ...string[]]
    return spawn(cmd, rest, opts)
  }

  /** Runs a command inside host i's namespace and returns its stdout. */
  async exec (i: number, argv: string[]): Promise<string> {
    const [cmd, ...rest] = this.wrap(i, argv) as [string, ...string[]]
    return (await run(cmd, rest)).stdout
  }

  /** Drops everything host `from` sends to host `to` (one way). */
  async block (from: number, to: number): Promise<void> {
    const key = `${from}>${to}`
    if (this.blocked.has(key)) return
    await this.iptables(from, '-A', 'OUTPUT', '-d', this.host(to).ip, '-j', 'DROP')
    try {
      await this.iptables(to, '-A', 'INPUT', '-s', this.host(from).ip, '-j', 'DROP')
    } catch (err) {
      // Not half a cut that heal() would not know of.
      await this.iptables(from, '-D', 'OUTPUT', '-d', this.host(to).ip, '-j', 'DROP').catch(() => {})
      throw err
    }
    this.blocked.add(key)
  }

  async unblock (from: number, to: number): Promise<void> {
    const key = `${from}>${to}`
    if (!this.blocked.has(key)) return
    await this.iptables(from, '-D', 'OUTPUT', '-d', this.host(to).ip, '-j', 'DROP')
    await this.iptables(to, '-D', 'INPUT', '-s', this.host(from).ip, '-j', 'DROP')
    this.blocked.delete(key)
  }

  /** Cuts the hosts into the given groups (both ways); hosts not listed form one more group. */
  async partition (groups: number[][]): Promise<void> {
    const all = this.hosts.map((h) => h.index)
    const listed = new Set(groups.flat())
    const rest = all.filter((i) => !listed.has(i))
    const parts = rest.length > 0 ? [...groups, rest] : groups
    const groupOf = new Map<number, number>()
    parts.forEach((g, gi) => { for (const i of g) groupOf.set(i, gi) })
    for (const a of all) {
      for (const b of all) {
        if (a !== b && groupOf.get(a) !== groupOf.get(b)) await this.block(a, b)
      }
    }
  }

  /** Removes every partition rule. */
  async heal (): Promise<void> {
    for (const key of [...this.blocked]) {
      const [from, to] = key.split('>').map(Number) as [number, number]
      await this.unblock(from, to)
    }
  }

  /** Hosts currently cut from each other, as "from>to" pairs. */
  get blockedPairs (): string[] { return [...this.blocked].sort() }

  private async iptables (i: number, ...args: string[]): Promise<void> {
    await run('ip', ['netns', 'exec', this.host(i).ns, 'iptables', '-w', ...args])
  }

  async destroy (): Promise<void> {
    this.destroySync()
  }

  /** Synchronous so it also works from a process 'exit' hook. Deleting a namespace kills its veth and rules. */
  destroySync (): void {
    if (this.destroyed) return
    this.destroyed = true
    live.delete(this)
    this.blocked.clear()
    this.removeLeftovers()
  }

  private removeLeftovers (): void {
    for (const h of this.hosts) {
      // A namespace outlives its name while processes run in it: kill them first.
      try {
        const pids = execFileSync('ip', ['netns', 'pids', h.ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
        for (const pid of pids.split(/\s+/).filter((x) => x !== '')) {
          try { process.kill(Number(pid), 'SIGKILL') } catch { /* already gone */ }
        }
      } catch { /* no such namespace */ }
      try { execFileSync('ip', ['netns', 'del', h.ns], { stdio: 'ignore' }) } catch { /* not there */ }
      // The kernel frees a namespace lazily (lingering sockets keep it alive): delete our end of its veth now,
      // which removes the pair, so nothing of the lab stays in this namespace.
      try { execFileSync('ip', ['link', 'del', `${h.ns}p`], { stdio: 'ignore' }) } catch { /* gone with the namespace */ }
    }
    try { execFileSync('ip', ['link', 'del', this.bridge], { stdio: 'ignore' }) } catch { /* not there */ }
  }
}
