import type Redis from 'ioredis'
import type { User } from '../protocol/server-frames'
import type { AddResult, Device, Members, NotifyLevel, Standing } from './types'
import { patched } from './types'
import ADD from './lua/members-add.lua' with { type: 'text' }
import MARK from './lua/members-mark.lua' with { type: 'text' }
import PUT_DEVICE from './lua/members-put-device.lua' with { type: 'text' }

type Scripted = Redis & {
  memberPutDevice(devices: string, device: string, json: string, cap: number): Promise<number>
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
    redis.defineCommand('memberPutDevice', { numberOfKeys: 1, lua: PUT_DEVICE })
  }
  const key = {
    rooms: (user: string) => `${P}{u:${user}}:rooms`,
    members: (room: string) => `${P}{${room}}:members`,
    pair: (room: string) => `${P}{${room}}:pair`,
    users: `${P}users`,
    standing: (room: string) => `${P}{${room}}:standing`,
    devices: (user: string) => `${P}{u:${user}}:devices`,
    blocks: (user: string) => `${P}{u:${user}}:blocks`,
    notify: (room: string) => `${P}{${room}}:notify`,
    /** The room's members with at least one device: kept on device and membership changes. */
    pushable: (room: string) => `${P}{${room}}:pushable`,
  }
  /** A user's first device or last one: the rooms' pushable sets follow (each in its room's slot). */
  async function pushableEverywhere(user: string, on: boolean) {
    const rooms = await cmd.hkeys(key.rooms(user))
    await Promise.all(rooms.map((room) => (on ? cmd.sadd(key.pushable(room), user) : cmd.srem(key.pushable(room), user))))
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
      // One round trip (auto-pipelined): the room's side, the directory, whether the user has devices.
      const roomSide = () =>
        Promise.all([
          cmd.hset(key.members(room), user.id, user.name),
          cmd.hsetnx(key.users, user.id, user.name),
          cmd.exists(key.devices(user.id)),
        ])
      // Without a cap the user's side cannot refuse, and a membership that exists has this room
      // side already (the name written again): both sides go at once, one round trip where there
      // were two (the default room of a user's first connect, issue 34). A user's side that fails
      // then leaves the room's side written: the next connect adds the membership again.
      const capped = Number.isFinite(cap)
      const early = capped ? undefined : roomSide()
      early?.catch(() => {}) // awaited below, after the user's side
      const [status, marker] = await cmd.memberAdd(key.rooms(user.id), room, read, capped ? cap : 1e15)
      if (status === -1) return { status: 'limit' }
      if (status === 0) return { status: 'exists', read: marker! }
      let pushable: number
      try {
        ;[, , pushable] = await (early ?? roomSide())
      } catch (err) {
        // Never half-applied: the user's side goes again when the room's side cannot be written.
        await cmd.hdel(key.rooms(user.id), room).catch(() => {})
        throw err
      }
      if (pushable) await cmd.sadd(key.pushable(room), user.id)
      return { status: 'added', read: marker! }
    },
    async remove(room, user) {
      const removed = await cmd.hdel(key.rooms(user), room)
      await Promise.all([cmd.hdel(key.members(room), user), cmd.srem(key.pushable(room), user)])
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
    async devices(user) {
      return Object.values(await cmd.hgetall(key.devices(user))).map((v) => JSON.parse(v) as Device)
    },
    async putDevice(user, d, cap) {
      const r = await cmd.memberPutDevice(key.devices(user), d.device, JSON.stringify(d), Number.isFinite(cap) ? cap : 1e15)
      if (r === -1) return 'limit'
      if (r === 2) await pushableEverywhere(user, true)
      return r === 0 ? 'updated' : 'added'
    },
    async removeDevice(user, device) {
      const [[, removed], [, left]] = (await cmd.multi().hdel(key.devices(user), device).hlen(key.devices(user)).exec()) as [
        [unknown, number],
        [unknown, number],
      ]
      if (removed && left === 0) await pushableEverywhere(user, false)
      return removed > 0
    },
    async pushable(room) {
      return cmd.smembers(key.pushable(room))
    },
    async notifyLevels(room, ids) {
      const out = new Map<string, NotifyLevel>()
      if (ids.length === 0) return out
      const vals = await cmd.hmget(key.notify(room), ...ids)
      ids.forEach((id, i) => {
        if (vals[i]) out.set(id, vals[i] as NotifyLevel)
      })
      return out
    },
    async setNotify(room, user, level) {
      if (level === 'all') await cmd.hdel(key.notify(room), user)
      else await cmd.hset(key.notify(room), user, level)
    },
    async block(user, other) {
      return (await cmd.sadd(key.blocks(user), other)) > 0
    },
    async unblock(user, other) {
      return (await cmd.srem(key.blocks(user), other)) > 0
    },
    async blocks(user) {
      return (await cmd.smembers(key.blocks(user))).sort()
    },
    async blocking(sender, ids) {
      // Each user's set is in the user's slot: one command per user, auto-pipelined.
      const r = await Promise.all(ids.map((id) => cmd.sismember(key.blocks(id), sender)))
      return new Set(ids.filter((_, i) => r[i] === 1))
    },
  }
}
