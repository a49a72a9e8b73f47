import { redisBroker } from '../../src/broker/redis'
import type { RedisBrokerOptions } from '../../src/broker/redis'
import { redisConnections } from '../../src/broker/redis-connect'
import { singleNode } from '../../src/cluster/heartbeat'
import { dropRedisPrefix } from './services'
import type { EventDraft } from '../../src/broker/types'
import { eventHead, eventTail } from '../../src/protocol/server-frames'
import type { RoomEvent } from '../../src/protocol/server-frames'

/** A plain chat of `from` (Alice by default) as the hub hands it to the broker. */
export function chatDraft(room: string, body: string, from = { id: 'alice', name: 'Alice' }): EventDraft {
  const event: RoomEvent = { type: 'chat', id: Bun.randomUUIDv7(), room, from, ts: new Date().toISOString(), body }
  return { event, head: eventHead('chat'), tail: eventTail(event) }
}

/**
 * One node's Redis broker on the machine's Redis (127.0.0.1:6379), its keys under `prefix`,
 * started with no delivery; `stop` closes it and drops its keys. For tests of the engine alone.
 */
export async function startRedisBroker(prefix: string, nodeId: string, opts: Partial<RedisBrokerOptions> = {}) {
  const connections = redisConnections('redis://127.0.0.1:6379', false)
  const broker = redisBroker({ redis: connections, nodes: singleNode(nodeId), cluster: false, prefix, nodeId, historyLimit: 1000, ...opts })
  await broker.start(
    () => {},
    () => {},
  )
  return {
    broker,
    async stop() {
      await broker.close()
      connections.close()
      await dropRedisPrefix(prefix)
    },
  }
}
