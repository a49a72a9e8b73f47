import { createRemoteJWKSet, errors, importSPKI, jwksCache, jwtVerify } from 'jose'
import type { CryptoKey, ExportedJWKSCache, JWTPayload, JWTVerifyGetKey } from 'jose'
import { ConfigError } from '../config'
import type { Config } from '../config'
import type { Check } from '../core/check'
import type { Identity } from '../core/identity'
import { ROLES } from '../core/identity'
import type { Role } from '../core/identity'
import { FrameError } from '../core/errors'
import { log } from '../log'
import type { Authenticate, Refusal } from './anonymous'
import { RESERVED_USER, SYSTEM_USER } from './system'

/** Leeway for `exp` and `nbf` (clock skew between the issuer and this server). */
export const CLOCK_TOLERANCE_S = 5
/** Longer tokens are refused before any parsing. */
const MAX_TOKEN_CHARS = 8192
/** Longest `sub` (user id) and `name`; the protocol's user ids are at most 64 characters. */
const MAX_ID_CHARS = 64

export const HMAC_ALGS = ['HS256', 'HS384', 'HS512']
export const ASYMMETRIC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519']

export interface JwtAuth {
  /** Verifies one token: the identity it carries, or why it is refused. */
  verify: (token: string) => Promise<Identity | Refusal>
  /** For the /ws upgrade: the token from `Authorization: Bearer` or `?token=`. */
  authenticate: Authenticate
  /** For the `refresh` frame: the same checks; a refused token throws `unauthorized`. */
  refresh: (token: string) => Promise<Identity>
  /** Readiness checks (the JWKS mode reports unavailable keys). */
  checks: Record<string, Check>
  /** Starts fetching remote keys, if any; never throws. */
  start: () => void
  stop: () => void
}

/** A key could not be obtained (the JWKS endpoint is down, slow or serves garbage). */
class KeysUnavailable extends Error {}

/** `Authorization: Bearer <t>` first, then `?token=<t>`. */
export function tokenFrom(req: {
  query: Record<string, string | undefined>
  headers: Record<string, string | undefined>
}): string | undefined {
  const header = req.headers.authorization
  if (header) {
    const m = /^Bearer +(\S+) *$/i.exec(header)
    if (m) return m[1]
  }
  return req.query.token || undefined
}

/** Maps a jose verification error to the refusal reason clients and metrics see. */
export function reasonOf(err: unknown): string {
  if (err instanceof KeysUnavailable) return 'keys_unavailable'
  if (err instanceof errors.JWTExpired) return 'expired'
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'nbf':
        return 'not_yet_valid'
      case 'iss':
        return 'wrong_issuer'
      case 'aud':
        return 'wrong_audience'
      case 'sub':
        return 'missing_sub'
      default:
        return 'malformed'
    }
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) return 'bad_algorithm'
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad_signature'
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) return 'unknown_key'
  return 'malformed'
}

/** Control characters: never part of an id; stripped from display names (PostgreSQL refuses NUL). */
const CONTROL = /[\u0000-\u001f]/
const CONTROL_ALL = /[\u0000-\u001f]/g

/** The claims this server uses, checked after jose verified the token. */
export function identityFrom(claims: JWTPayload): Identity | Refusal {
  const { sub, name, rooms, exp, roles } = claims
  if (sub === undefined || sub === '') return { reason: 'missing_sub' }
  if (typeof sub !== 'string' || sub.length > MAX_ID_CHARS || CONTROL.test(sub)) return { reason: 'malformed' }
  if (sub === SYSTEM_USER.id) return { reason: RESERVED_USER }
  if (name !== undefined && typeof name !== 'string') return { reason: 'malformed' }
  if (rooms !== undefined && (!Array.isArray(rooms) || !rooms.every((r) => typeof r === 'string'))) return { reason: 'malformed' }
  if (
    roles !== undefined &&
    (roles === null ||
      typeof roles !== 'object' ||
      Array.isArray(roles) ||
      !Object.values(roles).every((r) => (ROLES as readonly unknown[]).includes(r)))
  )
    return { reason: 'malformed' }
  return {
    user: { id: sub, name: (name || sub).replace(CONTROL_ALL, '').slice(0, MAX_ID_CHARS) || sub },
    rooms: rooms as string[] | undefined,
    ...(roles ? { roles: roles as Record<string, Role> } : {}),
    exp: typeof exp === 'number' ? exp * 1000 : undefined,
  }
}

/** A PEM from the environment may carry its line breaks as literal `\n`. */
function pemText(raw: string) {
  return raw.includes('\\n') ? raw.replace(/\\n/g, '\n') : raw
}

/**
 * Imports JWT_PUBLIC_KEY once per algorithm it can serve (jose's importSPKI decides: an RSA key
 * serves RS* and PS*, a P-256 key only ES256, and so on). Those algorithms are the allow-list.
 */
async function publicKeys(raw: string): Promise<Map<string, CryptoKey>> {
  const pem = pemText(raw)
  if (/PRIVATE KEY/.test(pem)) throw new ConfigError(["JWT_PUBLIC_KEY: this is a private key; give the issuer's public key (SPKI PEM)"])
  const keys = new Map<string, CryptoKey>()
  for (const alg of ASYMMETRIC_ALGS) {
    try {
      keys.set(alg, await importSPKI(pem, alg))
    } catch {
      // this key cannot serve `alg`
    }
  }
  if (keys.size === 0) throw new ConfigError(['JWT_PUBLIC_KEY: not a usable SPKI PEM public key (RSA, EC P-256/384/521 or Ed25519)'])
  return keys
}

/** Builds the authenticator for the configured key kind. Throws ConfigError for an unusable key. */
export async function createJwtAuth(config: Config): Promise<JwtAuth> {
  let key: JWTVerifyGetKey
  let algorithms: string[]
  const checks: Record<string, Check> = {}
  let start = () => {}
  let stop = () => {}

  if (config.JWT_SECRET) {
    const secret = new TextEncoder().encode(config.JWT_SECRET)
    key = async () => secret
    algorithms = HMAC_ALGS
  } else if (config.JWT_PUBLIC_KEY) {
    const keys = await publicKeys(config.JWT_PUBLIC_KEY)
    algorithms = [...keys.keys()]
    key = async (header) => keys.get(header.alg)!
  } else if (config.JWT_JWKS_URL) {
    const jwks = remoteKeys(config.JWT_JWKS_URL, config.JWT_JWKS_COOLDOWN_S * 1000)
    key = jwks.getKey
    algorithms = ASYMMETRIC_ALGS
    checks.auth = jwks.problem
    start = jwks.start
    stop = jwks.stop
  } else throw new Error('createJwtAuth: no key configured')
  // A token without `exp` never expires, and a `refresh` to one would lift a socket's expiry.
  const requireExp = config.JWT_REQUIRE_EXP ?? config.APP_ENV === 'production'

  async function verify(token: string): Promise<Identity | Refusal> {
    if (token.length > MAX_TOKEN_CHARS) return { reason: 'malformed' }
    try {
      const { payload } = await jwtVerify(token, key, {
        algorithms,
        clockTolerance: CLOCK_TOLERANCE_S,
        issuer: config.JWT_ISSUER,
        audience: config.JWT_AUDIENCE,
      })
      if (requireExp && payload.exp === undefined) return { reason: 'missing_exp' }
      return identityFrom(payload)
    } catch (err) {
      const reason = reasonOf(err)
      if (reason === 'malformed') log.debug('token not verified', { err })
      return { reason }
    }
  }

  return {
    verify,
    async authenticate(req) {
      const token = tokenFrom(req)
      if (!token) return { reason: 'missing_token' }
      return verify(token)
    },
    async refresh(token) {
      const who = await verify(token)
      if ('reason' in who) {
        log.warn('token refresh refused', { reason: who.reason })
        throw new FrameError('unauthorized', `token: ${who.reason}`)
      }
      return who
    },
    checks,
    start,
    stop,
  }
}

/**
 * jose's remote key set (its cache, cooldown and refetch on an unknown `kid`), with the state
 * readiness needs. The set is this URL's alone, so cached keys are keyed by URL and `kid`.
 * A failed fetch never throws past here: verification answers `keys_unavailable` and /readyz
 * reports it until a fetch succeeds again; meanwhile a background retry backs off to 30 s.
 */
function remoteKeys(url: string, cooldownMs: number) {
  const cache: Partial<ExportedJWKSCache> = {} // jose records each successful fetch here (`uat`)
  const remote = createRemoteJWKSet(new URL(url), { cooldownDuration: cooldownMs, [jwksCache]: cache as ExportedJWKSCache })
  let failedAt = 0
  let lastError = ''
  let retry: Timer | undefined
  let retryMs = 1000
  let stopped = false

  const healthy = () => failedAt <= (cache.uat ?? 0)

  function failed(err: unknown) {
    const wasHealthy = healthy()
    failedAt = Date.now()
    lastError = err instanceof Error ? err.message || err.name : String(err)
    if (wasHealthy) log.warn('JWKS unavailable', { url, err: lastError })
    scheduleRetry()
  }

  function scheduleRetry() {
    if (retry || stopped) return
    retry = setTimeout(async () => {
      retry = undefined
      if (healthy() && cache.uat !== undefined) return
      retryMs = Math.min(retryMs * 2, 30_000)
      await load()
    }, retryMs)
    retry.unref?.()
  }

  async function load() {
    try {
      await remote.reload()
      retryMs = 1000
      if (healthy()) log.info('JWKS loaded', { url, keys: remote.jwks()?.keys.length ?? 0 })
    } catch (err) {
      failed(err)
    }
  }

  const getKey: JWTVerifyGetKey = async (header, token) => {
    try {
      return await remote(header, token)
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err
      failed(err)
      throw new KeysUnavailable(lastError)
    }
  }

  return {
    getKey,
    problem: (): string | undefined => {
      if (!healthy()) return `keys_unavailable: ${lastError}`
      if (cache.uat === undefined) return 'keys_loading'
      return undefined
    },
    start: () => void load(),
    stop: () => {
      stopped = true
      if (retry) clearTimeout(retry)
    },
  }
}
