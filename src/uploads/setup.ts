import { resolve } from 'node:path'
import type Redis from 'ioredis'
import type { Cluster } from 'ioredis'
import type { Sql } from 'postgres'
import type { Config } from '../config'
import { diskStorage } from './disk'
import { memoryUploads } from './memory'
import { postgresUploads } from './postgres'
import { redisUploads } from './redis'
import { s3Storage } from './s3'
import { createUploads } from './service'

/**
 * The key of signed download URLs: UPLOAD_URL_SECRET, else one derived from a secret every
 * node of a cluster already shares (JWT_SECRET, API_KEY), else random for this process
 * (then a URL signed by one node is refused by another).
 */
export function urlSecret(config: Pick<Config, 'UPLOAD_URL_SECRET' | 'JWT_SECRET' | 'API_KEY'>): string {
  if (config.UPLOAD_URL_SECRET) return config.UPLOAD_URL_SECRET
  const shared = config.JWT_SECRET ?? config.API_KEY
  if (shared) return new Bun.CryptoHasher('sha256', shared).update('chat-server upload URLs').digest('hex')
  return crypto.getRandomValues(new Uint8Array(32)).toHex()
}

/** Uploads as configured: metadata where the memberships are (PostgreSQL, else Redis, else memory), bytes on disk or in S3. */
export function configuredUploads(config: Config, engines: { sql?: Sql; redis?: Redis | Cluster }) {
  const index = engines.sql
    ? postgresUploads(engines.sql)
    : engines.redis
      ? redisUploads(engines.redis, config.REDIS_PREFIX)
      : memoryUploads()
  const storage = config.S3_BUCKET
    ? s3Storage({
        bucket: config.S3_BUCKET,
        endpoint: config.S3_ENDPOINT,
        region: config.S3_REGION,
        accessKeyId: config.S3_ACCESS_KEY_ID,
        secretAccessKey: config.S3_SECRET_ACCESS_KEY,
      })
    : diskStorage(resolve(config.UPLOAD_DIR))
  return createUploads({
    index,
    storage,
    settings: {
      maxBytes: config.UPLOAD_MAX_BYTES,
      types: config.UPLOAD_TYPES,
      orphanTtlMs: config.UPLOAD_ORPHAN_TTL_S * 1000,
      urlSecret: urlSecret(config),
      urlTtlS: config.UPLOAD_URL_TTL_S,
    },
  })
}
