import type { Broker } from '../broker/types'
import { roomTopic } from '../broker/types'
import type { Config } from '../config'
import type { User } from '../core/identity'
import { roomMatches } from '../core/room'
import { pusherChannelTopic, pusherUserTopic } from '../core/topic'
import type { Door } from '../hub/admission'
import { log } from '../log'
import type { Metrics } from '../metrics'
import { frames } from '../protocol/server-frames'
import type { Occupancy } from './occupancy'
import { CODE, LIMITS, USER_CHANNEL_PREFIX, channelKind, channelProblem, presenceData, pusherFrames, validAuth } from './protocol'
import { clientEventBucket, refusalCode } from './socket'
import type { PusherSocket, Sub } from './socket'
import type { PusherHooks } from './webhooks'

export interface ChannelsDeps {
  config: Config
  broker: Broker
  metrics: Metrics
  /** The one door: a signed-in user counts against MAX_CONNECTIONS_PER_USER. */
  door: Door
  /** Subscribers of each channel, cluster-wide (channel_occupied / channel_vacated, the HTTP API's counts). */
  occupancy: Occupancy
  /** Pusher's webhooks (PUSHER_WEBHOOK_URL); absent when off. */
  hooks: PusherHooks | undefined
}

/** Channels and signed-in users of this node's Pusher sockets. */
export interface PusherChannels {
  /** This node's live subscribers of each room (the fan-out publishes to them). */
  readonly subs: ReadonlyMap<string, ReadonlySet<PusherSocket>>
  /** This node's signed-in sockets of each user (their Pusher user topic). */
  readonly signedIn: ReadonlyMap<string, ReadonlySet<PusherSocket>>
  subscribe(s: PusherSocket, data: Record<string, unknown>): Promise<void>
  unsubscribe(s: PusherSocket, room: string): void
  signin(s: PusherSocket, data: Record<string, unknown>): Promise<void>
  clientEvent(s: PusherSocket, event: string, channel: unknown, data: unknown): Promise<void> | void
  /** A socket closed: every channel and its user given back. */
  leave(s: PusherSocket): void
}

/**
 * Subscribe and unsubscribe (public rooms, signatures, presence members), sign-in and client
 * events: a channel X is the room X, watched through the broker, its presence the broker's.
 */
export function pusherChannels(deps: ChannelsDeps): PusherChannels {
  const { config, broker, metrics, door, occupancy, hooks } = deps
  const key = config.PUSHER_KEY!
  const secret = config.PUSHER_SECRET!
  /** Rooms whose public channels anyone with the key may read (auth off: all, as every room is open to /ws too). */
  const publicRooms = config.PUSHER_PUBLIC_ROOMS ?? (config.authMode === 'off' ? ['*'] : [])
  const subs = new Map<string, Set<PusherSocket>>()
  const signedIn = new Map<string, Set<PusherSocket>>()

  const counted = (p: Promise<unknown>, what: string) => p.catch((err) => log.warn(`pusher: ${what}`, { err }))

  /** A refused subscription: `pusher:error` for the connection, `pusher:subscription_error` for the channel. */
  function refuse(s: PusherSocket, channel: string, message: string, code: number | null = null, status = 400) {
    s.send(pusherFrames.error(code, message))
    s.send(pusherFrames.subscriptionError(channel, message, status))
  }

  async function subscribe(s: PusherSocket, data: Record<string, unknown>) {
    const channel = data.channel
    if (typeof channel === 'string' && channel.startsWith(USER_CHANNEL_PREFIX)) {
      if (s.user === undefined || channel !== USER_CHANNEL_PREFIX + s.user)
        return refuse(s, channel, `channel: ${channel} is the channel of a signed-in user (pusher:signin first)`, CODE.unauthorized, 403)
      return s.send(pusherFrames.succeeded(channel, '{}'))
    }
    const problem = channelProblem(channel)
    if (problem) return refuse(s, typeof channel === 'string' ? channel : '', problem)
    const room = channel as string
    const kind = channelKind(room)
    // The key ships in every browser: with auth on, a public channel would let anyone read a
    // room that JWT rules protect, so only the rooms PUSHER_PUBLIC_ROOMS names are public.
    if (kind === 'public' && !roomMatches(publicRooms, room)) {
      metrics.authRefused.labels({ reason: 'pusher_public_room' }).inc()
      return refuse(
        s,
        room,
        `channel: ${room} is not a public channel on this server (PUSHER_PUBLIC_ROOMS): use a private- channel your auth endpoint signs`,
        CODE.unauthorized,
        403,
      )
    }
    let member: User | undefined
    if (kind !== 'public') {
      const channelData = data.channel_data
      if (kind === 'presence') {
        if (typeof channelData !== 'string')
          return refuse(s, room, `channel_data: required to subscribe to ${room}`, CODE.unauthorized, 401)
        if (channelData.length > LIMITS.userData) return refuse(s, room, `channel_data: must be at most ${LIMITS.userData} bytes`)
      }
      const signed = kind === 'presence' ? `${s.id}:${room}:${channelData}` : `${s.id}:${room}`
      if (!validAuth(data.auth, key, secret, signed)) {
        metrics.authRefused.labels({ reason: 'pusher_signature' }).inc()
        return refuse(
          s,
          room,
          `auth: invalid signature for ${room} (HMAC-SHA256 of "socket_id:channel${kind === 'presence' ? ':channel_data' : ''}" with the app secret)`,
          CODE.unauthorized,
          401,
        )
      }
      if (kind === 'presence') {
        let parsed: { user_id?: unknown; user_info?: { name?: unknown } }
        try {
          parsed = JSON.parse(channelData as string)
        } catch {
          return refuse(s, room, 'channel_data: not valid JSON')
        }
        const id = parsed?.user_id
        if ((typeof id !== 'string' && typeof id !== 'number') || String(id) === '' || String(id).length > LIMITS.userId)
          return refuse(s, room, `channel_data: user_id must be a string or number of 1..${LIMITS.userId} characters`)
        const name = parsed.user_info?.name
        member = { id: String(id), name: typeof name === 'string' && name !== '' ? name : String(id) }
      }
    }
    const existing = s.channels.get(room)
    if (existing) {
      if (existing.live) s.send(pusherFrames.succeeded(room, existing.member ? presenceData(await broker.presence.list(room)) : '{}'))
      return
    }
    const sub: Sub = { kind, member, live: false }
    s.channels.set(room, sub)
    const topic = roomTopic(room)
    try {
      await broker.watch(topic)
    } catch (err) {
      broker.unwatch(topic)
      s.channels.delete(room)
      throw err
    }
    if (s.closed || s.channels.get(room) !== sub) return void broker.unwatch(topic)
    s.ws.subscribe(pusherChannelTopic(room))
    sub.live = true
    let set = subs.get(room)
    if (!set) subs.set(room, (set = new Set()))
    set.add(s)
    // Counted before subscription_succeeded: a client that is told it is in may ask GET /channels
    // at once, and with Redis an unawaited count could still be on its way.
    await counted(
      occupancy.change(room, 1).then((first) => first && hooks?.emit({ name: 'channel_occupied', channel: room })),
      'occupancy not counted',
    )
    if (!member) return void (s.channels.get(room) === sub && s.send(pusherFrames.succeeded(room, '{}')))
    // Cluster-wide presence: the broker's, the same chat-server clients of the room are in.
    const first = await broker.presence.add(room, member, s.id)
    if (first) {
      await broker.relay(topic, frames.presenceEvent(room, 'join', member), s.id)
      hooks?.emit({ name: 'member_added', channel: room, user_id: member.id })
    }
    if (s.channels.get(room) === sub) s.send(pusherFrames.succeeded(room, presenceData(await broker.presence.list(room))))
  }

  function unsubscribe(s: PusherSocket, room: string) {
    const sub = s.channels.get(room)
    if (!sub) return
    s.channels.delete(room)
    // Not live yet: the subscription in progress sees it gone and gives its watch back.
    if (!sub.live) return
    if (!s.closed) s.ws.unsubscribe(pusherChannelTopic(room))
    const set = subs.get(room)
    set?.delete(s)
    if (set?.size === 0) subs.delete(room)
    const topic = roomTopic(room)
    broker.unwatch(topic)
    void counted(
      occupancy.change(room, -1).then((last) => last && hooks?.emit({ name: 'channel_vacated', channel: room })),
      'occupancy not counted',
    )
    const m = sub.member
    if (m)
      void counted(
        broker.presence.remove(room, m.id, s.id).then(async (last) => {
          if (!last) return
          await broker.relay(topic, frames.presenceEvent(room, 'leave', m))
          hooks?.emit({ name: 'member_removed', channel: room, user_id: m.id })
        }),
        'presence not removed',
      )
  }

  async function signin(s: PusherSocket, data: Record<string, unknown>) {
    const userData = data.user_data
    if (
      typeof userData !== 'string' ||
      userData.length > LIMITS.userData ||
      !validAuth(data.auth, key, secret, `${s.id}::user::${userData}`)
    ) {
      metrics.authRefused.labels({ reason: 'pusher_signature' }).inc()
      return s.fail(CODE.unauthorized, 'pusher:signin: invalid signature (HMAC-SHA256 of "socket_id::user::user_data" with the app secret)')
    }
    let id: unknown
    try {
      id = JSON.parse(userData)?.id
    } catch {}
    if ((typeof id !== 'string' && typeof id !== 'number') || String(id) === '' || String(id).length > LIMITS.userId)
      return s.fail(CODE.unauthorized, `user_data: needs an id of 1..${LIMITS.userId} characters`)
    if (s.user !== undefined) return s.send(pusherFrames.error(null, 'pusher:signin: this connection is signed in already'))
    const user = String(id)
    s.user = user // at once: a second signin meanwhile is refused above
    // A signed-in user counts against MAX_CONNECTIONS_PER_USER like a /ws connection of theirs;
    // refused, this socket is closed and the user's others stay.
    const over = await door.admitUser(s, user)
    if (over) return s.fail(...refusalCode(over))
    if (s.closed) return
    let set = signedIn.get(user)
    if (!set) signedIn.set(user, (set = new Set()))
    set.add(s)
    await broker.watch(pusherUserTopic(user))
    if (s.closed) return
    s.ws.subscribe(pusherUserTopic(user))
    s.send(pusherFrames.signinSuccess(userData))
  }

  function clientEvent(s: PusherSocket, event: string, channel: unknown, data: unknown) {
    const reject = (why: string) => s.send(pusherFrames.error(CODE.clientEventRejected, `${event.slice(0, 80)}: ${why}`))
    if (!config.PUSHER_CLIENT_EVENTS) return reject('client events are off on this server (PUSHER_CLIENT_EVENTS=false)')
    if (event.length > LIMITS.eventName) return reject(`event: a name has at most ${LIMITS.eventName} characters`)
    const room = typeof channel === 'string' ? channel : ''
    const sub = s.channels.get(room)
    if (!sub?.live) return reject(`channel: not subscribed to ${JSON.stringify(room.slice(0, 80))}`)
    if (sub.kind === 'public') return reject('client events are only allowed on private and presence channels')
    if (sub.kind === 'encrypted') return reject('client events are not allowed on encrypted channels')
    if (!clientEventBucket.take(s.events)) {
      metrics.rateLimited.inc()
      return reject(`rate limit: at most ${LIMITS.clientEventsPerSec} client events a second`)
    }
    const dataJson = JSON.stringify(data ?? {})
    if (dataJson.length > LIMITS.eventBytes) return reject(`data: at most ${LIMITS.eventBytes} bytes`)
    hooks?.emit({
      name: 'client_event',
      channel: room,
      event,
      data: typeof data === 'string' ? data : dataJson,
      socket_id: s.id,
      ...(sub.member ? { user_id: sub.member.id } : {}),
    })
    return broker.relay(roomTopic(room), frames.pusher(room, event, dataJson, sub.member?.id), s.id)
  }

  function leave(s: PusherSocket) {
    for (const channel of [...s.channels.keys()]) unsubscribe(s, channel)
    // In the set once its user topic is watched (a sign-in refused by the door never was).
    const set = s.user === undefined ? undefined : signedIn.get(s.user)
    if (set?.delete(s)) {
      if (set.size === 0) signedIn.delete(s.user!)
      broker.unwatch(pusherUserTopic(s.user!))
    }
  }

  return { subs, signedIn, subscribe, unsubscribe, signin, clientEvent, leave }
}
