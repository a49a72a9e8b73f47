import { z } from 'zod'
import { FrameError } from '../core/errors'
import { log } from '../log'
import type { User } from '../protocol/server-frames'
import { signedHeaders } from './sign'

export interface Draft {
  room: string
  user: User
  body: string
  data?: unknown
  reply_to?: unknown
}

/** What the message becomes: the hook may have replaced its body and data. */
export interface Verdict {
  body: string
  data: unknown
}

const answer = (maxBody: number) =>
  z.discriminatedUnion('action', [
    z.object({ action: z.literal('allow') }),
    z.object({ action: z.literal('reject'), reason: z.string().max(500).optional() }),
    z.object({ action: z.literal('replace'), body: z.string().min(1).max(maxBody), data: z.unknown().optional() }),
  ])

/**
 * The pre-publish hook: the application sees each chat frame before it is accepted and
 * answers allow, reject (the sender gets `forbidden` with the reason) or replace (a new
 * body, and data when the answer has the key). No answer in time, a non-2xx or an answer
 * that is not one of those three: `fail` decides (open: publish as sent; closed: `unavailable`).
 */
export function beforePublishHook(opts: {
  url: string
  secret: string
  timeoutMs: number
  fail: 'open' | 'closed'
  maxBody: number
  userAgent: string
  onFailure?: () => void
}) {
  const schema = answer(opts.maxBody)
  return async function check(d: Draft): Promise<Verdict> {
    const payload = JSON.stringify(d)
    let problem: string
    try {
      const res = await fetch(opts.url, {
        method: 'POST',
        body: payload,
        headers: signedHeaders(opts.secret, payload, opts.userAgent),
        signal: AbortSignal.timeout(opts.timeoutMs),
      })
      const text = await res.text()
      if (res.ok) {
        let raw: unknown
        try {
          raw = JSON.parse(text)
        } catch {}
        const parsed = schema.safeParse(raw)
        if (parsed.success) {
          const a = parsed.data
          if (a.action === 'allow') return { body: d.body, data: d.data }
          if (a.action === 'reject') throw new FrameError('forbidden', a.reason || 'rejected by the application')
          // `data` absent keeps the message's own; `"data": null` sets it to null.
          return { body: a.body, data: Object.hasOwn(raw as object, 'data') ? a.data : d.data }
        }
        problem = `an answer that is not allow, reject or replace: ${text.slice(0, 100)}`
      } else problem = `status ${res.status}`
    } catch (err) {
      if (err instanceof FrameError) throw err
      problem = (err as Error).name === 'TimeoutError' ? `no answer in ${opts.timeoutMs} ms` : (err as Error).message
    }
    opts.onFailure?.()
    log.warn('pre-publish hook failed', { room: d.room, problem, fail: opts.fail })
    if (opts.fail === 'open') return { body: d.body, data: d.data }
    throw new FrameError('unavailable', `the message was not accepted: the pre-publish hook failed (${problem})`)
  }
}
