/**
 * A throw-away OpenSSH server on loopback for the sftp baseline of `bench:transfer`: its own host key, one client
 * key, a random port, the internal sftp subsystem. Needs Debian's `openssh-server` (/usr/sbin/sshd) and the
 * `sftp` client; `startSshd` rejects with what to install when they are missing.
 */
import { execFileSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { userInfo } from 'node:os'
import { join } from 'node:path'

export interface Sshd {
  port: number
  /** `ssh -V` of the client */
  version: string
  /** sftp arguments that run `commands` in batch mode with the fastest cipher here */
  batch(commands: string[]): string[]
  stop(): void
}

const SSHD = '/usr/sbin/sshd'

export async function startSshd (dir: string): Promise<Sshd> {
  if (!existsSync(SSHD)) throw new Error('no /usr/sbin/sshd (apt-get install openssh-server)')
  try {
    execFileSync('sftp', ['-h'], { stdio: 'ignore' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('no sftp client (apt-get install openssh-client)')
  }
  await mkdir(dir, { recursive: true })
  // Privilege separation needs this directory on Debian.
  await mkdir('/run/sshd', { recursive: true }).catch(() => {})
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'client_key')])
  await writeFile(join(dir, 'authorized_keys'), execFileSync('cat', [join(dir, 'client_key.pub')]))
  const port = 20000 + Math.floor(Math.random() * 20000)
  const cfg = join(dir, 'sshd_config')
  await writeFile(cfg, [
    `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host_key')}`, `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'PermitRootLogin prohibit-password', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no',
    'StrictModes no', `PidFile ${join(dir, 'sshd.pid')}`, 'Subsystem sftp internal-sftp', ''
  ].join('\n'))
  const child = spawn(SSHD, ['-D', '-e', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  const deadline = Date.now() + 10_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`sshd exited: ${err.trim()}`)
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) })
      s.on('error', () => { resolve(false) })
    })
    if (up) break
    if (Date.now() > deadline) { child.kill(); throw new Error(`sshd did not listen: ${err.trim()}`) }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const version = execFileSync('ssh', ['-V'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim() ||
    String(execFileSync('sh', ['-c', 'ssh -V 2>&1'], { encoding: 'utf8' })).trim()
  let n = 0
  return {
    port,
    version,
    batch: (commands) => {
      const file = join(dir, `batch-${n++}`)
      execFileSync('sh', ['-c', `cat > ${file}`], { input: commands.join('\n') + '\n' })
      return ['-q', '-b', file, '-c', 'aes128-gcm@openssh.com', '-i', join(dir, 'client_key'), '-P', String(port),
        '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', `${userInfo().username}@127.0.0.1`]
    },
    stop: () => { child.kill() }
  }
}
