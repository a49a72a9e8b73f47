import { describe, expect, test } from 'bun:test'
import { Counter, Histogram, Registry } from 'prom-client'
import { PlainHistogram, createMetrics } from '../src/metrics'

describe('metrics counted as plain numbers', () => {
  const buckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]
  const values = [0, 0.0001, 0.00009, 0.0003, 0.001, 0.0049, 0.01, 0.3, 1, 1.5, 7, 0.000123456]

  test('PlainHistogram exports what a prom-client Histogram does', async () => {
    for (const n of [0, 1, values.length]) {
      const a = new Registry()
      const b = new Registry()
      const real = new Histogram({ name: 'h_seconds', help: 'help', buckets, registers: [a] })
      const plain = new PlainHistogram({ name: 'h_seconds', help: 'help', buckets, registers: [b] })
      for (const v of values.slice(0, n)) {
        real.observe(v)
        plain.observe(v)
      }
      expect(await b.metrics()).toBe(await a.metrics())
      expect(JSON.parse(JSON.stringify(await b.getMetricsAsJSON()))).toEqual(JSON.parse(JSON.stringify(await a.getMetricsAsJSON())))
      a.resetMetrics()
      b.resetMetrics()
      expect(await b.metrics()).toBe(await a.metrics())
    }
    expect(() => new PlainHistogram({ name: 'x', help: 'x', buckets, registers: [] }).observe(NaN)).toThrow()
  })

  test('the server\'s tallies show as its prom-client counters did', async () => {
    const m = createMetrics()
    const ref = new Registry()
    const framesIn = new Counter({ name: 'chat_frames_in_total', help: 'Client frames received, by type', labelNames: ['type'], registers: [ref] })
    const delivered = new Counter({ name: 'chat_messages_delivered_total', help: 'Chat and DM frames handed to local subscribers', registers: [ref] })
    const pick = (text: string, name: string) => text.split('\n').filter((l) => l.includes(name)).join('\n')
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
})
