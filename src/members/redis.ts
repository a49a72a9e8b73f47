import type Redis from 'ioredis'
import type { User } from '../protocol/server-frames'
import type { AddResult, Members, Standing } from './types'
import { patched } from './types'
import ADD from './lua/members-add.lua' with { type: 'text' }
import MARK from './lua/members-mark.lua' with { type: 'text' }



type Scripted = Redis & {
  memberAdd(rooms: string, room: string, read: number, cap: number): Promise<[number, number?]>
  memberMark(rooms: string, room: string, seq: number): Promise<number>
}

/**
 * Memberships in Redis, for a cluster without PostgreSQL. The user's side (`{u:<id>}:rooms`,
 * room -> marker) is the truth of "is a member" and of the marker; the room's side
 * (`{<room>}:members`, user -> name) lists a room's members. Each side lives in its own hash
 * slot (a user's keys with the user, a room's with the room).
 */
export function redisMembers(redis: Redis, P: string): Members {
  const cmd = redis as Scripted
  if (!('memberAdd' in cmd)) {
    redis.defineCommand('memberAdd', { numberOfKeys: 1, lua: ADD })
    redis.defineCommand('memberMark', { numberOfKeys: 1, lua: MARK })
  }
  const key = {
    rooms: (user: string) => `${P}{u:${user}}:rooms`,
    members: (room: string) => `${P}{${room}}:members`,
    pair: (room: string) => `${P}{${room}}:pair`,
    users: `${P}users`,
    standing: (room: string) => `${P}{${room}}:standing`,
  }

  return {
    kind: 'redis',
    async of(user) {
      const all = await cmd.hgetall(key.rooms(user))
      return Object.entries(all).map(([room, read]) => ({ room, read: Number(read) }))
    },
    async get(room, user) {
      const read = await cmd.hget(key.rooms(user), room)
      return read === null ? undefined : { room, read: Number(read) }
    },
    async add(room, user, read, cap): Promise<AddResult> {
      const [status, marker] = await cmd.memberAdd(key.rooms(user.id), room, read, Number.isFinite(cap) ? cap : 1e15)
      if (status === -1) return { status: 'limit' }
      if (status === 0) return { status: 'exists', read: marker! }
      try {
        await Promise.all([cmd.hset(key.members(room), user.id, user.name), cmd.hsetnx(key.users, user.id, user.name)])
      } catch (err) {
        // Never half-applied: the user's side goes again when the room's side cannot be written.
        await cmd.hdel(key.rooms(user.id), room).catch(() => {})
        throw err
      }
      return { status: 'added', read: marker! }
    },
    async remove(room, user) {
      const removed = await cmd.hdel(key.rooms(user), room)
      await cmd.hdel(key.members(room), user)
      return removed > 0
    },
    async list(room, after, limit) {
      const all = Object.entries(await cmd.hgetall(key.members(room)))
        .filter(([id]) => after === undefined || id > after)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      const page = all.slice(0, limit)
      const reads = await Promise.all(page.map(([id]) => cmd.hget(key.rooms(id), room)))
      return { members: page.map(([id, name], i) => ({ id, name, read: Number(reads[i] ?? 0) })), more: all.length > limit }
    },
    async read(room, user, seq) {
      const marker = await cmd.memberMark(key.rooms(user), room, seq)
      return marker < 0 ? undefined : marker
    },
    touch(room, user, seq) {
      cmd.memberMark(key.rooms(user), room, seq).catch(() => {})
    },
    async pair(room) {
      const raw = await cmd.get(key.pair(room))
      return raw ? (JSON.parse(raw) as [User, User]) : undefined
    },
    async setPair(room, pair) {
      await cmd.set(key.pair(room), JSON.stringify(pair), 'NX')
    },
    async user(id) {
      const name = await cmd.hget(key.users, id)
      return name === null ? undefined : { id, name }
    },
    async seen(user) {
      await cmd.hset(key.users, user.id, user.name)
    },
    async standing(room, user) {
      const v = await cmd.hget(key.standing(room), user)
      return v ? (JSON.parse(v) as Standing) : {}
    },
    async setStanding(room, user, patch) {
      // Read-modify-write of one user's entry; concurrent moderators of one user last-write-win per call.
      const v = await cmd.hget(key.standing(room), user)
      await cmd.hset(key.standing(room), user, JSON.stringify(patched(v ? JSON.parse(v) : {}, patch)))
    },
  }
}
