/**
 * A variant of the bare server for bench/idle-memory.ts: the same socket settings behind an
 * Elysia `.ws()` route (what chat-server used for /ws until issue 15). REPLACE=1 swaps the
 * socket's data for a small object at open, as chat-server did. Measures what Elysia's upgrade
 * leaves per socket:
 *   bun run bench/idle-memory.ts --kind=bare --entry=$PWD/bench/servers/elysia-min.ts [--env=REPLACE=1]
 */
import { Elysia } from 'elysia'
const app = new Elysia({
  websocket: {
    maxPayloadLength: 65536,
    backpressureLimit: 256 * 2 ** 20,
    closeOnBackpressureLimit: false,
    idleTimeout: 960,
    sendPings: true,
    perMessageDeflate: false,
  },
})
  .ws('/ws', {
    async beforeHandle() {},
    open(ws) {
      ws.raw.subscribe('r:general')
      if (process.env.REPLACE) (ws.raw as { data: unknown }).data = { message() {}, close() {} }
    },
    message() {},
  })
  .listen({ port: 0, hostname: '127.0.0.1' })
process.stdout.write(`${JSON.stringify({ msg: 'listening', port: app.server!.port })}\n`)
