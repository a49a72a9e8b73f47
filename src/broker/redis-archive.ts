import { log } from '../log'
import { eventOf } from '../protocol/server-frames'
import type { StoredEvent, Store } from '../store/types'
import type { RedisKeys, Scripted } from './redis-scripts'

/** Younger messages are left to the node that sent them, whose write is on its way. */
const REPAIR_AGE_MS = 1_000

/**
 * With Redis and persistence, a room's stream is the log and the store follows it. This pass
 * (one node at a time, under a Redis lock) copies into the store what a room's stream holds
 * past the room's persisted mark (`pw`) but the store lacks: messages of a node that died
 * before writing, or of a backlog that overflowed while PostgreSQL was down.
 */
export function archiveRepair(cmd: Scripted, key: RedisKeys, store: Pick<Store, 'save' | 'stored'>, nodeId: string) {
  let running = false
  return async function repairArchive() {
    if (running) return
    running = true
    let locked = false
    try {
      locked = (await cmd.set(key.repairLock, nodeId, 'PX', 30_000, 'NX')) === 'OK'
      if (!locked) return
      for (const room of await cmd.zrange(key.unpersisted, 0, -1)) await repairRoom(room)
    } catch (err) {
      log.debug('archive repair failed', { err })
    } finally {
      if (locked) await cmd.unlock(key.repairLock, nodeId).catch(() => {})
      running = false
    }
  }

  async function repairRoom(room: string) {
    const pw = Number((await cmd.hget(key.state(room), 'pw')) ?? 0)
    const entries = (await cmd.xrange(key.log(room), `${pw + 1}-0`, '+', 'COUNT', 5000)) as [string, string[]][]
    const cutoff = Date.now() - REPAIR_AGE_MS
    const ready: StoredEvent[] = []
    for (const [, fields] of entries) {
      const e = eventOf(fields[1]!)
      if (Date.parse(e.ts) > cutoff) break
      ready.push(e)
    }
    if (ready.length === 0) {
      if (entries.length === 0) await persisted(room, pw)
      return
    }
    const lo = ready[0]!.seq
    const hi = ready.at(-1)!.seq
    if (lo > pw + 1) log.warn('the room stream no longer holds messages the store lacks', { room, from: pw + 1, to: lo - 1 })
    const have = await store.stored(room, lo, hi)
    const missing = ready.filter((m) => !have.has(m.seq))
    if (missing.length) {
      await store.save(missing)
      log.info('repaired messages into the store', { room, count: missing.length, from: missing[0]!.seq, to: missing.at(-1)!.seq })
    }
    await persisted(room, hi)
  }

  async function persisted(room: string, upTo: number) {
    const [pw, seq] = await cmd.chatPersisted(key.state(room), upTo)
    if (pw >= seq) await cmd.dueDone(key.unpersisted, room, Date.now())
  }
}
