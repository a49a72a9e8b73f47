import { afterAll, describe, expect } from 'bun:test'
import { connect } from '../helpers/client'
import type { TestClient } from '../helpers/client'
import { needRedisBinaries, startRedisCluster } from '../helpers/redis-cluster'
import type { RedisCluster } from '../helpers/redis-cluster'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

/** A real Redis Cluster needs redis-server and redis-cli; under CI=true their absence fails. */
const test = needRedisBinaries()

const prefix = 'fo:'
let cluster: RedisCluster | undefined
const servers: RunningServer[] = []

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
  await cluster?.stop()
})

/** The port of the primary serving `key`'s slot, from CLUSTER NODES of a live instance. */
async function primaryOf(c: RedisCluster, key: string, askPort: number): Promise<number | undefined> {
  const slot = Number((await c.cli(askPort, 'cluster', 'keyslot', key)).trim())
  for (const line of (await c.cli(askPort, 'cluster', 'nodes')).split('\n')) {
    const f = line.split(' ')
    if (!f[2]?.includes('master') || f[2].includes('fail')) continue
    for (const range of f.slice(8)) {
      const [lo, hi] = range.split('-').map(Number)
      if (slot >= lo! && slot <= (hi ?? lo)!) return Number(f[1]!.split('@')[0]!.split(':')[1])
    }
  }
  return undefined // none right now (a failover under way)
}

async function member(url: string, r: string): Promise<TestClient> {
  const c = await connect(url)
  expect((await c.request({ type: 'join', room: r })).type).toBe('joined')
  return c
}

describe('Redis Cluster failover', () => {
  test('a primary killed: its replica is promoted, chat goes on, and clients recover what the new primary has', async () => {
    cluster = await startRedisCluster({ nodeTimeoutMs: 2000 })
    const env = { REDIS_URL: cluster.url, REDIS_CLUSTER: 'true', REDIS_PREFIX: prefix, RATE_LIMIT_PER_SEC: '0' }
    const [x, y] = await Promise.all([startServer({ env }), startServer({ env })])
    servers.push(x, y)
    // Two rooms on one shard: R is written after the failover, Q is not.
    const R = 'fo-written'
    const primary = (await primaryOf(cluster, `${prefix}{${R}}:state`, cluster.ports[0]!))!
    let Q = ''
    for (let i = 0; !Q; i++)
      if ((await primaryOf(cluster, `${prefix}{fo-quiet-${i}}:state`, cluster.ports[0]!)) === primary) Q = `fo-quiet-${i}`

    const sender = await member(x.ws, R)
    expect((await sender.request({ type: 'join', room: Q })).type).toBe('joined')
    const reader = await member(y.ws, R)
    const resumer = await member(y.ws, R)
    expect((await resumer.request({ type: 'join', room: Q })).type).toBe('joined')
    for (let i = 1; i <= 3; i++) await sender.request({ type: 'chat', room: R, body: `r${i}` })
    for (let i = 1; i <= 2; i++) await sender.request({ type: 'chat', room: Q, body: `q${i}` })
    await reader.next({ type: 'chat', room: R, seq: 3 })
    await resumer.next({ type: 'chat', room: Q, seq: 2 })
    const epochR = resumer.all('joined').find((f) => f.room === R)!.epoch
    const epochQ = resumer.all('joined').find((f) => f.room === Q)!.epoch
    resumer.close()
    // Let the replica catch up (replication is asynchronous), then crash the primary.
    await Bun.sleep(300)
    await cluster.kill(primary)
    await until(
      async () =>
        ![undefined, primary].includes(await primaryOf(cluster!, `${prefix}{${R}}:state`, cluster!.ports.find((p) => p !== primary)!)),
      'a replica promoted',
      20_000,
    )

    // Chat goes on: sends are refused (unavailable) until the nodes follow the new topology.
    let ack: Record<string, any> = {}
    await until(
      async () => (ack = await sender.request({ type: 'chat', room: R, body: 'after failover', id: 'fo-1' }, 4000)).type === 'ack',
      'a send accepted after the failover',
      20_000,
    )
    expect(ack.seq).toBe(4)
    // Members on the other node: the room went on in a new epoch on the new primary (it cannot
    // know whether the old one had acknowledged more), announced before its first frame.
    const reset = await reader.next((f) => f.type === 'joined' && f.room === R && f.id === undefined, 10_000)
    expect(reset).toMatchObject({ recovered: false, seq: 3 })
    expect(reset.epoch).not.toBe(epochR)
    expect(await reader.next({ type: 'chat', room: R, body: 'after failover' }, 10_000)).toMatchObject({ seq: 4 })

    // A client that missed messages: Q (not written since) recovers exactly; R's new epoch
    // says recovered:false, and its history holds everything the new primary has.
    const back = await connect(x.ws)
    expect(await back.request({ type: 'join', room: Q, since: 1, epoch: epochQ })).toMatchObject({ recovered: true, seq: 2, epoch: epochQ })
    expect(
      back
        .all('chat')
        .filter((f) => f.room === Q)
        .map((f) => f.body),
    ).toEqual(['q2'])
    expect(await back.request({ type: 'join', room: R, since: 2, epoch: epochR })).toMatchObject({
      recovered: false,
      seq: 4,
      epoch: reset.epoch,
    })
    const page = await back.request({ type: 'history', room: R })
    expect(page.messages.map((m: { body: string }) => m.body)).toEqual(['r1', 'r2', 'r3', 'after failover'])
    // And live traffic of both rooms flows on the new primary.
    await sender.request({ type: 'chat', room: Q, body: 'q3' })
    expect(await back.next({ type: 'chat', room: Q, body: 'q3' }, 5000)).toMatchObject({ seq: 3 })
    for (const s of [x, y]) expect((await fetch(`${s.url}/readyz`)).status).toBe(200)
    for (const m of [sender, reader, back]) m.close()
  }, 90_000)
})
