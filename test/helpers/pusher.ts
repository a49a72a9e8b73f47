import PusherServer from 'pusher'
import PusherJs from 'pusher-js'
import type { Channel, PresenceChannel } from 'pusher-js'
import { afterAll } from 'bun:test'
import type { RunningServer } from './server'

/** The Pusher app every test server runs (docs/pusher.md: PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET). */
export const APP = { appId: 'app-1', key: 'test-key', secret: 'test-secret-of-sufficient-length' }
/** The app's end-to-end key of private-encrypted- channels: the server never has it. */
export const MASTER_KEY = Buffer.from('0123456789abcdef0123456789abcdef').toString('base64')
export const pusherEnv = { PUSHER_APP_ID: APP.appId, PUSHER_KEY: APP.key, PUSHER_SECRET: APP.secret }

/** The Pusher server SDK pointed at a test server, as an app's backend would configure it. */
export const sdk = (s: RunningServer, secret = APP.secret) =>
  new PusherServer({
    appId: APP.appId,
    key: APP.key,
    secret,
    host: '127.0.0.1',
    port: String(s.port),
    useTLS: false,
    encryptionMasterKeyBase64: MASTER_KEY,
  })

/**
 * The app's auth endpoint, served with Bun.serve: signs channel subscriptions and user sign-ins
 * with the server SDK (authorizeChannel, authenticateUser), as an app's backend does. A
 * presence member is `user`; `refuse` makes it sign with a wrong secret.
 */
export function authEndpoint() {
  const signer = new PusherServer({
    appId: APP.appId,
    key: APP.key,
    secret: APP.secret,
    host: '127.0.0.1',
    encryptionMasterKeyBase64: MASTER_KEY,
  })
  const forger = new PusherServer({ appId: APP.appId, key: APP.key, secret: 'not-the-secret-at-all-000000', host: '127.0.0.1' })
  const server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(req) {
      const b = (await req.json()) as { socket_id: string; channel_name?: string; user?: string; name?: string; forge?: boolean }
      const s = b.forge ? forger : signer
      if (!b.channel_name) return Response.json(s.authenticateUser(b.socket_id, { id: b.user ?? 'anon', name: b.name ?? b.user }))
      const presence = b.channel_name.startsWith('presence-')
        ? { user_id: b.user ?? 'anon', user_info: { name: b.name ?? b.user } }
        : undefined
      return Response.json(s.authorizeChannel(b.socket_id, b.channel_name, presence))
    },
  })
  afterAll(() => server.stop(true))
  const url = `http://127.0.0.1:${server.port}/pusher/auth`
  const post = async (body: Record<string, unknown>) => (await fetch(url, { method: 'POST', body: JSON.stringify(body) })).json()
  return { url, post }
}

export interface PusherClient {
  pusher: PusherJs
  socketId: string
  subscribe(channel: string): Promise<Channel>
  /** Resolves with the data of the next `event` on `channel` after this call. */
  next(channel: Channel, event: string, ms?: number): Promise<any>
  close(): void
}

const opened: PusherJs[] = []
afterAll(() => {
  for (const p of opened) p.disconnect()
})

/** A port nothing listens on: pusher-js's WebSocket there is refused, as behind a proxy that breaks WebSockets. */
export const CLOSED_PORT = 9

/**
 * pusher-js (its Node build) against a test server, as an app would configure it. `transport`:
 * one of its HTTP fallbacks only (its WebSocket pointed at a closed port), on the server's `/pusher`.
 */
export async function pusherClient(
  s: RunningServer,
  auth: ReturnType<typeof authEndpoint>,
  as: { user?: string; name?: string; forge?: boolean } = {},
  transport: 'ws' | 'xhr_streaming' | 'xhr_polling' = 'ws',
): Promise<PusherClient> {
  const http = transport !== 'ws'
  const pusher = new PusherJs(APP.key, {
    wsHost: '127.0.0.1',
    wsPort: http ? CLOSED_PORT : s.port,
    httpHost: '127.0.0.1',
    httpPort: s.port,
    forceTLS: false,
    enabledTransports: [transport],
    disableStats: true,
    cluster: 'mt1',
    channelAuthorization: {
      customHandler: (p, cb) => {
        auth.post({ socket_id: p.socketId, channel_name: p.channelName, ...as }).then(
          (d) => cb(null, d),
          (e) => cb(e, null),
        )
      },
    },
    userAuthentication: {
      customHandler: (p, cb) => {
        auth.post({ socket_id: p.socketId, ...as }).then(
          (d) => cb(null, d),
          (e) => cb(e, null),
        )
      },
    },
  })
  opened.push(pusher)
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('pusher-js did not connect')), 5000)
    pusher.connection.bind('connected', () => {
      clearTimeout(t)
      resolve()
    })
  })
  return {
    pusher,
    socketId: pusher.connection.socket_id,
    subscribe: (channel) =>
      new Promise((resolve, reject) => {
        const c = pusher.subscribe(channel)
        const t = setTimeout(() => reject(new Error(`${channel}: no subscription_succeeded`)), 5000)
        c.bind('pusher:subscription_succeeded', () => {
          clearTimeout(t)
          resolve(c)
        })
        c.bind('pusher:subscription_error', (e: unknown) => {
          clearTimeout(t)
          reject(Object.assign(new Error(`${channel}: subscription_error ${JSON.stringify(e)}`), { data: e }))
        })
      }),
    next: (channel, event, ms = 5000) =>
      new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          channel.unbind(event, on)
          reject(new Error(`${channel.name}: no ${event} in ${ms} ms`))
        }, ms)
        const on = (data: unknown) => {
          clearTimeout(t)
          channel.unbind(event, on)
          resolve(data)
        }
        channel.bind(event, on)
      }),
    close: () => pusher.disconnect(),
  }
}

export type { PresenceChannel }

/** A raw WebSocket speaking the Pusher protocol, for what pusher-js never sends (forged auth, bad frames). */
export async function rawPusher(s: RunningServer, key = APP.key, protocol = 7) {
  const ws = new WebSocket(`ws://127.0.0.1:${s.port}/app/${key}?protocol=${protocol}&client=test&version=1`)
  const frames: any[] = []
  const waiters = new Set<() => void>()
  let closed: { code: number; reason: string } | undefined
  ws.onmessage = (e) => {
    const f = JSON.parse(String(e.data))
    if (typeof f.data === 'string' && f.event?.startsWith('pusher')) {
      try {
        f.data = JSON.parse(f.data)
      } catch {}
    }
    frames.push(f)
    for (const w of waiters) w()
  }
  ws.onclose = (e) => {
    closed = { code: e.code, reason: e.reason }
    for (const w of waiters) w()
  }
  const next = (match: (f: any) => boolean, ms = 5000) =>
    new Promise<any>((resolve, reject) => {
      const check = () => {
        const f = frames.find(match)
        if (f) {
          waiters.delete(check)
          clearTimeout(t)
          resolve(f)
        }
      }
      const t = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`no matching frame in ${ms} ms; got ${JSON.stringify(frames)}`))
      }, ms)
      waiters.add(check)
      check()
    })
  const closedP = () =>
    new Promise<{ code: number; reason: string }>((resolve) => {
      const check = () => closed && (waiters.delete(check), resolve(closed))
      waiters.add(check)
      check()
    })
  const first = await next((f) => f.event === 'pusher:connection_established' || f.event === 'pusher:error')
  return {
    ws,
    frames,
    next,
    closed: closedP,
    first,
    socketId: first.data?.socket_id as string,
    send: (f: unknown) => ws.send(JSON.stringify(f)),
  }
}
