import type { Storage } from './types'

export interface S3Options {
  bucket: string
  endpoint?: string
  region?: string
  accessKeyId?: string
  secretAccessKey?: string
}

/** Parts of a multipart upload: S3's smallest part size, so memory per upload stays ~2 parts. */
const PART_BYTES = 5 * 1024 * 1024

/**
 * Uploads as objects of an S3-compatible bucket, through Bun's own S3 client (no SDK). Every
 * node of a cluster reads the same bucket. A body is streamed as a multipart upload when it is
 * large (a single PUT when it fits one part).
 */
export function s3Storage(o: S3Options): Storage {
  const client = new Bun.S3Client({
    bucket: o.bucket,
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    ...(o.region ? { region: o.region } : {}),
    ...(o.accessKeyId ? { accessKeyId: o.accessKeyId } : {}),
    ...(o.secretAccessKey ? { secretAccessKey: o.secretAccessKey } : {}),
  })
  return {
    kind: 's3',
    async put(key, chunks) {
      const w = client.file(key).writer({ partSize: PART_BYTES, queueSize: 2, retry: 1 })
      try {
        for await (const chunk of chunks) {
          w.write(chunk)
          await w.flush()
        }
        await w.end()
      } catch (err) {
        // The writer may have completed what it had: the object must not stay behind.
        await Promise.resolve(w.end()).catch(() => {})
        await client.delete(key).catch(() => {})
        throw err
      }
    },
    async get(key) {
      const f = client.file(key)
      if (!(await f.exists())) return undefined
      return f.stream()
    },
    async delete(key) {
      await client.delete(key)
    },
  }
}
