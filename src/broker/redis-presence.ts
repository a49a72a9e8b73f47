import { log } from '../log'
import { frames } from '../protocol/server-frames'
import type { User } from '../protocol/server-frames'
import type { RedisKeys, Scripted } from './redis-scripts'
import type { Presence } from './types'
import { roomTopic } from './types'

interface Entry {
  room: string
  user: User
  conn: string
}

/**
 * Cluster-wide presence in Redis: per room a set of connections, a count and a name per user;
 * per node an index of its entries. The entries of a node the cluster saw die are reaped (by
 * `reap`, an onNodeDead handler), announcing the leaves.
 */
export function redisPresence(cmd: Scripted, key: RedisKeys, nodeId: string, publish: (channel: string, message: string) => Promise<unknown>) {
  /** This node's entries, registered again after Redis comes back empty. */
  const mine = new Map<string, Entry>()
  /** Departures Redis has not heard of yet (it was down): retried when it is back. */
  const departed = new Map<string, Entry>()
  const inflight = new Set<Promise<unknown>>()

  const track = <T>(p: Promise<T>): Promise<T> => {
    inflight.add(p)
    p.finally(() => inflight.delete(p)).catch(() => {})
    return p
  }
  const entryOf = (room: string, user: User, conn: string) => JSON.stringify([room, conn, user.id, user.name])

  // The node index and the room's keys are in different slots of a Redis Cluster, so two
  // commands: indexed first, unindexed last, so that the reaper always finds what a dead node
  // left (removing an entry that is not there is a no-op).
  async function register(e: Entry) {
    await cmd.sadd(key.nodeIndex(nodeId), entryOf(e.room, e.user, e.conn))
    return cmd.presenceAdd(key.pConns(e.room), key.pCounts(e.room), key.pNames(e.room), e.conn, e.user.id, e.user.name)
  }

  async function unregister(node: string, e: Entry): Promise<boolean> {
    const last = await cmd.presenceRemove(key.pConns(e.room), key.pCounts(e.room), key.pNames(e.room), e.conn, e.user.id)
    await cmd.srem(key.nodeIndex(node), entryOf(e.room, e.user, e.conn))
    return last === 1
  }

  const announce = (room: string, event: 'join' | 'leave', user: User) => publish(key.channel(roomTopic(room)), frames.presenceEvent(room, event, user))

  const presence: Presence = {
    async add(room, user, conn) {
      const e = { room, user, conn }
      mine.set(`${room}\n${conn}`, e)
      return track(register(e)).then((n) => n === 1)
    },
    async remove(room, _userId, conn) {
      const k = `${room}\n${conn}`
      const e = mine.get(k)
      mine.delete(k)
      if (!e) return false
      try {
        return await track(unregister(nodeId, e))
      } catch (err) {
        departed.set(k, e)
        throw err
      }
    },
    async list(room) {
      const names = await cmd.hgetall(key.pNames(room))
      return Object.entries(names).map(([id, name]) => ({ id, name }))
    },
  }

  /** What a dead node (or an earlier life of this one) left: removed, with the leaves announced. */
  async function reap(node: string) {
    const entries = await cmd.smembers(key.nodeIndex(node))
    for (const raw of entries) {
      const [room, conn, id, name] = JSON.parse(raw) as [string, string, string, string]
      if (await unregister(node, { room, conn, user: { id, name } })) await announce(room, 'leave', { id, name })
    }
    if (entries.length) log.info('reaped presence of a dead node', { dead: node, entries: entries.length })
  }

  return {
    presence,
    reap,
    /** The command connection is (back) up: register what this node holds, retry departures. */
    reconnected(resync: boolean) {
      if (!resync) return
      for (const e of mine.values())
        void register(e)
          .then((n) => (n === 1 ? announce(e.room, 'join', e.user) : undefined))
          .catch(() => {})
      for (const [k, e] of departed)
        void unregister(nodeId, e)
          .then((last) => {
            departed.delete(k)
            return last ? announce(e.room, 'leave', e.user) : undefined
          })
          .catch(() => {})
    },
    /** At shutdown: let pending writes finish (what is left behind is reaped as a dead node's). */
    async end() {
      await Promise.race([Promise.allSettled([...inflight]), Bun.sleep(2000)])
    },
  }
}
