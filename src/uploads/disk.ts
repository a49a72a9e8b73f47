import { mkdir, open, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Storage } from './types'

/** Keys are upload ids (UUIDv7: hex and `-`), safe as file names. */
const SAFE_KEY = /^[A-Za-z0-9-]{1,64}$/

/**
 * Uploads as files under `dir`. A file is written under a temporary name and renamed when
 * complete, so a reader never sees half of one. Several nodes need the same `dir` (a shared
 * volume) to serve each other's uploads; else use S3.
 */
export function diskStorage(dir: string): Storage {
  // Made on the first upload, not at startup: a read-only image (the container's) starts and
  // serves chat; only uploads then fail, with 503, until a volume is mounted there.
  let made: Promise<unknown> | undefined
  const path = (key: string) => {
    if (!SAFE_KEY.test(key)) throw new Error(`upload key: not a safe file name: ${JSON.stringify(key)}`)
    return join(dir, key)
  }
  return {
    kind: 'disk',
    async put(key, chunks) {
      const final = path(key)
      const part = `${final}.part`
      await (made ??= mkdir(dir, { recursive: true }).catch((err) => {
        made = undefined
        throw err
      }))
      const fh = await open(part, 'w')
      try {
        // One chunk at a time: the upload is never held whole in memory.
        for await (const chunk of chunks) await fh.write(chunk)
        await fh.close()
        await rename(part, final)
      } catch (err) {
        await fh.close().catch(() => {})
        await rm(part, { force: true })
        throw err
      }
    },
    async get(key) {
      const f = Bun.file(path(key))
      return (await f.exists()) ? f.stream() : undefined
    },
    async delete(key) {
      await rm(path(key), { force: true })
    },
  }
}
