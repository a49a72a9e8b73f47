/**
 * Reads the `exp` claim (seconds since the epoch) of a JWT without verifying it: the client
 * only needs it to know when to refresh. Undefined for anything that is not a JWT with `exp`.
 */
export function jwtExpiry(token: string): number | undefined {
  const part = token.split('.')[1]
  if (!part) return undefined
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/')
    const json = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4))
    const exp = (JSON.parse(json) as { exp?: unknown }).exp
    return typeof exp === 'number' && Number.isFinite(exp) ? exp : undefined
  } catch {
    return undefined
  }
}
