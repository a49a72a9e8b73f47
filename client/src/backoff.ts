export interface BackoffOptions {
  /** First delay, ms (default 250). */
  initialMs?: number
  /** Upper bound of any delay, ms (default 10 000). */
  maxMs?: number
  /** Growth per attempt (default 2). */
  factor?: number
  /** Share of the delay that is random, 0..1 (default 0.5: a delay lies in [d/2, d]). */
  jitter?: number
}

/** Delay before reconnect attempt `attempt` (0-based): exponential, capped, with jitter. */
export function backoffDelay(attempt: number, o: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = o.initialMs ?? 250
  const max = o.maxMs ?? 10_000
  const factor = o.factor ?? 2
  const jitter = Math.min(1, Math.max(0, o.jitter ?? 0.5))
  const base = Math.min(max, initial * factor ** Math.min(attempt, 64))
  return Math.round(base * (1 - jitter * random()))
}
