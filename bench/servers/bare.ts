/**
 * The reference ceiling: a bare Bun.serve WebSocket server. Every client subscribes to one
 * topic on open; every message received is handed as-is to `server.publish` on that topic.
 * No parsing, validation, ids, timestamps or metrics: what Bun's native fan-out costs alone.
 * Same socket settings as chat-server (no compression, explicit backpressure limit).
 */
const TOPIC = 'r:general'
const port = Number(process.env.PORT ?? 0)
const hostname = process.env.HOST ?? '127.0.0.1'
const limit = Number(process.env.MAX_BUFFERED_BYTES ?? 64 * 1024 * 1024)

const server = Bun.serve({
  hostname,
  port,
  fetch(req, srv) {
    if (srv.upgrade(req, { data: undefined })) return
    return new Response('bare reference server', { status: 200 })
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
    message(_ws, message) {
      server.publish(TOPIC, message)
    },
  },
})

process.stdout.write(JSON.stringify({ msg: 'listening', port: server.port, kind: 'bare' }) + '\n')
const shutdown = () => {
  server.stop(true)
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)

export {}
