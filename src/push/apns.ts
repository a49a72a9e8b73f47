import http2 from 'node:http2'
import { SignJWT, importPKCS8 } from 'jose'
import type { Outcome, Provider, PushJob } from './types'
import { byStatus, collapseKey, dataOf } from './types'

/** Apple wants a provider token no older than an hour and refreshed no more than every 20 minutes. */
const TOKEN_MS = 40 * 60_000
/** Reasons Apple gives for a token that names no device (any more). */
const GONE = new Set(['BadDeviceToken', 'Unregistered', 'DeviceTokenNotForTopic'])

/**
 * APNs with token auth: an ES256 JWT (kid, iss = team, iat) as the bearer, over one HTTP/2
 * connection (node:http2, which Bun implements) kept open and made again when it closes;
 * `POST /3/device/{token}` with apns-topic, apns-push-type, apns-collapse-id, apns-priority.
 */
export function apnsProvider(opts: {
  key: string
  keyId: string
  teamId: string
  topic: string
  url: string
  timeoutMs: number
}): Provider {
  const key = importPKCS8(opts.key, 'ES256')
  let jwt: { value: string; at: number } | undefined
  let session: http2.ClientHttp2Session | undefined

  async function bearer() {
    if (jwt && Date.now() - jwt.at < TOKEN_MS) return jwt.value
    const value = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: opts.keyId })
      .setIssuer(opts.teamId)
      .setIssuedAt()
      .sign(await key)
    jwt = { value, at: Date.now() }
    return value
  }

  function connection() {
    if (session && !session.closed && !session.destroyed) return session
    const s = http2.connect(opts.url)
    s.on('error', () => {}) // each request reports its own failure
    s.on('close', () => session === s && (session = undefined))
    s.on('goaway', () => session === s && (session = undefined))
    s.unref?.()
    session = s
    return s
  }

  function request(headers: http2.OutgoingHttpHeaders, body: string): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = connection().request(headers)
      const timer = setTimeout(() => {
        req.close(http2.constants.NGHTTP2_CANCEL)
        reject(new Error(`no answer in ${opts.timeoutMs} ms`))
      }, opts.timeoutMs)
      let status = 0
      let text = ''
      req.setEncoding('utf8')
      req.on('response', (h) => (status = Number(h[':status'])))
      req.on('data', (c: string) => (text += c))
      req.on('end', () => {
        clearTimeout(timer)
        resolve({ status, text })
      })
      req.on('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
      req.end(body)
    })
  }

  return {
    kind: 'apns',
    async send(job: PushJob): Promise<Outcome> {
      const body = JSON.stringify({
        aps: { alert: { title: job.title, body: job.body }, badge: job.badge, sound: 'default', 'thread-id': job.room },
        ...dataOf(job),
      })
      try {
        const { status, text } = await request(
          {
            ':method': 'POST',
            ':path': `/3/device/${job.device.token}`,
            authorization: `bearer ${await bearer()}`,
            'apns-topic': opts.topic,
            'apns-push-type': 'alert',
            'apns-collapse-id': collapseKey(job.room),
            'apns-priority': '10',
            'content-type': 'application/json',
          },
          body,
        )
        let reason: string | undefined
        try {
          reason = text ? (JSON.parse(text) as { reason?: string }).reason : undefined
        } catch {}
        const why = `status ${status}${reason ? ` ${reason}` : ''}`
        if (reason && GONE.has(reason)) return { result: 'gone', reason: why }
        // ExpiredProviderToken: sign a new JWT and try again.
        if (status === 403 && reason === 'ExpiredProviderToken') {
          jwt = undefined
          return { result: 'retry', reason: why }
        }
        return byStatus(status, why)
      } catch (err) {
        session?.destroy()
        session = undefined
        return { result: 'retry', reason: (err as Error).message }
      }
    },
    close() {
      session?.close()
    },
  }
}
