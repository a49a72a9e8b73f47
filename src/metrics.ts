import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { ErrorCode } from './protocol/server-frames'

/** Every metric of the server, on a registry of its own. Label children are made once. */
export function createMetrics() {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const m = <T>(metric: T) => metric

  const connections = m(new Gauge({ name: 'chat_connections', help: 'Open WebSocket connections', registers: [registry] }))
  const rooms = m(new Gauge({ name: 'chat_rooms', help: 'Rooms with at least one member on this node', registers: [registry] }))
  const framesIn = new Counter({ name: 'chat_frames_in_total', help: 'Client frames received, by type', labelNames: ['type'], registers: [registry] })
  const framesOut = new Counter({ name: 'chat_frames_out_total', help: 'Frames sent or published by this node, by type', labelNames: ['type'], registers: [registry] })
  const published = new Counter({ name: 'chat_messages_published_total', help: 'Chat messages accepted and published', registers: [registry] })
  const delivered = new Counter({ name: 'chat_messages_delivered_total', help: 'Chat and DM frames handed to local subscribers', registers: [registry] })
  const dropped = new Counter({ name: 'chat_messages_dropped_total', help: 'Frames a slow subscriber could not take (it is then closed with 4008)', registers: [registry] })
  const errors = new Counter({ name: 'chat_errors_total', help: 'Error frames sent, by code', labelNames: ['code'], registers: [registry] })
  const rateLimited = new Counter({ name: 'chat_rate_limited_total', help: 'Frames refused by the rate limit', registers: [registry] })
  const slowConsumers = new Counter({ name: 'chat_slow_consumer_closes_total', help: 'Connections closed with 4008', registers: [registry] })
  const authRefused = new Counter({ name: 'chat_auth_refused_total', help: 'Upgrades refused by authentication, by reason', labelNames: ['reason'], registers: [registry] })
  const brokerErrors = new Counter({ name: 'chat_broker_errors_total', help: 'Broker (Redis) operations that failed', registers: [registry] })
  const storeErrors = new Counter({ name: 'chat_store_errors_total', help: 'Store (PostgreSQL) operations that failed', registers: [registry] })
  const publishLatency = new Histogram({
    name: 'chat_publish_latency_seconds',
    help: 'From a chat frame received to its publish to the room',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  })

  const byType = <L extends string>(c: Counter<L>, label: L, values: readonly string[]) =>
    Object.fromEntries(values.map((v) => [v, c.labels({ [label]: v } as Record<L, string>)]))
  const inTypes = ['chat', 'join', 'leave', 'dm', 'history', 'presence', 'typing', 'refresh', 'ping', 'invalid'] as const
  const outTypes = ['welcome', 'chat', 'dm', 'ack', 'joined', 'left', 'history', 'presence', 'typing', 'pong', 'error'] as const
  const codes: ErrorCode[] = ['bad_request', 'unauthorized', 'forbidden', 'rate_limited', 'too_large', 'unavailable', 'internal']

  return {
    registry,
    connections,
    rooms,
    framesIn: byType(framesIn, 'type', inTypes) as Record<string, Counter.Internal>,
    framesOut: byType(framesOut, 'type', outTypes) as Record<(typeof outTypes)[number], Counter.Internal>,
    published,
    delivered,
    dropped,
    errors: byType(errors, 'code', codes) as Record<ErrorCode, Counter.Internal>,
    rateLimited,
    slowConsumers,
    authRefused,
    brokerErrors,
    storeErrors,
    publishLatency,
  }
}

export type Metrics = ReturnType<typeof createMetrics>
