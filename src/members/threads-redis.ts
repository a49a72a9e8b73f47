import type Redis from 'ioredis'
import { UNREAD_CAP } from '../broker/read-model'
import MARK from './lua/thread-mark.lua' with { type: 'text' }
import { newestFirst, splitThreadKey, threadKey } from './threads'
import type { ThreadEntry, Threads } from './threads'

type Scripted = Redis & { threadMark(markers: string, thread: string, seq: number): Promise<number> }

/** How many of a user's list entries one read of it takes (a room's filter may skip some). */
const CHUNK = 200

/**
 * Threads in Redis, for a cluster without PostgreSQL. A thread's keys share its room's slot
 * (`{<room>}:th:<msg>` its count, root seq and last time; `…:thr:<msg>` its replies by seq;
 * `…:thp:<msg>` the users whose lists hold it); a user's keys share the user's
 * (`{u:<id>}:threads`, thread → last activity in ms, and `{u:<id>}:thmark`, thread → marker).
 * No script spans two slots: a reply's writes are one call per slot (a Redis Cluster refuses more).
 */
export function redisThreads(redis: Redis, P: string): Threads {
  const cmd = redis as Scripted
  if (!('threadMark' in cmd)) redis.defineCommand('threadMark', { numberOfKeys: 1, lua: MARK })
  const key = {
    thread: (room: string, msg: string) => `${P}{${room}}:th:${msg}`,
    replies: (room: string, msg: string) => `${P}{${room}}:thr:${msg}`,
    people: (room: string, msg: string) => `${P}{${room}}:thp:${msg}`,
    list: (user: string) => `${P}{u:${user}}:threads`,
    marks: (user: string) => `${P}{u:${user}}:thmark`,
  }

  return {
    kind: 'redis',
    async replied(r) {
      const k = threadKey(r.room, r.msg)
      const ms = Date.parse(r.ts)
      const [, , , , , people] = (await cmd
        .multi()
        .hsetnx(key.thread(r.room, r.msg), 'root', r.rootSeq)
        .hincrby(key.thread(r.room, r.msg), 'count', 1)
        .hset(key.thread(r.room, r.msg), 'last', r.ts)
        .zadd(key.replies(r.room, r.msg), r.seq, `${r.seq}:${r.from}`)
        .sadd(key.people(r.room, r.msg), r.from, r.rootAuthor)
        .smembers(key.people(r.room, r.msg))
        .exec())!.map(([err, v]) => {
        if (err) throw err
        return v
      }) as [unknown, unknown, unknown, unknown, unknown, string[]]
      // Everyone whose list holds the thread sees it move up (a reply costs one write per participant).
      await Promise.all([...people.map((u) => cmd.zadd(key.list(u), 'GT', ms, k)), cmd.threadMark(key.marks(r.from), k, r.seq)])
    },
    read(room, msg, user, seq) {
      return cmd.threadMark(key.marks(user), threadKey(room, msg), seq)
    },
    async list(user, { room, before, limit }) {
      const out: ThreadEntry[] = []
      let offset = 0
      const max = before === undefined ? '+inf' : `(${before}`
      for (;;) {
        const chunk = await cmd.zrevrangebyscore(key.list(user), max, '-inf', 'LIMIT', offset, CHUNK)
        offset += chunk.length
        const wanted = chunk.map(splitThreadKey).filter(([r]) => room === undefined || r === room)
        const marks = wanted.length ? await cmd.hmget(key.marks(user), ...wanted.map(([r, m]) => threadKey(r, m))) : []
        const rows = await Promise.all(
          wanted.map(async ([r, m], i) => {
            const [t, replies] = await Promise.all([
              cmd.hmget(key.thread(r, m), 'root', 'count', 'last'),
              cmd.zrangebyscore(key.replies(r, m), `(${Number(marks[i] ?? 0)}`, '+inf', 'LIMIT', 0, UNREAD_CAP + 50),
            ])
            const unread = Math.min(UNREAD_CAP, replies.filter((x) => x.slice(x.indexOf(':') + 1) !== user).length)
            return { room: r, msg: m, rootSeq: Number(t[0] ?? 0), count: Number(t[1] ?? 0), last_ts: t[2] ?? '', unread }
          }),
        )
        out.push(...rows.filter((x) => x.last_ts))
        if (out.length > limit || chunk.length < CHUNK) break
      }
      out.sort(newestFirst)
      return { threads: out.slice(0, limit), more: out.length > limit }
    },
  }
}
