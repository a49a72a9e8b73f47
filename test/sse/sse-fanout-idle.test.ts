// The SSE face's delivery hook is idle (the hub passes it by, src/hub/hub.ts) while this node has
// no stream subscribed and no relayed POST can come: a node of WebSockets only pays nothing for SSE.
import { describe, expect, test } from 'bun:test'
import { roomTopic, sseNodeTopic, userTopic } from '../../src/core/topic'
import { createMetrics } from '../../src/metrics'
import { sseFanOut } from '../../src/sse/fanout'
import type { SseStream } from '../../src/sse/stream'

const fanout = () => sseFanOut({ metrics: createMetrics(), posted() {}, cut() {} })
const stream = (written: unknown[]) => ({ conn: undefined, write: (b: unknown) => (written.push(b), 1) }) as unknown as SseStream

describe('sse fan-out hook: idle', () => {
  test('idle until a stream subscribes, busy while one is subscribed, idle again after the last leaves', () => {
    const f = fanout()
    expect(f.hook.idle).toBe(true)
    const a = stream([])
    const b = stream([])
    f.subscribe(roomTopic('x'), a)
    expect(f.hook.idle).toBe(false)
    f.subscribe(userTopic('u'), b)
    f.unsubscribe(roomTopic('x'), a)
    expect(f.hook.idle).toBe(false) // b still subscribed
    f.unsubscribe(userTopic('u'), b)
    expect(f.hook.idle).toBe(true)
  })

  test('never idle again once the node topic of relayed POSTs is watched (a POST may come for any stream)', () => {
    const posted: string[] = []
    const f = sseFanOut({ metrics: createMetrics(), posted: (p) => void posted.push(p), cut() {} })
    f.watchPosts()
    expect(f.hook.idle).toBe(false)
    const a = stream([])
    f.subscribe(roomTopic('x'), a)
    f.unsubscribe(roomTopic('x'), a)
    expect(f.hook.idle).toBe(false)
    f.hook.deliver(sseNodeTopic('n'), '{"session":"s"}')
    expect(posted).toEqual(['{"session":"s"}'])
  })
})
