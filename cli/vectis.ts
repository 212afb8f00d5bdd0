import '../common/polyfill.js'
import { UsageError } from './args.js'

/**
 * `vectis`: the command-line tool (docs/contract.md §1.2). Exit codes: 0 success, 2 bad usage, 1 any other failure.
 */
const USAGE = `usage: vectis <command> [options]

commands:
  send --host H --port P --partner ID --password PW --server SRVID --file FILEID [--restart] PATH
                                   push a file to a PeSIT server (sync points, restart)
  receive --host H --port P --partner ID --password PW --server SRVID --file FILEID [--name NAME] [--restart] PATH
                                   pull a file from a PeSIT server (sync points, restart)
  status [--watch] [--url URL]     the member table of a running cluster; --watch follows its events
  backup create|list|restore ID [--url URL]
                                   journal backups: take one on the member asked, list them, restore one
  transfer send|fetch|list|cancel [--url URL]
                                   transfers the cluster initiates: queue a send or a fetch (--wait follows it),
                                   list the journal, cancel one
  dev-cluster [--nodes N] [--lb-port P] [--config FILE] [--data DIR]
                                   an HA cluster on this machine (loopback, no Kubernetes) with a live status table
  help                             this text

Run "vectis <command> --help" for a command's options.`

type Command = (argv: string[]) => Promise<number>

// Each command loads only its own modules: `send` and `receive` start without the cluster's (libp2p, the daemon),
// which a whole-command transfer time would otherwise pay.
const commands: Record<string, Command> = {
  status: async (argv) => await (await import('./status.js')).runStatus(argv),
  backup: async (argv) => await (await import('./backup.js')).runBackup(argv),
  transfer: async (argv) => await (await import('./transfer.js')).runTransfer(argv),
  'dev-cluster': async (argv) => await (await import('./dev-cluster.js')).runDevCluster(argv),
  send: async (argv) => await (await import('./send.js')).runSend(argv),
  receive: async (argv) => await (await import('./receive.js')).runReceive(argv)
}

async function main (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(`${USAGE}\n`)
    return name === undefined ? 2 : 0
  }
  const cmd = commands[name]
  if (cmd === undefined) {
    process.stderr.write(`vectis: unknown command "${name}"\n${USAGE}\n`)
    return 2
  }
  try {
    return await cmd(rest)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`vectis ${name}: ${err.message}\n`)
      return 2
    }
    process.stderr.write(`vectis ${name}: ${(err as Error).message}\n`)
    return 1
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (err: unknown) => {
  process.stderr.write(`vectis: fatal: ${String(err)}\n`)
  process.exitCode = 1
})
