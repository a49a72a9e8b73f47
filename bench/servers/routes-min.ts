/**
 * A variant of the bare server for bench/idle-memory.ts: the upgrade as a Bun route inside an
 * Elysia app (`serve.routes`, as chat-server's /ws now is), an async handler, one small data
 * object per socket:
 *   bun run bench/idle-memory.ts --kind=bare --entry=$PWD/bench/servers/routes-min.ts
 */
import { Elysia } from 'elysia'
class S {
  open(ws: any) {
    ws.subscribe('r:general')
  }
  message() {}
  close() {}
}
const app = new Elysia({
  websocket: {
    maxPayloadLength: 65536,
    backpressureLimit: 256 * 2 ** 20,
    closeOnBackpressureLimit: false,
    idleTimeout: 960,
    sendPings: true,
    perMessageDeflate: false,
  },
  serve: {
    routes: {
      '/ws': async (req: Request, server: any) => {
        await null
        if (server.upgrade(req, { data: new S() })) return undefined as never
        return new Response('no', { status: 400 })
      },
    },
  },
})
  .get('/x', () => 'x')
  .listen({ port: 0, hostname: '127.0.0.1' })
process.stdout.write(`${JSON.stringify({ msg: 'listening', port: app.server!.port })}\n`)
