import { describe, expect, test } from 'bun:test'
import { Counter, Histogram, Registry } from 'prom-client'
import { createMetrics } from '../../src/metrics'
import { clientFrameSchemas } from '../../src/protocol/client-frames'

describe('metrics counted as plain numbers', () => {
  test('every client frame type of the schemas has its frames-in counter (session.ts counts each decoded frame outside any try)', () => {
    // Read from the schemas themselves, not from the list the metrics use: a type added to the
    // schemas without its counter would throw in session.ts for every frame of that type.
    const types = Object.keys(clientFrameSchemas(4000))
    const m = createMetrics()
    expect(Object.keys(m.framesIn).sort()).toEqual([...types, 'invalid'].sort())
    for (const t of types) expect(() => m.framesIn[t as keyof typeof m.framesIn].inc()).not.toThrow()
  })

  test("the server's tallies show as its prom-client counters did", async () => {
    const m = createMetrics()
    const ref = new Registry()
    const framesIn = new Counter({
      name: 'chat_frames_in_total',
      help: 'Client frames received, by type',
      labelNames: ['type'],
      registers: [ref],
    })
    const delivered = new Counter({
      name: 'chat_messages_delivered_total',
      help: 'Chat and DM frames handed to local subscribers',
      registers: [ref],
    })
    const pick = (text: string, name: string) =>
      text
        .split('\n')
        .filter((l) => l.includes(name))
        .join('\n')
    for (let round = 0; round < 2; round++) {
      const text = await m.registry.metrics()
      const want = await ref.metrics()
      expect(pick(text, 'chat_frames_in_total')).toBe(pick(want, 'chat_frames_in_total'))
      expect(pick(text, 'chat_messages_delivered_total')).toBe(pick(want, 'chat_messages_delivered_total'))
      m.framesIn.chat!.inc()
      m.framesIn.chat!.inc()
      m.framesIn.invalid!.inc()
      m.delivered.inc(0)
      m.delivered.inc(1000)
      framesIn.labels({ type: 'chat' }).inc()
      framesIn.labels({ type: 'chat' }).inc()
      framesIn.labels({ type: 'invalid' }).inc()
      delivered.inc(0)
      delivered.inc(1000)
    }
  })

  test('the publish latency shows as its prom-client histogram did', async () => {
    const m = createMetrics()
    const ref = new Registry()
    const h = new Histogram({
      name: 'chat_publish_latency_seconds',
      help: 'From a chat frame received to its publish to the room',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [ref],
    })
    const pick = (text: string) =>
      text
        .split('\n')
        .filter((l) => l.includes('chat_publish_latency_seconds'))
        .join('\n')
    // On a bound, between bounds, past the last one, zero: each lands where prom-client puts it.
    const values = [0, 0.0001, 0.00011, 0.0003, 0.001, 0.004, 0.25, 0.9999, 1, 1.5, 30, 0.00002]
    for (let round = 0; round < 3; round++) {
      expect(pick(await m.registry.metrics())).toBe(pick(await ref.metrics()))
      for (const v of values.slice(round * 4, round * 4 + 4)) {
        m.publishLatency.observe(v)
        h.observe(v)
      }
    }
    expect(pick(await m.registry.metrics())).toBe(pick(await ref.metrics()))
    expect(pick(await m.registry.metrics())).toContain('chat_publish_latency_seconds_count 12')
  })
})
