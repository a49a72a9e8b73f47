import type Redis from 'ioredis'
import CLAIM from './lua/scheduled-claim.lua' with { type: 'text' }
import { sortBySendAt } from './scheduled'
import type { ScheduledMessage, ScheduledQueue } from './scheduled'

type Scripted = Redis & { scheduledClaim(due: string, items: string, now: number, limit: number, leaseMs: number): Promise<string[]> }

/**
 * Scheduled messages in Redis: every key in one slot (`{sched}`), so the claim is one script on
 * a Redis Cluster too: `due` (id -> due ms), `items` (id -> JSON), and per user a set of ids.
 * A claim moves an item's due time past its lease; `done` removes it.
 */
export function redisScheduled(redis: Redis, P: string): ScheduledQueue {
  const cmd = redis as Scripted
  if (!('scheduledClaim' in cmd)) redis.defineCommand('scheduledClaim', { numberOfKeys: 2, lua: CLAIM })
  const key = {
    due: `${P}{sched}:due`,
    items: `${P}{sched}:items`,
    user: (user: string) => `${P}{sched}:u:${user}`,
  }
  const parse = (raw: (string | null)[]) => raw.filter((x): x is string => x !== null).map((x) => JSON.parse(x) as ScheduledMessage)
  return {
    kind: 'redis',
    async add(m, cap) {
      if ((await cmd.scard(key.user(m.user.id))) >= cap) return 'limit'
      // The item first and only if new: a retry (same id) changes nothing.
      if (!(await cmd.hsetnx(key.items, m.scheduled, JSON.stringify(m)))) return 'exists'
      await cmd.multi().zadd(key.due, Date.parse(m.send_at), m.scheduled).sadd(key.user(m.user.id), m.scheduled).exec()
      return 'added'
    },
    async list(user, room) {
      const ids = await cmd.smembers(key.user(user))
      if (!ids.length) return []
      return sortBySendAt(parse(await cmd.hmget(key.items, ...ids)).filter((m) => room === undefined || m.room === room))
    },
    async remove(user, id) {
      if (!(await cmd.sismember(key.user(user), id))) return false
      const [[, removed]] = (await cmd.multi().hdel(key.items, id).zrem(key.due, id).srem(key.user(user), id).exec()) as [
        [unknown, number],
        ...unknown[],
      ]
      return removed === 1
    },
    async claim(now, limit, leaseMs) {
      return parse(await cmd.scheduledClaim(key.due, key.items, now, limit, leaseMs))
    },
    async done(m) {
      await cmd.multi().hdel(key.items, m.scheduled).zrem(key.due, m.scheduled).srem(key.user(m.user.id), m.scheduled).exec()
    },
  }
}
