import webpush from 'web-push'
import type { RequestDetails } from 'web-push'
import type { Outcome, Provider, PushJob } from './types'
import { byStatus, collapseKey, dataOf } from './types'

/**
 * Web Push (RFC 8030/8291/8292): the `web-push` package encrypts the payload (aes128gcm) and
 * signs the VAPID JWT; the request goes out through fetch, so the subscription's endpoint is
 * the only URL (a loopback receiver in the tests).
 */
export function webPushProvider(opts: { publicKey: string; privateKey: string; subject: string; timeoutMs: number }): Provider {
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
        return { result: 'failed', reason: `subscription refused: ${(err as Error).message}` }
      }
      try {
        const res = await fetch(details.endpoint, {
          method: 'POST',
          headers: details.headers as Record<string, string>,
          body: new Uint8Array(details.body as Buffer) as Uint8Array<ArrayBuffer>,
          signal: AbortSignal.timeout(opts.timeoutMs),
        })
        const text = await res.text().catch(() => '')
        return byStatus(res.status, `status ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`)
      } catch (err) {
        return { result: 'retry', reason: (err as Error).message }
      }
    },
  }
}
