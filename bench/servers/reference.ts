import type { Server, ServerWebSocket, WebSocketHandler } from 'bun'

/** chat-server's socket settings (no compression, the same backpressure limit and idle timeout), for every reference server. */
export const SOCKET_SETTINGS = {
  maxPayloadLength: 65536,
  backpressureLimit: Number(process.env.MAX_BUFFERED_BYTES ?? 64 * 1024 * 1024),
  closeOnBackpressureLimit: false,
  idleTimeout: 960,
  sendPings: true,
  perMessageDeflate: false,
} satisfies Partial<WebSocketHandler<unknown>>

/** Tells the bench the port (bench/lib/proc.ts waits for `listening`) and stops on SIGTERM / SIGINT. */
export function announce(kind: string, server: Server<unknown>) {
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: server.port, kind })}\n`)
  const shutdown = () => {
    server.stop(true)
    process.exit(0)
  }
  process.on('SIGTERM', shutdown)
  process.on('SIGINT', shutdown)
}

/**
 * The reference servers of the bench (bare.ts, floor.ts): one Bun.serve whose clients all
 * subscribe to one topic, with chat-server's socket settings. `onMessage` is what the server
 * does with a frame.
 */
export function referenceServer(
  kind: string,
  onMessage: (ws: ServerWebSocket<undefined>, message: string | Buffer, publish: (frame: string | Buffer) => void) => void,
) {
  const topic = 'r:general'
  const server = Bun.serve({
    hostname: process.env.HOST ?? '127.0.0.1',
    port: Number(process.env.PORT ?? 0),
    fetch(req, srv) {
      if (srv.upgrade(req, { data: undefined })) return
      return new Response(`${kind} reference server`, { status: 200 })
    },
    websocket: {
      ...SOCKET_SETTINGS,
      open(ws) {
        ws.subscribe(topic)
      },
      message(ws, message) {
        onMessage(ws, message, publish)
      },
    },
  })
  const publish = (frame: string | Buffer) => server.publish(topic, frame)
  announce(kind, server)
  return server
}
