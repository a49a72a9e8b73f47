/**
 * Latency histogram in 10 µs buckets up to 10 s (values above land in the last bucket; the
 * exact max is kept). Cheap to record into, mergeable across processes as sparse pairs.
 */
export const BUCKET_US = 10
const BUCKETS = 1_000_000

export class Histogram {
  counts = new Uint32Array(BUCKETS)
  n = 0
  sumUs = 0
  maxUs = 0
  minUs = Infinity

  record(us: number) {
    if (us < 0) us = 0
    const b = Math.min(BUCKETS - 1, (us / BUCKET_US) | 0)
    this.counts[b]!++
    this.n++
    this.sumUs += us
    if (us > this.maxUs) this.maxUs = us
    if (us < this.minUs) this.minUs = us
  }

  reset() {
    this.counts.fill(0)
    this.n = 0
    this.sumUs = 0
    this.maxUs = 0
    this.minUs = Infinity
  }

  toJSON(): SparseHistogram {
    const pairs: number[] = []
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i]) pairs.push(i, this.counts[i]!)
    return { pairs, n: this.n, sumUs: this.sumUs, maxUs: this.maxUs, minUs: this.n ? this.minUs : 0 }
  }

  merge(s: SparseHistogram) {
    for (let i = 0; i < s.pairs.length; i += 2) this.counts[s.pairs[i]!]! += s.pairs[i + 1]!
    this.n += s.n
    this.sumUs += s.sumUs
    if (s.maxUs > this.maxUs) this.maxUs = s.maxUs
    if (s.n && s.minUs < this.minUs) this.minUs = s.minUs
  }

  /** The value (µs, bucket upper edge, capped at max) below which a fraction q of samples lie. */
  quantile(q: number): number {
    if (this.n === 0) return NaN
    const rank = Math.ceil(q * this.n)
    let seen = 0
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!
      if (seen >= rank) return Math.min(this.maxUs, (i + 1) * BUCKET_US)
    }
    return this.maxUs
  }

  summary(): LatencySummary {
    const ms = (us: number) => Math.round(us) / 1000
    return {
      samples: this.n,
      p50: ms(this.quantile(0.5)),
      p90: ms(this.quantile(0.9)),
      p95: ms(this.quantile(0.95)),
      p99: ms(this.quantile(0.99)),
      p999: ms(this.quantile(0.999)),
      max: ms(this.maxUs),
      mean: this.n ? ms(this.sumUs / this.n) : NaN,
    }
  }
}

export interface SparseHistogram {
  pairs: number[]
  n: number
  sumUs: number
  maxUs: number
  minUs: number
}

/** Milliseconds. */
export interface LatencySummary {
  samples: number
  p50: number
  p90: number
  p95: number
  p99: number
  p999: number
  max: number
  mean: number
}
