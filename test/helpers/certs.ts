/**
 * Certificates for TLS tests, made with Debian's `openssl` (test/helpers/certs.ts `opensslMissing` says how to get
 * it): a CA, a server certificate for 127.0.0.1/localhost and a client certificate signed by it, and a second,
 * untrusted CA with its own server certificate.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** undefined when openssl runs, else the skip reason. */
export function opensslMissing (): string | undefined {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
    return undefined
  } catch {
    return 'needs the openssl command (apt-get install openssl)'
  }
}

function openssl (args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

export interface CertPair { cert: string, key: string }

export interface TestPki {
  dir: string
  ca: string
  server: CertPair
  client: CertPair
  /** signed by another CA that nobody trusts */
  rogueCa: string
  rogueServer: CertPair
  /** another server certificate from the trusted CA (for rotation tests) */
  issue (name: string, cn: string): CertPair
}

export function makePki (dir: string): TestPki {
  mkdirSync(dir, { recursive: true })
  const ca = (name: string): void => {
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.crt`], dir)
  }
  let serial = 1
  const issue = (caName: string, name: string, cn: string, server: boolean): CertPair => {
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${cn}`,
      '-keyout', `${name}.key`, '-out', `${name}.csr`], dir)
    writeFileSync(join(dir, `${name}.ext`), server
      ? 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'
      : 'extendedKeyUsage=clientAuth\n')
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.crt`, '-CAkey', `${caName}.key`, '-set_serial', String(serial++),
      '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.crt`], dir)
    return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) }
  }
  ca('ca')
  ca('rogue-ca')
  return {
    dir,
    ca: join(dir, 'ca.crt'),
    server: issue('ca', 'server', 'vectis-test-server', true),
    client: issue('ca', 'client', 'CXCLIENT', false),
    rogueCa: join(dir, 'rogue-ca.crt'),
    rogueServer: issue('rogue-ca', 'rogue-server', 'vectis-rogue', true),
    issue: (name, cn) => issue('ca', name, cn, true)
  }
}
