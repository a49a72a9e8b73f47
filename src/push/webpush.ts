import webpush from 'web-push'
import type { AllowList } from '../core/outbound'
import { OutboundRefused, outboundFetch, statusLine } from '../core/outbound-fetch'
import type { RequestDetails } from 'web-push'
import type { Outcome, Provider, PushJob } from './types'
import { byStatus, collapseKey, dataOf } from './types'

/**
 * Web Push (RFC 8030/8291/8292): the `web-push` package encrypts the payload (aes128gcm) and
 * signs the VAPID JWT. The subscription's endpoint is a URL a user gave, so the request goes
 * out under the outbound rule (core/outbound-fetch.ts): checked and resolved again on every
 * send, connected to the checked address, no redirect followed, and the answer's body never
 * read (an internal service's error text must not reach the log or the `push.failed` event).
 */
export function webPushProvider(opts: {
  publicKey: string
  privateKey: string
  subject: string
  timeoutMs: number
  allow: AllowList
}): Provider {
  const vapidDetails = { subject: opts.subject, publicKey: opts.publicKey, privateKey: opts.privateKey }
  return {
    kind: 'webpush',
    async send(job: PushJob): Promise<Outcome> {
      const sub = job.device.subscription!
      const payload = JSON.stringify({ title: job.title, body: job.body, badge: job.badge, data: dataOf(job) })
      let details: RequestDetails
      try {
        details = webpush.generateRequestDetails(sub, payload, { vapidDetails, TTL: 86_400, topic: collapseKey(job.room), urgency: 'high' })
      } catch (err) {
        return { result: 'failed', reason: `subscription refused: ${(err as Error).message.slice(0, 100)}` }
      }
      try {
        const res = await outboundFetch(
          details.endpoint,
          {
            method: 'POST',
            headers: details.headers as Record<string, string>,
            body: new Uint8Array(details.body as Buffer) as Uint8Array<ArrayBuffer>,
          },
          { allow: opts.allow, timeoutMs: opts.timeoutMs },
        )
        await res.body?.cancel().catch(() => {})
        if (res.status >= 300 && res.status < 400)
          return { result: 'failed', reason: `${statusLine(res)} (a push endpoint's redirect is not followed)` }
        return byStatus(res.status, statusLine(res))
      } catch (err) {
        if (err instanceof OutboundRefused)
          return err.transient ? { result: 'retry', reason: err.message } : { result: 'failed', reason: `endpoint refused: ${err.message}` }
        const e = err as Error
        return {
          result: 'retry',
          reason:
            e.name === 'TimeoutError'
              ? `no answer in ${opts.timeoutMs} ms`
              : `${e.name}: ${e.message.replace(/[^\x20-\x7e]/g, '?').slice(0, 60)}`,
        }
      }
    },
  }
}
