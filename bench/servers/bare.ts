/**
 * The reference ceiling: a bare Bun.serve WebSocket server. Every client subscribes to one
 * topic on open; every message received is handed as-is to `server.publish` on that topic.
 * No parsing, validation, ids, timestamps or metrics: what Bun's native fan-out costs alone.
 * Same socket settings as chat-server (see reference.ts).
 */
import { referenceServer } from './reference'

referenceServer('bare', (_ws, message, publish) => publish(message))
