import type { User } from '../protocol/server-frames'
import type { Presence } from './presence'

/**
 * Presence in this process: a count of connections per user and room. The hub pairs every
 * `add` with one `remove` (rooms.ts), so the connections themselves need not be kept:
 * a set of one user's connection ids cost memory per socket (docs/performance.md).
 */
export function memoryPresence(): Presence {
  const rooms = new Map<string, Map<string, { user: User; conns: number }>>()
  return {
    async add(room, user) {
      let users = rooms.get(room)
      if (!users) rooms.set(room, (users = new Map()))
      const entry = users.get(user.id)
      if (entry) {
        entry.conns++
        return false
      }
      users.set(user.id, { user, conns: 1 })
      return true
    },
    async remove(room, userId) {
      const users = rooms.get(room)
      const entry = users?.get(userId)
      if (!users || !entry) return false
      if (--entry.conns > 0) return false
      users.delete(userId)
      if (users.size === 0) rooms.delete(room)
      return true
    },
    async list(room) {
      return [...(rooms.get(room)?.values() ?? [])].map((e) => e.user)
    },
  }
}
