/**
 * The protocol's floor: the least a server must do per message to emit chat-server's chat frame
 * (PROTOCOL.md): parse the client's JSON, check the body, give the message a seq, a UUIDv7 id and
 * an ISO time, encode the frame once and publish it. No history, no lifecycle state, no metrics,
 * no rate limit, no membership markers. Scenario 1c runs it beside bare and chat-server: what it
 * costs over bare is the cost of a sequenced, identified, timestamped message in JavaScript on
 * Bun, whoever writes the server; what chat-server costs over it is chat-server's own.
 * Same socket settings as bare.ts and chat-server.
 */
const TOPIC = 'r:general'
const port = Number(process.env.PORT ?? 0)
const hostname = process.env.HOST ?? '127.0.0.1'
const limit = Number(process.env.MAX_BUFFERED_BYTES ?? 64 * 1024 * 1024)
const from = JSON.stringify({ id: 'bench-p', name: 'bench-p' })
let seq = 0

const server = Bun.serve({
  hostname,
  port,
  fetch(req, srv) {
    if (srv.upgrade(req, { data: undefined })) return
    return new Response('protocol floor server', { status: 200 })
  },
  websocket: {
    maxPayloadLength: 65536,
    backpressureLimit: limit,
    closeOnBackpressureLimit: false,
    idleTimeout: 960,
    sendPings: true,
    perMessageDeflate: false,
    open(ws) {
      ws.subscribe(TOPIC)
    },
    message(ws, message) {
      const f = JSON.parse(String(message)) as { type?: unknown; body?: unknown }
      if (f.type !== 'chat' || typeof f.body !== 'string') return void ws.send('{"type":"error","code":"bad_request"}')
      server.publish(TOPIC, `{"type":"chat","seq":${++seq},"id":"${Bun.randomUUIDv7()}","room":"general","from":${from},"body":${JSON.stringify(f.body)},"ts":"${new Date().toISOString()}"}`)
    },
  },
})

process.stdout.write(JSON.stringify({ msg: 'listening', port: server.port, kind: 'floor' }) + '\n')
const shutdown = () => {
  server.stop(true)
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)

export {}
