import type { Accepted, Broker, EventDraft } from '../broker/types'
import { Unavailable } from '../broker/types'
import { Refused } from '../broker/message-rules'
import { log } from '../log'
import type { Metrics } from '../metrics'
import { FrameError } from '../core/errors'

export type Append = (room: string, draft: EventDraft, key?: string, except?: string) => Promise<Accepted>

/**
 * What an append that failed says to its sender, the same for every kind of event: a refusal
 * by the room's rules is its own code; a broker or store that cannot keep it is `unavailable`
 * (only an unexpected failure counts as a broker error).
 */
export function notAccepted(metrics: Pick<Metrics, 'brokerErrors'>, room: string, type: string, err: unknown): FrameError {
  if (err instanceof FrameError) return err
  if (err instanceof Refused) return new FrameError(err.code, err.message, err.retryAfter)
  if (err instanceof Unavailable) return new FrameError('unavailable', `${type}: not accepted: ${err.message}`)
  metrics.brokerErrors.inc()
  warnNotAccepted(room, type, err)
  return new FrameError('unavailable', `${type}: not accepted: the broker is unavailable`)
}

/**
 * An outage fails every append at once, and a line for each would cost the node more than the
 * appends (seen under overload: a seventh of its CPU): one line a second, counting those left out.
 */
let quietUntil = 0
let leftOut = 0
function warnNotAccepted(room: string, type: string, err: unknown) {
  const now = Date.now()
  if (now < quietUntil) return void leftOut++
  log.warn('event not accepted', { room, type, err, ...(leftOut ? { alsoNotAcceptedSinceLastLine: leftOut } : {}) })
  leftOut = 0
  quietUntil = now + 1000
}

/** The one path into a room's log: chat, dm, changes, moderation and the API all append here. */
export function appender(broker: Broker, metrics: Pick<Metrics, 'brokerErrors'>): Append {
  return async (room, draft, key, except) => {
    try {
      return await broker.append(room, draft, key || undefined, except)
    } catch (err) {
      throw notAccepted(metrics, room, draft.event.type, err)
    }
  }
}
