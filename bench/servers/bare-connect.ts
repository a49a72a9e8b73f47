/**
 * The bare reference of scenario `connections` (bench/connections.ts, issue 34's probe): a
 * Bun.serve that subscribes each socket to one topic and sends one welcome frame, plus the
 * little the connections generator needs to run the same script on it as on chat-server:
 *   open               subscribe to `r:general`, send `welcome` and the default room's `joined`
 *   join               `joined` with the join's id (no replay: nothing is kept)
 *   chat               a chat frame of chat-server's layout (a seq of its own) to the topic, ack
 *   POST /api/publish  the JSON body's `body` as a chat frame to the topic
 * No presence, no ids, no history, no checks: what Bun itself costs for a connect.
 * Same socket settings as chat-server (see reference.ts).
 */
import { announce, SOCKET_SETTINGS } from './reference'

const TOPIC = 'r:general'
const EPOCH = '000000000000'
const ID = '00000000-0000-7000-8000-000000000000'
const TS = '2000-01-01T00:00:00.000Z'
const q = JSON.stringify
let seq = 0
let conns = 0

const chat = (from: string, body: string) =>
  `{"type":"chat","seq":${++seq},"id":"${ID}","room":"general","from":${from},"body":${q(body)},"ts":"${TS}"}`

const server = Bun.serve<{ user: string }>({
  hostname: process.env.HOST ?? '127.0.0.1',
  port: Number(process.env.PORT ?? 0),
  async fetch(req, srv) {
    const url = new URL(req.url)
    if (url.pathname === '/api/publish' && req.method === 'POST') {
      const b = (await req.json().catch(() => ({}))) as { body?: string }
      const frame = chat('{"id":"server","name":"server","system":true}', String(b.body ?? ''))
      server.publish(TOPIC, frame)
      return Response.json({ id: ID, room: 'general', seq })
    }
    if (srv.upgrade(req, { data: { user: url.searchParams.get('user') ?? 'anon' } })) return
    return new Response('bare-connect reference server', { status: 200 })
  },
  websocket: {
    ...SOCKET_SETTINGS,
    open(ws) {
      ws.subscribe(TOPIC)
      const u = q(ws.data.user)
      ws.send(`{"type":"welcome","conn":"bare-${++conns}","user":{"id":${u},"name":${u}},"node":"bare","rooms":["general"]}`)
      ws.send(`{"type":"joined","room":"general","seq":${seq},"epoch":"${EPOCH}","recovered":false}`)
    },
    message(ws, message) {
      const f = JSON.parse(String(message)) as { type?: string; body?: string; id?: string }
      const id = f.id === undefined ? '' : `,"id":${q(f.id)}`
      if (f.type === 'join')
        ws.send(`{"type":"joined","room":"general","seq":${seq},"epoch":"${EPOCH}","recovered":false,"role":"member"${id}}`)
      else if (f.type === 'chat') {
        const u = q(ws.data.user)
        server.publish(TOPIC, chat(`{"id":${u},"name":${u}}`, f.body ?? ''))
        ws.send(`{"type":"ack"${id},"msg":"${ID}","seq":${seq}}`)
      }
    },
  },
})
announce('bare-connect', server)
