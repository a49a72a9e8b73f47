/** A token bucket: `perSec` tokens a second, at most `burst` saved up. perSec 0 = no limit. */
export interface Bucket {
  tokens: number
  at: number
}

export function tokenBucket(perSec: number, burst: number) {
  return {
    create: (): Bucket => ({ tokens: burst, at: performance.now() }),
    take(b: Bucket): boolean {
      if (perSec === 0) return true
      const now = performance.now()
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) * perSec) / 1000)
      b.at = now
      if (b.tokens < 1) return false
      b.tokens -= 1
      return true
    },
  }
}
