/**
 * The protocol's floor: the least a server must do per message to emit chat-server's chat frame
 * (PROTOCOL.md): parse the client's JSON, check the body, give the message a seq, a UUIDv7 id and
 * an ISO time, encode the frame once and publish it. No history, no lifecycle state, no metrics,
 * no rate limit, no membership markers. Scenario 1c runs it beside bare and chat-server: what it
 * costs over bare is the cost of a sequenced, identified, timestamped message in JavaScript on
 * Bun, whoever writes the server; what chat-server costs over it is chat-server's own.
 * Same socket settings as bare.ts and chat-server (see reference.ts).
 */
import { referenceServer } from './reference'

const from = JSON.stringify({ id: 'bench-p', name: 'bench-p' })
let seq = 0

referenceServer('floor', (ws, message, publish) => {
  const f = JSON.parse(String(message)) as { type?: unknown; body?: unknown }
  if (f.type !== 'chat' || typeof f.body !== 'string') return void ws.send('{"type":"error","code":"bad_request"}')
  publish(
    `{"type":"chat","seq":${++seq},"id":"${Bun.randomUUIDv7()}","room":"general","from":${from},"body":${JSON.stringify(f.body)},"ts":"${new Date().toISOString()}"}`,
  )
})
