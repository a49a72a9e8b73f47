import type { ErrorCode } from '../protocol/server-frames'

/** Thrown by a frame's handler to answer it with an `error` frame of that code. */
export class FrameError extends Error {
  constructor(readonly code: ErrorCode, message: string) {
    super(message)
  }
}
