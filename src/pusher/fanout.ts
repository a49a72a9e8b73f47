import type { Server } from 'bun'
import type { Config } from '../config'
import type { User } from '../core/identity'
import { isPusherUserTopic, pusherChannelTopic, topicPusherUser, topicRoom } from '../core/topic'
import type { DeliveryHook } from '../hub/hub'
import type { Metrics } from '../metrics'
import { CONTROL_HEAD, PUSHER_HEAD, isMessageFrame } from '../protocol/server-frames'
import type { PusherChannels } from './channels'
import { CODE, channelKind, pusherFrames } from './protocol'
import type { PusherSocket } from './socket'

export interface FanOutDeps {
  config: Config
  metrics: Metrics
  server: () => Server<unknown>
  /** This node's open Pusher sockets, by socket id (the one named by `except` is skipped). */
  sockets: ReadonlyMap<string, PusherSocket>
  channels: Pick<PusherChannels, 'subs' | 'signedIn'>
  /** The same frame to this node's HTTP fallback sessions of the topic (http-transports.ts; Bun's topics carry WebSockets only). */
  http?: { publish(topic: string, frame: string, except: string | undefined): void }
}

/** A frame of the room's topic as Pusher subscribers see it (made once per frame). */
function asPusher(room: string, frame: string): string | undefined {
  if (frame.startsWith(PUSHER_HEAD)) {
    const f = JSON.parse(frame) as { event: string; data: unknown; user_id?: string }
    return pusherFrames.event(room, f.event, JSON.stringify(f.data), f.user_id)
  }
  const end = frame.indexOf('"', 9)
  const type = frame.slice(9, end)
  if (type === 'presence' && channelKind(room) === 'presence') {
    const f = JSON.parse(frame) as { event?: 'join' | 'leave'; user?: User }
    if (!f.event || !f.user) return undefined
    return pusherFrames.member(room, f.event === 'join' ? 'added' : 'removed', f.user.id, f.user.name)
  }
  // Any other frame of the room (chat, edit, delete, react, moderation, typing, read,
  // presence): an event named after its type, its data the chat-server frame as JSON text.
  return `{"event":"${type}","channel":${JSON.stringify(room)},"data":${JSON.stringify(frame)}}`
}

/**
 * The hub's delivery hook of the Pusher face: every frame the node delivers on `r:X` is turned
 * once into its Pusher frame and published once on Bun's topic `p:X` (Bun hands one encoded
 * frame to every subscriber of a topic, so the two faces cannot share one); a signed-in user's
 * `pu:` topic is this face's alone.
 */
export function pusherFanOut(deps: FanOutDeps): DeliveryHook {
  const { config, metrics, sockets } = deps
  const { subs, signedIn } = deps.channels

  /** Publishes once on the Pusher topic, skipping the socket named by `except` when it is here. */
  function publish(topic: string, frame: string, except: string | undefined, set: ReadonlySet<PusherSocket> | undefined) {
    const skip = except ? sockets.get(except) : undefined
    const status = skip && !skip.closed ? skip.ws.publish(topic, frame) : deps.server().publish(topic, frame)
    deps.http?.publish(topic, frame, except)
    if (status === 0 && set)
      for (const s of set)
        if (s.ws.getBufferedAmount() + frame.length > config.MAX_BUFFERED_BYTES)
          s.fail(CODE.overCapacity, 'slow consumer: the connection could not keep up')
  }

  return {
    // A signed-in user's topic is this face's alone.
    owns: isPusherUserTopic,
    deliver(topic, frame, except) {
      const user = topicPusherUser(topic)
      if (user !== undefined) {
        if (frame.startsWith(CONTROL_HEAD)) {
          const cmd = JSON.parse(frame) as { ctl: string; code?: number; reason?: string }
          if (cmd.ctl === 'close')
            for (const s of signedIn.get(user) ?? []) s.fail(cmd.code ?? CODE.unauthorized, cmd.reason ?? 'connection terminated')
          return
        }
        return publish(topic, frame, except, signedIn.get(user))
      }
      const room = topicRoom(topic)
      if (room === undefined) return
      const set = subs.get(room)
      if (!set) return
      const out = asPusher(room, frame)
      if (out === undefined) return
      publish(pusherChannelTopic(room), out, except, set)
      if (isMessageFrame(frame)) metrics.delivered.inc(set.size)
    },
  }
}
