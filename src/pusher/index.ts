import type { Server } from 'bun'
import type { Ledger } from '../cluster/ledger'
import type { Broker } from '../broker/types'
import { roomTopic } from '../broker/types'
import type { Config } from '../config'
import { isPusherHttpNodeTopic, isPusherUserTopic, pusherHttpNodeTopic, pusherUserTopic } from '../core/topic'
import type { Door } from '../hub/admission'
import type { DeliveryHook, DrainHook } from '../hub/hub'
import { sessionRelay } from '../hub/session-relay'
import type { Metrics } from '../metrics'
import { control, frames } from '../protocol/server-frames'
import { pusherChannels } from './channels'
import type { PusherChannels } from './channels'
import { pusherFanOut } from './fanout'
import { pusherApi } from './http-api'
import { httpTransports } from './http-transports'
import type { HttpRoute } from './http-transports'
import { ledgerOccupancy } from './occupancy'
import type { Occupancy } from './occupancy'
import { CODE, USER_CHANNEL_PREFIX, pusherFrames } from './protocol'
import { pusherSockets } from './socket'
import type { ClientFrame, PusherSocket } from './socket'
import { pusherHooks } from './webhooks'

export interface PusherDeps {
  config: Config
  broker: Broker
  metrics: Metrics
  nodeId: string
  server: () => Server<unknown>
  /** The one door of every face (hub/admission.ts): limits, origin, connect rate, draining. */
  door: Door
  /** The node's ledger (cluster/ledger.ts): channel counts shared by every node. */
  ledger: Ledger
}

/** A Bun route of the face (Bun fills `params` from `/app/:key`, `/apps/:id/…`). */
export type PusherRoute = (
  req: Request & { params: Record<string, string> },
  server: Server<unknown>,
) => Response | undefined | Promise<Response>

/** The Pusher face as app.ts wires it: its routes, and its parts in the hub's delivery and drain (the hub's hooks). */
export interface Pusher {
  /** Bun routes for serve.routes: the WebSocket (/app/:key), pusher-js's HTTP fallbacks (/pusher/app/:key/…) and the HTTP API. */
  readonly routes: Record<string, { GET?: PusherRoute; POST?: PusherRoute | HttpRoute; OPTIONS?: HttpRoute }>
  /** Pusher connections open on this node (WebSockets and HTTP fallback sessions). */
  readonly size: number
  /** True once drain began: the door refuses new connections of every face. */
  readonly draining: boolean
  /** For `hub.onDeliver`: the hub's frames to this node's Pusher sockets (fanout.ts). */
  readonly delivery: DeliveryHook
  /** For `hub.onDrain`: every Pusher socket closed with 4200 (pusher-js reconnects, to another node) before the hub drains. */
  readonly drain: DrainHook
}

/**
 * The Pusher Channels face of the server (docs/pusher.md), put together: the connection through
 * the door (socket.ts), its events dispatched to channels, sign-in and client events
 * (channels.ts), the hub's frames out to Pusher sockets (fanout.ts), the HTTP API (http-api.ts)
 * and channel counts (occupancy.ts). Pusher sockets are sockets of the same Bun server; a
 * channel X is the room X. Pusher events go the other way as a `pusher` frame relayed on the
 * room's topic, which chat-server clients get as it is.
 */
export function createPusher(deps: PusherDeps): Pusher {
  const { config, broker, metrics, door } = deps
  const hooks = pusherHooks({ config, metrics, nodeId: deps.nodeId })
  // A channel a dead node's reaping left vacant gets its channel_vacated from that one reaper.
  const vacated = (edge: 'up' | 'down', _key: string, channel: string) =>
    edge === 'down' && hooks?.emit({ name: 'channel_vacated', channel })
  const occupancy: Occupancy = ledgerOccupancy(deps.ledger.book('pusher', vacated))

  const channels = pusherChannels({ config, broker, metrics, door, occupancy, hooks })
  const sockets = pusherSockets({ config, broker, metrics, door, dispatch: (s, f) => dispatch(channels, s, f), closed: channels.leave })

  const api = pusherApi({
    config,
    broker,
    occupancy: { count: (c) => occupancy.count(c), all: () => occupancy.all() },
    event: (room, name, dataJson, except) =>
      room.startsWith(USER_CHANNEL_PREFIX)
        ? broker.relay(pusherUserTopic(room.slice(USER_CHANNEL_PREFIX.length)), pusherFrames.event(room, name, dataJson), except)
        : broker.relay(roomTopic(room), frames.pusher(room, name, dataJson), except),
    terminate: (user) =>
      broker.relay(
        pusherUserTopic(user),
        control({ ctl: 'close', code: CODE.unauthorized, reason: 'connection terminated by the server' }),
      ),
  })

  // pusher-js's HTTP fallbacks: sessions of the same sockets, their requests relayed to the holding node (no sticky sessions).
  const http = httpTransports({
    config,
    nodeId: deps.nodeId,
    server: deps.server,
    door,
    sockets,
    relay: sessionRelay({ broker, nodeId: deps.nodeId, book: deps.ledger.book('pusher-http'), topic: pusherHttpNodeTopic }),
  })
  const fanout = pusherFanOut({ config, metrics, server: deps.server, sockets: sockets.open, channels, http })

  return {
    routes: { '/app/:key': { GET: sockets.upgrade }, ...http.routes, ...api },
    delivery: {
      // A signed-in user's topic and this node's relayed HTTP requests are this face's alone.
      owns: (topic) => isPusherUserTopic(topic) || isPusherHttpNodeTopic(topic),
      deliver: (topic, frame, except) => (isPusherHttpNodeTopic(topic) ? http.relayed(frame) : fanout.deliver(topic, frame, except)),
    },
    get size() {
      return sockets.open.size
    },
    get draining() {
      return sockets.draining
    },
    drain: {
      begin() {
        sockets.closeAll()
        http.stop()
      },
      async end(graceMs: number): Promise<number> {
        const left = await sockets.gone()
        await hooks?.stop(Math.min(2000, graceMs))
        return left
      },
    },
  }
}

/** A client's event, to what handles it. */
function dispatch(channels: PusherChannels, s: PusherSocket, f: ClientFrame): Promise<void> | void {
  const { event } = f
  const data = (f.data ?? {}) as Record<string, unknown>
  switch (event) {
    case 'pusher:ping':
      return s.send(pusherFrames.pong)
    case 'pusher:pong':
      return
    case 'pusher:subscribe':
      return channels.subscribe(s, data)
    case 'pusher:unsubscribe':
      return channels.unsubscribe(s, String(data.channel))
    case 'pusher:signin':
      return channels.signin(s, data)
  }
  if (event.startsWith('client-')) return channels.clientEvent(s, event, f.channel, f.data)
  s.send(
    pusherFrames.error(
      null,
      `event: ${JSON.stringify(event.slice(0, 80))} is not a client event (client-*) nor one of pusher:subscribe, pusher:unsubscribe, pusher:ping, pusher:signin`,
    ),
  )
}
