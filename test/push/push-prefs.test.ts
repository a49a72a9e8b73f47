import { afterAll, describe, expect } from 'bun:test'
import type { test as bunTest } from 'bun:test'
import Redis from 'ioredis'
import { memoryMembers } from '../../src/members/memory'
import { postgresMembers } from '../../src/members/postgres'
import { redisMembers } from '../../src/members/redis'
import type { Device, Members } from '../../src/members/types'
import { migrate } from '../../src/store/migrate'
import { freshDatabase } from '../helpers/postgres'
import { dropRedisPrefix, needService } from '../helpers/services'
import { needRedisBinaries, startRedisCluster } from '../helpers/redis-cluster'
import type { RedisCluster } from '../helpers/redis-cluster'
import { redisConnection } from '../../src/broker/redis-connect'

/**
 * Devices, notify levels and blocks: the same cases on each memberships engine (memory, Redis,
 * PostgreSQL), against the real services.
 */

const fcm = (device: string, token = `tok-${device}`): Device => ({ device, kind: 'fcm', token, updated: new Date().toISOString() })
const web = (device: string): Device => ({
  device,
  kind: 'webpush',
  subscription: { endpoint: `https://push.example/${device}`, keys: { p256dh: 'BP'.padEnd(87, 'A'), auth: 'A'.repeat(22) } },
  updated: new Date().toISOString(),
})
const sorted = (a: string[]) => [...a].sort()

function suite(name: string, make: () => Promise<Members>, test: typeof bunTest) {
  describe(name, () => {
    test('devices: added, replaced, bounded, removed; listed with their address', async () => {
      const m = await make()
      expect(await m.putDevice('u1', fcm('a'), 2)).toBe('added')
      expect(await m.putDevice('u1', web('b'), 2)).toBe('added')
      expect(await m.putDevice('u1', fcm('c'), 2)).toBe('limit')
      expect(await m.putDevice('u1', fcm('a', 'new'), 2)).toBe('updated')
      const list = (await m.devices('u1')).sort((x, y) => (x.device < y.device ? -1 : 1))
      expect(list.map((d) => [d.device, d.kind, d.token ?? d.subscription?.endpoint])).toEqual([
        ['a', 'fcm', 'new'],
        ['b', 'webpush', 'https://push.example/b'],
      ])
      expect(list[1]!.subscription!.keys.auth).toBe('A'.repeat(22))
      expect(await m.removeDevice('u1', 'a')).toBe(true)
      expect(await m.removeDevice('u1', 'a')).toBe(false)
      expect((await m.devices('u1')).map((d) => d.device)).toEqual(['b'])
      expect(await m.devices('nobody')).toEqual([])
    })

    test('pushable: the members of a room with a device, following devices and memberships', async () => {
      const m = await make()
      for (const u of ['p1', 'p2', 'p3']) await m.add('room-p', { id: u, name: u }, 0, 100)
      expect(await m.pushable('room-p')).toEqual([])
      await m.putDevice('p1', fcm('x'), 5)
      await m.putDevice('p4', fcm('x'), 5) // not a member
      expect(await m.pushable('room-p')).toEqual(['p1'])
      await m.add('room-p', { id: 'p4', name: 'p4' }, 0, 100) // a member with a device already
      await m.putDevice('p2', fcm('y'), 5)
      await m.putDevice('p2', fcm('z'), 5)
      expect(sorted(await m.pushable('room-p'))).toEqual(['p1', 'p2', 'p4'])
      await m.removeDevice('p2', 'y')
      expect(sorted(await m.pushable('room-p'))).toEqual(['p1', 'p2', 'p4']) // one device left
      await m.removeDevice('p2', 'z')
      await m.remove('room-p', 'p4')
      expect(await m.pushable('room-p')).toEqual(['p1'])
      expect(await m.pushable('room-none')).toEqual([])
    })

    test('notify levels per member of a room; all is the default', async () => {
      const m = await make()
      await m.setNotify('room-n', 'n1', 'none')
      await m.setNotify('room-n', 'n2', 'mentions')
      await m.setNotify('room-other', 'n3', 'none')
      expect(Object.fromEntries(await m.notifyLevels('room-n', ['n1', 'n2', 'n3']))).toEqual({ n1: 'none', n2: 'mentions' })
      await m.setNotify('room-n', 'n1', 'all')
      await m.setNotify('room-n', 'n2', 'none')
      expect(Object.fromEntries(await m.notifyLevels('room-n', ['n1', 'n2']))).toEqual({ n2: 'none' })
      expect((await m.notifyLevels('room-n', [])).size).toBe(0)
    })

    test('blocks: by user, listed, and who of some recipients blocks a sender', async () => {
      const m = await make()
      expect(await m.block('b1', 'spam')).toBe(true)
      expect(await m.block('b1', 'spam')).toBe(false)
      await m.block('b1', 'other')
      await m.block('b2', 'spam')
      expect(await m.blocks('b1')).toEqual(['other', 'spam'])
      expect(sorted([...(await m.blocking('spam', ['b1', 'b2', 'b3']))])).toEqual(['b1', 'b2'])
      expect([...(await m.blocking('other', ['b2', 'b3']))]).toEqual([])
      expect(await m.unblock('b1', 'spam')).toBe(true)
      expect(await m.unblock('b1', 'spam')).toBe(false)
      expect([...(await m.blocking('spam', ['b1', 'b2']))]).toEqual(['b2'])
      expect(await m.blocks('b3')).toEqual([])
    })
  })
}

suite('memory engine', async () => memoryMembers(), (await import('bun:test')).test)

const redisTest = await needService('Redis', 6379)
const prefix = `push-prefs-${process.pid}-${Date.now().toString(36)}:`
const clients: Redis[] = []
let n = 0
suite(
  'Redis engine',
  async () => {
    const r = new Redis('redis://127.0.0.1:6379')
    clients.push(r)
    return redisMembers(r, `${prefix}${++n}:`)
  },
  redisTest,
)

// A Redis Cluster: every key of the engine must sit in the slot its commands and scripts expect.
const clusterTest = needRedisBinaries()
let cluster: RedisCluster | undefined
let clusterClient: Redis | undefined
suite(
  'Redis Cluster engine',
  async () => {
    if (!cluster) {
      cluster = await startRedisCluster()
      clusterClient = redisConnection(cluster.url, true, 'command')
      await clusterClient.connect()
    }
    return redisMembers(clusterClient!, `${prefix}c${++n}:`)
  },
  ((name: string, fn: () => Promise<void>) => clusterTest(name, fn, 60_000)) as unknown as typeof bunTest,
)

const pgTest = await needService('PostgreSQL', 5432)
let db: Awaited<ReturnType<typeof freshDatabase>> | undefined
suite(
  'PostgreSQL engine',
  async () => {
    // One database, fresh tables per case.
    if (!db) {
      db = await freshDatabase('pushprefs')
      await migrate(db.sql)
    }
    await db.sql`truncate push_devices, push_notify, blocks, memberships, users`
    return postgresMembers(db.sql)
  },
  pgTest,
)

afterAll(async () => {
  for (const c of clients) c.disconnect()
  clusterClient?.disconnect()
  await cluster?.stop()
  await dropRedisPrefix(prefix)
  await db?.drop()
})
