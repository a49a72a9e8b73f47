import { describe, expect, setDefaultTimeout, test } from 'bun:test'
import net from 'node:net'
import { testNodes } from '../helpers/nodes'
import { browserKeys, until, webPushReceiver } from '../helpers/push-receivers'
import type { RunningServer } from '../helpers/server'
import { dropRedisPrefix, needService } from '../helpers/services'

/**
 * Issue 32, item 4, end to end (a real server process, real loopback listeners): one device
 * whose endpoint accepts the connection and never answers holds up nobody else's push, on the
 * memory queue and on the Redis queue; it is retried on its own meanwhile.
 */

setDefaultTimeout(60_000)

const API_KEY = 'push-isolation-test-key-0123456789abcdef'
const { node, api, as, uid, tag } = testNodes(API_KEY)
const redisTest = await needService('Redis', 6379)
const member = async (s: RunningServer, room: string, user: string) =>
  expect((await api(s, 'PUT', `/rooms/${room}/members/${user}`, { name: user })).status).toBe(200)
const register = (s: RunningServer, user: string, endpoint: string, keys: { p256dh: string; auth: string }) =>
  api(s, 'PUT', `/users/${user}/devices/web`, { kind: 'webpush', subscription: { endpoint, keys } })

/** A TCP listener that accepts and never answers (a TLS handshake or a response that never comes). */
async function silentListener() {
  const sockets = new Set<net.Socket>()
  let accepted = 0
  const server = net.createServer((sock) => {
    accepted++
    sockets.add(sock)
    sock.on('error', () => {})
    sock.on('close', () => sockets.delete(sock))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as net.AddressInfo).port
  return {
    port,
    accepted: () => accepted,
    stop: () => {
      for (const s of sockets) s.destroy()
      server.close()
    },
  }
}

for (const queue of ['memory', 'redis'] as const)
  describe(`one stuck device does not delay the others (${queue} queue)`, () => {
    ;(queue === 'redis' ? redisTest : test)(
      "a device that never answers is retried on its own; another user's push arrives meanwhile, each time",
      async () => {
        const prefix = `test:push-isolation:${tag}:`
        const stuck = await silentListener()
        const wp = await webPushReceiver()
        try {
          const env: Record<string, string> = {
            PUSH_VAPID_PUBLIC_KEY: wp.vapid.publicKey,
            PUSH_VAPID_PRIVATE_KEY: wp.vapid.privateKey,
            PUSH_VAPID_SUBJECT: 'mailto:ops@example.com',
            PUSH_COALESCE_MS: '100',
            OUTBOUND_ALLOW: '127.0.0.1',
            ...(queue === 'redis' ? { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix } : {}),
          }
          const s = await node(env)
          const [stuckRoom, room] = [uid('stuck-room'), uid('room')]
          const [alice, eve, frank] = [uid('alice'), uid('eve'), uid('frank')]
          for (const u of [alice, eve]) await member(s, stuckRoom, u)
          for (const u of [alice, frank]) await member(s, room, u)
          // eve's device accepts the connection and never answers (any user can register one).
          expect((await register(s, eve, `http://127.0.0.1:${stuck.port}/push/eve`, browserKeys().keys)).status).toBe(201)
          const sub = wp.subscribe(`${frank}-web`)
          expect((await register(s, frank, sub.endpoint, sub.keys)).status).toBe(201)
          const a = await as(s, alice)
          await a.request({ type: 'chat', room: stuckRoom, body: 'to eve' })
          await until('the stuck endpoint connected to', () => stuck.accepted() >= 1 || undefined)
          // A push decided after the stuck one arrives while the stuck one still waits for its answer
          // (one request times out after 10 s; this wait is shorter).
          await a.request({ type: 'chat', room, body: 'to frank 1' })
          await until(
            'frank pushed while eve is stuck',
            () => wp.received.some((r) => r.sub === `${frank}-web` && r.payload.body === 'to frank 1') || undefined,
            8000,
          )
          // The stuck device is retried (its request cut by the timeout, then tried again) ...
          await until('the stuck endpoint retried', () => stuck.accepted() >= 2 || undefined, 30_000)
          // ... and another push goes by meanwhile too.
          await a.request({ type: 'chat', room, body: 'to frank 2' })
          await until(
            'frank pushed again',
            () => wp.received.some((r) => r.sub === `${frank}-web` && r.payload.body === 'to frank 2') || undefined,
            8000,
          )
          expect(wp.problems).toEqual([])
          a.close()
        } finally {
          stuck.stop()
          wp.stop()
          if (queue === 'redis') await dropRedisPrefix(prefix)
        }
      },
    )
  })
