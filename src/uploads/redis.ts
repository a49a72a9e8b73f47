import type Redis from 'ioredis'
import type { Cluster } from 'ioredis'
import type { Ref, Upload, UploadIndex } from './types'
import LINK from './lua/upload-link.lua' with { type: 'text' }
import REAP from './lua/upload-reap.lua' with { type: 'text' }
import CLAIM from './lua/upload-claim.lua' with { type: 'text' }

type Scripted = Redis & {
  uploadLink(meta: string, refs: string, ref: string): Promise<number>
  uploadReap(meta: string, refs: string): Promise<number>
  uploadClaim(orphans: string, before: number, limit: number): Promise<string[]>
}

/**
 * Upload metadata in Redis, so that every node serves every upload. An upload's keys share
 * one hash slot (`{up:<id>}`: its metadata and the messages that carry it), a message's list
 * of uploads lives with its room, and the orphans are one sorted set scored by receipt time:
 * a node claims old ones out of it atomically, so each orphan is reaped once.
 */
export function redisUploads(redis: Redis | Cluster, P: string): UploadIndex {
  const cmd = redis as unknown as Scripted
  if (!('uploadLink' in cmd)) {
    redis.defineCommand('uploadLink', { numberOfKeys: 2, lua: LINK })
    redis.defineCommand('uploadReap', { numberOfKeys: 2, lua: REAP })
    redis.defineCommand('uploadClaim', { numberOfKeys: 1, lua: CLAIM })
  }
  const key = {
    meta: (id: string) => `${P}{up:${id}}`,
    refs: (id: string) => `${P}{up:${id}}:refs`,
    msg: (r: Ref) => `${P}{${r.room}}:uploads:${r.msg}`,
    orphans: `${P}uploads:orphans`,
  }
  const refOf = (r: Ref) => `${r.room}\n${r.msg}`

  return {
    kind: 'redis',
    async put(u) {
      await cmd.set(key.meta(u.id), JSON.stringify(u))
      await cmd.zadd(key.orphans, u.created, u.id)
    },
    async get(id) {
      const raw = await cmd.get(key.meta(id))
      return raw ? (JSON.parse(raw) as Upload) : undefined
    },
    async rooms(id) {
      const refs = await cmd.smembers(key.refs(id))
      return [...new Set(refs.map((k) => k.slice(0, k.indexOf('\n'))))]
    },
    async link(ids, ref) {
      // The message's list first, so that `unlink` undoes every reference made here, even of a partial link.
      if (ids.length) await cmd.sadd(key.msg(ref), ...ids)
      for (const id of ids) if (!(await cmd.uploadLink(key.meta(id), key.refs(id), refOf(ref)))) return id
      return undefined
    },
    async unlink(ref) {
      const ids = await cmd.smembers(key.msg(ref))
      if (!ids.length) return []
      await cmd.del(key.msg(ref))
      const free: string[] = []
      for (const id of ids) {
        await cmd.srem(key.refs(id), refOf(ref))
        if ((await cmd.scard(key.refs(id))) === 0) {
          free.push(id)
          // An orphan again: the sweep reaps it unless another message takes it first.
          const u = await this.get(id)
          if (u) await cmd.zadd(key.orphans, u.created, id)
        }
      }
      return free
    },
    async reap(id) {
      const removed = (await cmd.uploadReap(key.meta(id), key.refs(id))) === 1
      if (removed) await cmd.zrem(key.orphans, id)
      return removed
    },
    async claimOrphans(before, limit) {
      const claimed = await cmd.uploadClaim(key.orphans, before, limit)
      const out: string[] = []
      // Claimed here only; one that a message took meanwhile keeps its metadata.
      for (const id of claimed) if ((await cmd.uploadReap(key.meta(id), key.refs(id))) === 1) out.push(id)
      return out
    },
  }
}
