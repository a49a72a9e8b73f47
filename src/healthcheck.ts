import { variables } from './config'

/**
 * `chat-server --healthcheck`: asks the server running beside it for `/healthz` and
 * answers with the exit code (0 healthy, 1 not). Container images without curl or wget
 * (distroless) use it as their HEALTHCHECK; it reads the same HOST/PORT the server does.
 */
export function healthcheckUrl(env: Record<string, string | undefined> = process.env): string {
  const port = variables.PORT.schema.safeParse(env.PORT || variables.PORT.default)
  if (!port.success) throw new Error(`PORT: ${port.error.issues[0]?.message ?? 'invalid'}, got ${JSON.stringify(env.PORT)}`)
  if (port.data === 0) throw new Error('PORT: 0 picks a random port; a health check needs the real one')
  const host = (env.HOST || variables.HOST.default).trim()
  // A wildcard address listens on loopback too; a specific address must be asked directly.
  const target = ['0.0.0.0', '::', '[::]', ''].includes(host)
    ? '127.0.0.1'
    : host.includes(':') && !host.startsWith('[')
      ? `[${host}]`
      : host
  // With TLS the server speaks only HTTPS on PORT (the certificate is checked by the server at
  // startup; here it is our own loopback, whose name rarely matches it: not verified).
  return `${env.TLS_CERT_FILE ? 'https' : 'http'}://${target}:${port.data}/healthz`
}

export async function healthcheck(
  env: Record<string, string | undefined> = process.env,
  timeoutMs = 3000,
): Promise<{ ok: boolean; detail: string }> {
  let url: string
  try {
    url = healthcheckUrl(env)
  } catch (err) {
    return { ok: false, detail: (err as Error).message }
  }
  try {
    const res = await fetch(url, {
      signal: AbortSignal.timeout(timeoutMs),
      ...(url.startsWith('https:') ? { tls: { rejectUnauthorized: false } } : {}),
    })
    const body = await res.text()
    let status: unknown
    try {
      status = (JSON.parse(body) as { status?: unknown }).status
    } catch {
      status = undefined
    }
    const ok = res.status === 200 && status === 'ok'
    return { ok, detail: `${url}: ${res.status} ${body.slice(0, 200)}` }
  } catch (err) {
    return { ok: false, detail: `${url}: ${(err as Error).message}` }
  }
}
