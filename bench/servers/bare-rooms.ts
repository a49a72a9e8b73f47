/**
 * The bare reference of scenario `small` (bench/small-rooms.ts): a Bun.serve that speaks just
 * enough of chat-server's protocol for the many-rooms generator (bench/lib/rooms.ts):
 *   join  subscribes the socket to the room's topic, answers `joined` (with the join's id)
 *   chat  publishes a chat frame to the room's topic (every member, the sender too, as
 *         chat-server does), then acks to the sender
 * The frames have the bytes count of chat-server's for the same message (its layout, a seq per
 * room, a UUID-long id, an ISO-long time), not its work: no UUIDv7, no clock, no history, no
 * checks. One JSON.parse per frame read, one socket write per delivery: the floor of what Bun
 * itself costs for this traffic. Same socket settings as chat-server (see reference.ts).
 */
import { announce, SOCKET_SETTINGS } from './reference'

interface Member {
  /** `{"id":…,"name":…}` of the user, as chat-server's `from`. */
  from: string
}

/** Placeholders of a message's id (a UUID, 36 characters) and time (toISOString, 24). */
const ID = '00000000-0000-7000-8000-000000000000'
const TS = '2000-01-01T00:00:00.000Z'
const seqs = new Map<string, number>()
const q = JSON.stringify

const server = Bun.serve<Member>({
  hostname: process.env.HOST ?? '127.0.0.1',
  port: Number(process.env.PORT ?? 0),
  fetch(req, srv) {
    const u = new URL(req.url).searchParams
    const id = u.get('user') ?? 'anon'
    if (srv.upgrade(req, { data: { from: `{"id":${q(id)},"name":${q(u.get('name') ?? id)}}` } })) return
    return new Response('bare-rooms reference server', { status: 200 })
  },
  websocket: {
    ...SOCKET_SETTINGS,
    message(ws, message) {
      const f = JSON.parse(String(message)) as { type?: string; room?: string; body?: string; id?: string }
      if (typeof f.room !== 'string') return
      if (f.type === 'join') {
        ws.subscribe(`r:${f.room}`)
        seqs.set(f.room, seqs.get(f.room) ?? 0)
        ws.send(
          `{"type":"joined","room":${q(f.room)},"seq":0,"epoch":"000000000000","recovered":false,"role":"member"${f.id === undefined ? '' : `,"id":${q(f.id)}`}}`,
        )
      } else if (f.type === 'chat') {
        const seq = (seqs.get(f.room) ?? 0) + 1
        seqs.set(f.room, seq)
        server.publish(
          `r:${f.room}`,
          `{"type":"chat","seq":${seq},"id":"${ID}","room":${q(f.room)},"from":${ws.data.from},"body":${q(f.body ?? '')},"ts":"${TS}"}`,
        )
        ws.send(`{"type":"ack"${f.id === undefined ? '' : `,"id":${q(f.id)}`},"msg":"${ID}","seq":${seq}}`)
      }
    },
  },
})
announce('bare-rooms', server)
