import { describe, expect, test } from 'bun:test'
import { Counter, Registry } from 'prom-client'
import { createMetrics } from '../src/metrics'

describe('metrics counted as plain numbers', () => {

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
