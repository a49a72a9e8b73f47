/** A token bucket: `perSec` tokens a second, at most `burst` saved up. perSec 0 = no limit. */
export interface Bucket {
  tokens: number
  /** When `tokens` was last brought up to date (performance.now()). */
  refilledAt: number
}

export function tokenBucket(perSec: number, burst: number) {
  return {
    /** A full bucket's fields, for the record that holds them (the connection). */
    full: (): Bucket => ({ tokens: burst, refilledAt: performance.now() }),
    take(b: Bucket): boolean {
      if (perSec === 0) return true
      const now = performance.now()
      b.tokens = Math.min(burst, b.tokens + ((now - b.refilledAt) * perSec) / 1000)
      b.refilledAt = now
      if (b.tokens < 1) return false
      b.tokens -= 1
      return true
    },
  }
}

/** A connection's refused frames: a 4th strike, each within STRIKE_MEMORY_MS of the one before, closes it. */
export interface Strikes {
  strikes: number
  lastStrikeAt: number
}

const STRIKES_BEFORE_CLOSE = 3
const STRIKE_MEMORY_MS = 10_000

/**
 * The flood rule of every face: one frame refused by the rate limit is a strike; true when this
 * strike is one too many and the connection is to be closed (a client that keeps sending past
 * `error rate_limited` ignores it, and costs the node more than an answer is worth).
 */
export function strike(s: Strikes): boolean {
  const now = performance.now()
  if (now - s.lastStrikeAt > STRIKE_MEMORY_MS) s.strikes = 0
  s.lastStrikeAt = now
  return ++s.strikes > STRIKES_BEFORE_CLOSE
}
