import { createHmac } from 'node:crypto'

export const SIGNATURE_HEADER = 'Chat-Signature'

/** `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`: the timestamp makes a replay detectable. */
export function sign(secret: string, body: string, nowMs = Date.now()): string {
  const t = Math.floor(nowMs / 1000)
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`
}

/** Headers of every call to the application (events and the pre-publish hook). */
export function signedHeaders(secret: string, body: string, userAgent: string): Record<string, string> {
  return { 'content-type': 'application/json', [SIGNATURE_HEADER]: sign(secret, body), 'user-agent': userAgent }
}
