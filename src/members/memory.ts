import { SmallMap } from '../core/small'
import type { User } from '../protocol/server-frames'
import type { Members, Standing } from './types'
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
      return { members: page.map((id) => ({ id, name: users.get(id)?.name ?? names!.get(id)!, read: roomsOf(id)?.get(room) ?? 0 })), more: ids.length > limit }
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
  }
}
