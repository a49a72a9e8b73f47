import { afterAll, describe } from 'bun:test'
import type { test as bunTest } from 'bun:test'
import { needRedisBinaries, startRedisCluster } from './redis-cluster'
import type { RedisCluster } from './redis-cluster'
import type { RunningServer } from './server'
import { dropRedisPrefix, needService } from './services'

export type Suite = (name: string, nodes: () => RunningServer[], test: typeof bunTest) => void

/**
 * Runs `suite` on three nodes through the local Redis and on three nodes through a real Redis
 * Cluster the file starts itself (each node started by `node` with `env`, keys under `prefix`,
 * dropped afterwards). Returns the Redis test function (skipping, or failing with CI=true, when
 * Redis does not answer) for the file's other Redis tests.
 */
export async function onRedisAndCluster(o: {
  what: string
  node: (env: Record<string, string>) => Promise<RunningServer>
  env: Record<string, string>
  prefix: string
  suite: Suite
}) {
  const redisTest = await needService('Redis', 6379)
  const onRedis: RunningServer[] = []
  describe('three nodes through Redis', () => {
    redisTest('start', async () => {
      onRedis.push(
        ...(await Promise.all([0, 1, 2].map(() => o.node({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: o.prefix, ...o.env })))),
      )
    })
  })
  o.suite(`${o.what} across three nodes with Redis`, () => onRedis, redisTest)

  const clusterTest = needRedisBinaries()
  let redisCluster: RedisCluster | undefined
  const onCluster: RunningServer[] = []
  describe('three nodes through a Redis Cluster', () => {
    clusterTest(
      'start',
      async () => {
        redisCluster = await startRedisCluster()
        onCluster.push(
          ...(await Promise.all(
            [0, 1, 2].map(() => o.node({ REDIS_URL: redisCluster!.url, REDIS_CLUSTER: 'true', REDIS_PREFIX: o.prefix, ...o.env })),
          )),
        )
      },
      60_000,
    )
  })
  o.suite(`${o.what} across three nodes with a Redis Cluster`, () => onCluster, clusterTest)

  afterAll(async () => {
    await Promise.all(onCluster.map((s) => s.stop('SIGKILL')))
    await redisCluster?.stop()
    await dropRedisPrefix(o.prefix)
  })
  return { redisTest }
}
