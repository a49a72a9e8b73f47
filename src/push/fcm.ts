import { SignJWT, importPKCS8 } from 'jose'
import type { Outcome, Provider, PushJob } from './types'
import { byStatus, collapseKey, dataOf } from './types'

/** The fields of a Google service-account JSON that FCM HTTP v1 needs. */
export interface ServiceAccount {
  project_id: string
  client_email: string
  private_key: string
  token_uri: string
}

export function parseServiceAccount(text: string, file: string): ServiceAccount {
  let j: Record<string, unknown>
  try {
    j = JSON.parse(text)
  } catch {
    throw new Error(`${file}: not JSON (expected a service-account key file)`)
  }
  for (const k of ['project_id', 'client_email', 'private_key', 'token_uri'] as const)
    if (typeof j[k] !== 'string' || !j[k]) throw new Error(`${file}: ${k} is missing (expected a service-account key file)`)
  return j as unknown as ServiceAccount
}

const SCOPE = 'https://www.googleapis.com/auth/firebase.messaging'
/** A token is renewed this long before Google says it expires. */
const RENEW_BEFORE_MS = 5 * 60_000

/**
 * FCM HTTP v1: an OAuth 2 access token from a JWT signed by the service account (RFC 7523,
 * posted to the file's token_uri), cached until shortly before it expires, then
 * `POST {url}/v1/projects/{project}/messages:send`.
 */
export function fcmProvider(opts: { account: ServiceAccount; url: string; timeoutMs: number }): Provider {
  const { account } = opts
  const sendUrl = `${opts.url.replace(/\/$/, '')}/v1/projects/${encodeURIComponent(account.project_id)}/messages:send`
  const key = importPKCS8(account.private_key, 'RS256')
  let token: { value: string; until: number } | undefined
  let pending: Promise<string> | undefined

  async function fetchToken(): Promise<string> {
    const now = Math.floor(Date.now() / 1000)
    const assertion = await new SignJWT({ scope: SCOPE })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT' })
      .setIssuer(account.client_email)
      .setSubject(account.client_email)
      .setAudience(account.token_uri)
      .setIssuedAt(now)
      .setExpirationTime(now + 3600)
      .sign(await key)
    const res = await fetch(account.token_uri, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }),
      signal: AbortSignal.timeout(opts.timeoutMs),
    })
    const body = (await res.json().catch(() => ({}))) as { access_token?: string; expires_in?: number; error?: string }
    if (!res.ok || !body.access_token) throw new Error(`token_uri answered ${res.status}${body.error ? ` ${body.error}` : ''}`)
    token = { value: body.access_token, until: Date.now() + (body.expires_in ?? 3600) * 1000 - RENEW_BEFORE_MS }
    return token.value
  }

  /** One token request at a time, shared by the sends waiting for it. */
  const accessToken = () =>
    token && Date.now() < token.until ? Promise.resolve(token.value) : (pending ??= fetchToken().finally(() => (pending = undefined)))

  return {
    kind: 'fcm',
    async send(job: PushJob): Promise<Outcome> {
      const message = {
        token: job.device.token,
        notification: { title: job.title, body: job.body },
        data: dataOf(job),
        android: { collapse_key: collapseKey(job.room), notification: { tag: collapseKey(job.room), notification_count: job.badge } },
        apns: { headers: { 'apns-collapse-id': collapseKey(job.room) }, payload: { aps: { badge: job.badge } } },
        webpush: { headers: { Topic: collapseKey(job.room) } },
      }
      try {
        const res = await fetch(sendUrl, {
          method: 'POST',
          headers: { authorization: `Bearer ${await accessToken()}`, 'content-type': 'application/json' },
          body: JSON.stringify({ message }),
          signal: AbortSignal.timeout(opts.timeoutMs),
        })
        const text = await res.text().catch(() => '')
        // 401: the token was revoked or expired early; fetch a new one on the retry.
        if (res.status === 401) {
          token = undefined
          return { result: 'retry', reason: 'status 401 (access token refused; renewing it)' }
        }
        const code = /"errorCode"\s*:\s*"([A-Z_]+)"/.exec(text)?.[1] ?? /"status"\s*:\s*"([A-Z_]+)"/.exec(text)?.[1]
        const reason = `status ${res.status}${code ? ` ${code}` : ''}`
        // UNREGISTERED comes as 404, and sometimes as 400 with that code: the token is gone either way.
        if (code === 'UNREGISTERED') return { result: 'gone', reason }
        return byStatus(res.status, reason)
      } catch (err) {
        return { result: 'retry', reason: (err as Error).message }
      }
    },
  }
}
