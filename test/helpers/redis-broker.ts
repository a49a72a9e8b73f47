import { afterAll, beforeAll, test as bunTest } from 'bun:test'
import Redis from 'ioredis'
import { redisBroker } from '../../src/broker/redis'
import type { RedisBrokerOptions } from '../../src/broker/redis'
import { redisConnections } from '../../src/broker/redis-connect'
import { singleNode } from '../../src/cluster/heartbeat'
import { dropRedisPrefix } from './services'
import type { Broker, EventDraft } from '../../src/broker/types'
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

/**
 * For the tests of a `describe`: one node's Redis broker, its keys under a prefix of this run
 * (`<name>-…:`), and a plain client of the same Redis, made before the tests when Redis answers
 * (`test` is needService's) and closed after them.
 */
export function useRedisBroker(test: unknown, name: string, opts: Partial<RedisBrokerOptions> = {}) {
  const prefix = `${name}-${process.pid}-${Date.now().toString(36)}:`
  const held = { prefix, broker: undefined as unknown as Broker, redis: undefined as unknown as Redis }
  let node: Awaited<ReturnType<typeof startRedisBroker>> | undefined
  beforeAll(async () => {
    if (test !== bunTest) return
    node = await startRedisBroker(prefix, name, opts)
    held.broker = node.broker
    held.redis = new Redis(6379, '127.0.0.1')
  })
  afterAll(async () => {
    held.redis?.disconnect()
    await node?.stop()
  })
  return held
}
