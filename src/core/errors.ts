/** The codes of an `error` frame (and of the API's JSON errors): the contract's names. */
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'rate_limited'
  | 'too_large'
  | 'unavailable'
  | 'internal'
  | 'not_found'
  | 'limit'
  // The word filter refused a text (MODERATION_WORDS_ACTION=reject).
  | 'rejected'
  | 'closed'
  | 'slow_mode'

/** Thrown by a frame's handler to answer it with an `error` frame of that code. */
export class FrameError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Seconds to wait before trying again (`slow_mode`): the frame's `retry_after`. */
    readonly retryAfter?: number,
  ) {
    super(message)
  }
}

/**
 * An engine that answered too late or lost its connection (ioredis's `commandTimeout`, a socket
 * reset): the dependency is overloaded or away for a moment, which the contract calls
 * `unavailable`, not a fault of the server's own.
 */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof Error)) return false
  const code = (err as { code?: unknown }).code
  return (
    err.message === 'Command timed out' ||
    err.message === 'Connection is closed.' ||
    err.name === 'MaxRetriesPerRequestError' ||
    code === 'ECONNRESET' ||
    code === 'ECONNREFUSED' ||
    code === 'ETIMEDOUT' ||
    code === 'CONNECTION_CLOSED' ||
    code === 'CONNECTION_ENDED'
  )
}
