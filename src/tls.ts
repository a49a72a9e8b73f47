import { X509Certificate, createPrivateKey } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { ConfigError } from './config'

export interface TlsFiles {
  cert: string
  key: string
  /** The leaf certificate's subject and expiry, for the startup and SIGHUP logs. */
  subject: string
  notAfter: string
}

function read(variable: string, path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new ConfigError([`${variable}: cannot read ${path} (${e.code ?? e.message})`])
  }
}

/**
 * Reads and checks TLS_CERT_FILE / TLS_KEY_FILE: PEM, parseable, and the key belongs to the
 * certificate. Bun would otherwise fail later with an OpenSSL message naming neither file.
 * Throws ConfigError with one line naming the variable at fault.
 */
export function loadTls(certFile: string, keyFile: string): TlsFiles {
  const cert = read('TLS_CERT_FILE', certFile)
  const key = read('TLS_KEY_FILE', keyFile)
  if (!cert.includes('-----BEGIN CERTIFICATE-----'))
    throw new ConfigError([`TLS_CERT_FILE: ${certFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`])
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key))
    throw new ConfigError([`TLS_KEY_FILE: ${keyFile} holds no PEM private key (-----BEGIN … PRIVATE KEY-----)`])
  let x509: X509Certificate
  try {
    x509 = new X509Certificate(cert) // the first certificate of a chain: the leaf
  } catch (err) {
    throw new ConfigError([`TLS_CERT_FILE: ${certFile} is not a valid certificate (${(err as Error).message})`])
  }
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(key)
  } catch (err) {
    throw new ConfigError([
      `TLS_KEY_FILE: ${keyFile} is not a usable private key (${(err as Error).message}; encrypted keys are not supported)`,
    ])
  }
  if (!x509.checkPrivateKey(privateKey))
    throw new ConfigError([`TLS_KEY_FILE: ${keyFile} is not the key of the certificate in TLS_CERT_FILE`])
  return { cert, key, subject: x509.subject.replace(/\n/g, ', '), notAfter: new Date(x509.validTo).toISOString() }
}
