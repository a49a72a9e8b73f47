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
