import type { test as bunTest } from 'bun:test'
import { memoryBroker } from '../../src/broker/memory'
import { redisBroker } from '../../src/broker/redis'
import { redisConnections } from '../../src/broker/redis-connect'
import { singleNode } from '../../src/cluster/heartbeat'
import type { Broker, Position } from '../../src/broker/types'
import { postgresStore } from '../../src/store/postgres'
import { freshDatabase } from '../helpers/postgres'
import { needRedisBinaries, startRedisCluster } from '../helpers/redis-cluster'
import { dropRedisPrefix, needService } from '../helpers/services'

/** The limits every engine of the suite is made with, so that the cases can reach them. */
export const LIMITS = { historyLimit: 40, perMessage: 3, perUser: 2, maxRooms: 64, pinsPerRoom: 3 }

/** One engine under test, started, with what the cases need to observe it. */
export interface EngineUnderTest {
  broker: Broker
  /** Frames handed to this node, per topic, in order. */
  delivered: Map<string, string[]>
  /** Rooms whose sequence restarted under this node (the broker's `reset`). */
  resets: { room: string; pos: Position }[]
  /** Makes the engine lose everything it holds of an unwatched room (Redis restarted empty, a memory room evicted). */
  forget(room: string): Promise<void>
  close(): Promise<void>
}

export interface EngineFactory {
  name: string
  /** `test`, or a skip (a failure under CI=true) when the engine's service is absent. */
  test: typeof bunTest
  /** A store of record keeps every room's sequence: a room the engine forgets goes on where it was. */
  durable?: boolean
  start(): Promise<EngineUnderTest>
}

const caps = { perMessage: LIMITS.perMessage, perUser: LIMITS.perUser, pinsPerRoom: LIMITS.pinsPerRoom }

async function started(broker: Broker, forget: (room: string) => Promise<void>, close: () => Promise<void>): Promise<EngineUnderTest> {
  const delivered = new Map<string, string[]>()
  const resets: EngineUnderTest['resets'] = []
  await broker.start(
    (topic, frame) => {
      let list = delivered.get(topic)
      if (!list) delivered.set(topic, (list = []))
      list.push(frame)
    },
    (room, pos) => resets.push({ room, pos }),
  )
  return {
    broker,
    delivered,
    resets,
    forget,
    async close() {
      await broker.close()
      await close()
    },
  }
}

/** The memory engine forgets the least recently active unwatched room past MAX_ROOMS. */
function memoryForget(broker: Broker) {
  let n = 0
  return async (room: string) => {
    const tag = `${room}-evictor-${n++}`
    for (let i = 0; i <= LIMITS.maxRooms; i++) await broker.position(`${tag}-${i}`)
  }
}

function redisEngine(name: string, test: typeof bunTest, url: () => string, cluster: boolean): EngineFactory {
  return {
    name,
    test,
    async start() {
      const prefix = `conf-${process.pid}-${Date.now().toString(36)}-${cluster ? 'c' : 'r'}:`
      const connections = redisConnections(url(), cluster)
      const nodeId = `conf-${cluster ? 'c' : 'r'}`
      const broker = redisBroker({
        redis: connections,
        nodes: singleNode(nodeId),
        cluster,
        prefix,
        nodeId,
        historyLimit: LIMITS.historyLimit,
        reactionCaps: caps,
      })
      const client = connections.cmd
      // Redis lost the room (restarted empty, or the keys expired): its sequence state goes.
      const forget = async (room: string) => {
        for (const s of ['state', 'log', 'msgs', 'msgorder']) await client.del(`${prefix}{${room}}:${s}`)
      }
      return started(broker, forget, async () => {
        connections.close()
        if (!cluster) await dropRedisPrefix(prefix)
      })
    },
  }
}

/**
 * Every engine the server can run on: memory, memory with PostgreSQL as the store of record,
 * one Redis, and a real Redis Cluster this file starts itself.
 */
export async function engines(): Promise<{ factories: EngineFactory[]; stop(): Promise<void> }> {
  const redisTest = await needService('Redis', 6379)
  const pgTest = await needService('PostgreSQL', 5432)
  const clusterTest = needRedisBinaries()
  let cluster: Awaited<ReturnType<typeof startRedisCluster>> | undefined
  const dbs: { drop(): Promise<void> }[] = []

  const factories: EngineFactory[] = [
    {
      name: 'memory',
      test: (await import('bun:test')).test,
      async start() {
        const broker = memoryBroker({ historyLimit: LIMITS.historyLimit, maxRooms: LIMITS.maxRooms, reactionCaps: caps })
        return started(broker, memoryForget(broker), async () => {})
      },
    },
    {
      name: 'memory with PostgreSQL',
      test: pgTest,
      durable: true,
      async start() {
        const db = await freshDatabase('conformance')
        dbs.push(db)
        const store = await postgresStore({ dsn: db.dsn, nodeId: 'conf-pg' })
        const broker = memoryBroker({
          historyLimit: LIMITS.historyLimit,
          maxRooms: LIMITS.maxRooms,
          reactionCaps: caps,
          origin: store.origin,
          store,
          loadMessages: (room, ids) => store.messages(room, ids),
        })
        return started(broker, memoryForget(broker), () => store.close(2000))
      },
    },
    redisEngine('Redis', redisTest, () => 'redis://127.0.0.1:6379', false),
    redisEngine('Redis Cluster', clusterTest, () => cluster!.url, true),
  ]
  // The cluster is started on first use (a skipped engine starts nothing).
  const clusterFactory = factories[3]!
  const start = clusterFactory.start
  clusterFactory.start = async () => {
    cluster ??= await startRedisCluster()
    return start()
  }
  return {
    factories,
    async stop() {
      await cluster?.stop()
      for (const db of dbs) await db.drop()
    },
  }
}
