import { FrameError, isTransient } from '../core/errors'
import { log } from '../log'
import { frameDecoder } from '../protocol/client-frames'
import type { ClientFrame, FrameOf } from '../protocol/client-frames'
import { CLOSE, frames } from '../protocol/server-frames'
import type { Conn } from './connection'
import type { Handler, HubContext, Handlers } from './context'
import type { Delivery } from './delivery'
import { heard } from './admission'
import { strike } from './rate-limit'
import type { Bucket } from './rate-limit'

export interface DispatchDeps {
  h: HubContext
  delivery: Pick<Delivery, 'closeConn'>
  /** The frames-per-second limit every connection's bucket is taken from. */
  bucket: { take(b: Bucket): boolean }
  handlers: Handlers<ClientFrame['type']>
  /** The synchronous path of a chat (see messageFrames); false when the frame needs its handler. */
  chatNow: (c: Conn, f: FrameOf<'chat'>) => boolean
}

/**
 * Each frame a client sends: the rate limit (and the flood rule), validation, dispatch to its
 * family's handler, the `ack`, and the error frame of whatever went wrong.
 * Returns `message`: the frame of a connection, JSON-parsed; a promise only when it needs one.
 */
export function frameDispatch(d: DispatchDeps): (c: Conn, raw: unknown) => Promise<void> | void {
  const { h, delivery, bucket, handlers } = d
  const { config, broker, metrics, store } = h
  const decode = frameDecoder(config.MAX_BODY_CHARS, config.MAX_JSON_DEPTH)

  function message(c: Conn, raw: unknown): Promise<void> | void {
    heard(c)
    if (c.loading) return c.loading.then(() => frame(c, raw))
    return frame(c, raw)
  }

  function frame(c: Conn, raw: unknown): Promise<void> | void {
    if (c.closing) return
    if (rateLimited(c)) {
      const id = (raw as { id?: unknown })?.id
      return h.sendError(c, 'rate_limited', 'too many frames: slow down', typeof id === 'string' ? id.slice(0, 64) : undefined)
    }
    const decoded = decode(raw)
    if (!decoded.ok) {
      metrics.framesIn.invalid.inc()
      return h.sendError(c, 'bad_request', decoded.message, decoded.id)
    }
    const f = decoded.frame
    metrics.framesIn[f.type].inc()
    try {
      if (f.type === 'chat' && d.chatNow(c, f)) return
    } catch (err) {
      return failed(c, f, err)
    }
    return handle(c, f)
  }

  async function handle(c: Conn, f: ClientFrame) {
    const handler = handlers[f.type] as Handler<ClientFrame>
    try {
      await handler.run(c, f)
      if (f.id && !handler.answers) h.send(c, frames.ack(f.id), 'ack')
    } catch (err) {
      failed(c, f, err)
    }
  }

  function failed(c: Conn, f: ClientFrame, err: unknown) {
    if (err instanceof FrameError) {
      if (err.code === 'forbidden')
        h.audit({ event: 'forbidden', user: c.identity.user.id, conn: c.id, detail: { type: f.type, reason: err.message } })
      return h.sendError(c, err.code, err.message, f.id, err.retryAfter)
    }
    // A dependency that is down, or answered too late, explains most failures: say so, as the
    // contract asks (a timeout is worth a warning; the rest is the server's own fault).
    const problem = broker.problem() ?? store?.problem()
    const down = problem ?? (isTransient(err) ? (err as Error).message : undefined)
    if (down) {
      if (!problem) log.warn('frame failed', { conn: c.id, type: f.type, err })
      return h.sendError(c, 'unavailable', `${f.type}: not available right now (${down})`, f.id)
    }
    log.error('frame failed', { conn: c.id, type: f.type, err })
    h.sendError(c, 'internal', 'internal error', f.id)
  }

  function rateLimited(c: Conn): boolean {
    if (bucket.take(c)) return false
    metrics.rateLimited.inc()
    h.audit({ event: 'rate_limited', user: c.identity.user.id, conn: c.id })
    if (strike(c)) {
      log.warn('flooding client closed', { conn: c.id, user: c.identity.user.id })
      delivery.closeConn(c, CLOSE.policy, 'rate limit exceeded')
    }
    return true
  }

  return message
}
