import { SmallMap } from '../core/small'
import type { User } from '../protocol/server-frames'
import type { Device, Members, NotifyLevel, Standing } from './types'
import { patched } from './types'

/** Everything in this process: the engine of one node without PostgreSQL. */
export function memoryMembers(): Members {
  /** user -> room -> marker */
  const byUser = new Map<string, Map<string, number>>()
  /** room -> user -> name */
  const byRoom = new Map<string, Map<string, string>>()
  const pairs = new Map<string, [User, User]>()
  const users = new Map<string, User>()
  /** `${room}\n${user}` -> standing */
  const standings = new Map<string, Standing>()
  /** user -> device id -> device */
  const devices = new Map<string, Map<string, Device>>()
  /** `${room}\n${user}` -> level (absent: all) */
  const levels = new Map<string, NotifyLevel>()
  /** user -> the users it blocks */
  const blocked = new Map<string, Set<string>>()

  const roomsOf = (user: string) => byUser.get(user)
  const mark = (room: string, user: string, seq: number) => {
    const rooms = roomsOf(user)
    const cur = rooms?.get(room)
    if (cur === undefined) return undefined
    if (seq > cur) rooms!.set(room, seq)
    return Math.max(seq, cur)
  }

  return {
    kind: 'memory',
    async of(user) {
      return [...(roomsOf(user) ?? [])].map(([room, read]) => ({ room, read }))
    },
    async get(room, user) {
      const read = roomsOf(user)?.get(room)
      return read === undefined ? undefined : { room, read }
    },
    async add(room, user, read, cap) {
      let rooms = roomsOf(user.id)
      const cur = rooms?.get(room)
      if (cur !== undefined) return { status: 'exists', read: cur }
      if ((rooms?.size ?? 0) >= cap) return { status: 'limit' }
      if (!rooms) byUser.set(user.id, (rooms = new SmallMap()))
      rooms.set(room, read)
      let names = byRoom.get(room)
      if (!names) byRoom.set(room, (names = new Map()))
      names.set(user.id, user.name)
      if (!users.has(user.id)) users.set(user.id, user)
      return { status: 'added', read }
    },
    async remove(room, user) {
      const rooms = roomsOf(user)
      if (!rooms?.delete(room)) return false
      if (rooms.size === 0) byUser.delete(user)
      const names = byRoom.get(room)
      names?.delete(user)
      if (names?.size === 0) byRoom.delete(room)
      return true
    },
    async list(room, after, limit) {
      const ids = [...(byRoom.get(room)?.keys() ?? [])].filter((id) => after === undefined || id > after).sort()
      const page = ids.slice(0, limit)
      const names = byRoom.get(room)
      return {
        members: page.map((id) => ({ id, name: users.get(id)?.name ?? names!.get(id)!, read: roomsOf(id)?.get(room) ?? 0 })),
        more: ids.length > limit,
      }
    },
    async read(room, user, seq) {
      return mark(room, user, seq)
    },
    touch(room, user, seq) {
      mark(room, user, seq)
    },
    async pair(room) {
      return pairs.get(room)
    },
    async setPair(room, pair) {
      if (!pairs.has(room)) pairs.set(room, pair)
    },
    async user(id) {
      return users.get(id)
    },
    async seen(user) {
      users.set(user.id, user)
    },
    async standing(room, user) {
      return standings.get(`${room}\n${user}`) ?? {}
    },
    async setStanding(room, user, patch) {
      const k = `${room}\n${user}`
      standings.set(k, patched(standings.get(k) ?? {}, patch))
    },
    async devices(user) {
      return [...(devices.get(user)?.values() ?? [])]
    },
    async putDevice(user, d, cap) {
      let mine = devices.get(user)
      const had = mine?.has(d.device) ?? false
      if (!had && (mine?.size ?? 0) >= cap) return 'limit'
      if (!mine) devices.set(user, (mine = new Map()))
      mine.set(d.device, d)
      return had ? 'updated' : 'added'
    },
    async removeDevice(user, device) {
      const mine = devices.get(user)
      if (!mine?.delete(device)) return false
      if (mine.size === 0) devices.delete(user)
      return true
    },
    async pushable(room) {
      // Whichever index is smaller is walked: users with devices, or the room's members.
      const names = byRoom.get(room)
      if (!names) return []
      const out: string[] = []
      if (devices.size < names.size) {
        for (const user of devices.keys()) if (names.has(user)) out.push(user)
      } else for (const user of names.keys()) if (devices.has(user)) out.push(user)
      return out
    },
    async notifyLevels(room, ids) {
      const out = new Map<string, NotifyLevel>()
      for (const id of ids) {
        const l = levels.get(`${room}\n${id}`)
        if (l) out.set(id, l)
      }
      return out
    },
    async setNotify(room, user, level) {
      if (level === 'all') levels.delete(`${room}\n${user}`)
      else levels.set(`${room}\n${user}`, level)
    },
    async block(user, other) {
      let set = blocked.get(user)
      if (!set) blocked.set(user, (set = new Set()))
      if (set.has(other)) return false
      set.add(other)
      return true
    },
    async unblock(user, other) {
      const set = blocked.get(user)
      if (!set?.delete(other)) return false
      if (set.size === 0) blocked.delete(user)
      return true
    },
    async blocks(user) {
      return [...(blocked.get(user) ?? [])].sort()
    },
    async blocking(sender, ids) {
      return new Set(ids.filter((id) => blocked.get(id)?.has(sender)))
    },
  }
}
