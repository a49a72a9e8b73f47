import { afterAll, beforeAll, describe, expect } from 'bun:test'
import type Redis from 'ioredis'
import type { EventDraft } from '../../src/broker/types'
import { roomTopic } from '../../src/broker/types'
import { eventHead, eventSeq, eventTail } from '../../src/protocol/server-frames'
import type { RoomEvent } from '../../src/protocol/server-frames'
import { chatDraft, startRedisBroker, useRedisBroker } from '../helpers/redis-broker'
import { needService } from '../helpers/services'

// A resume (`join {since}`) and an unread count that the node's recent frames of a watched room
// cover are answered from them: in a reconnect storm every client of a room asks Redis for the
// same few hundred events otherwise (measured: ~270 µs of Redis per summary script, 5 000 at once).
const test = await needService('Redis', 6379)
const alice = { id: 'alice', name: 'Alice' }
const chat = (room: string, body: string) => chatDraft(room, body, alice)

describe('a node answers recent history of a watched room from what it handed over', () => {
  const rb = useRedisBroker(test, 'tail', { historyLimit: 1000 })
  let monitor: Redis | undefined
  const seen: string[] = []

  beforeAll(async () => {
    if (!rb.redis) return
    monitor = await rb.redis.monitor()
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args.some((a) => a.includes(rb.prefix))) seen.push(args.join(' '))
    })
  })
  afterAll(() => monitor?.disconnect())

  test('since and summary within the tail read nothing from Redis; below it they do', async () => {
    const room = 'lobby'
    for (let i = 0; i < 2; i++) await rb.broker.append(room, chat(room, `early${i}`))
    // Three local connections in the room: a tail of up to 24 frames.
    for (let i = 0; i < 3; i++) await rb.broker.watch(roomTopic(room))
    const base = (await rb.broker.position(room)).seq
    const acks = []
    for (let i = 0; i < 20; i++) acks.push(await rb.broker.append(room, chat(room, `m${i}`)))
    const last = acks.at(-1)!.seq
    await rb.broker.caughtUp(room, last)
    await Bun.sleep(100) // the MONITOR stream of the appends above
    seen.length = 0

    const replay = await rb.broker.since(room, base + 5)
    expect(replay.complete).toBe(true)
    expect(replay.seq).toBe(last)
    expect(replay.frames.map(eventSeq)).toEqual(Array.from({ length: 15 }, (_, i) => base + 6 + i))
    expect(replay.frames.map((f) => JSON.parse(f).body)).toEqual(Array.from({ length: 15 }, (_, i) => `m${i + 5}`))
    const sum = await rb.broker.summary(room, base + 5, 'bob')
    expect(sum.unread).toBe(15)
    expect(sum.complete).toBe(true)
    expect(JSON.parse(sum.last!).body).toBe('m19')
    // The sender's own messages are not unread for it.
    expect((await rb.broker.summary(room, base + 5, 'alice')).unread).toBe(0)
    await Bun.sleep(100)
    expect(seen).toEqual([])

    // Before the node watched the room: the tail does not reach, Redis answers.
    expect(base).toBe(2)
    expect((await rb.broker.since(room, base - 1)).frames.map((f) => JSON.parse(f).body)[0]).toBe('early1')
    await Bun.sleep(100)
    expect(seen.length).toBeGreaterThan(0)
    for (let i = 0; i < 3; i++) rb.broker.unwatch(roomTopic(room))
  })

  test('the tail keeps its size when most connections leave (a storm closes them just before they resume)', async () => {
    const room = 'storm'
    for (let i = 0; i < 4; i++) await rb.broker.watch(roomTopic(room))
    const base = (await rb.broker.position(room)).seq
    for (let i = 0; i < 20; i++) await rb.broker.append(room, chat(room, `s${i}`))
    for (let i = 0; i < 3; i++) rb.broker.unwatch(roomTopic(room))
    const last = (await rb.broker.append(room, chat(room, 'after'))).seq
    await rb.broker.caughtUp(room, last)
    await Bun.sleep(100)
    seen.length = 0
    const replay = await rb.broker.since(room, base)
    expect(replay.frames).toHaveLength(21)
    await Bun.sleep(100)
    expect(seen).toEqual([])
    rb.broker.unwatch(roomTopic(room))
  })

  test('a resume from before the tail reads only what precedes it, and the tail keeps it for the next ones', async () => {
    const room = 'late'
    const base = (await rb.broker.position(room)).seq
    for (let i = 0; i < 10; i++) await rb.broker.append(room, chat(room, `old${i}`))
    // Watched from here on (a node that just started): its tail has only what follows.
    for (let i = 0; i < 3; i++) await rb.broker.watch(roomTopic(room))
    expect((await rb.broker.position(room)).seq).toBe(base + 10) // as a join reads it
    for (let i = 0; i < 5; i++) await rb.broker.append(room, chat(room, `new${i}`))
    const last = (await rb.broker.position(room)).seq
    await rb.broker.caughtUp(room, last)
    await Bun.sleep(100)
    seen.length = 0
    // A storm: 50 resumes at once from before the tail.
    const replays = await Promise.all(Array.from({ length: 50 }, () => rb.broker.since(room, base)))
    const bodies = [...Array.from({ length: 10 }, (_, i) => `old${i}`), ...Array.from({ length: 5 }, (_, i) => `new${i}`)]
    for (const r of replays) {
      expect(r.complete).toBe(true)
      expect(r.seq).toBe(last)
      expect(r.frames.map((f) => JSON.parse(f).body)).toEqual(bodies)
    }
    await Bun.sleep(100)
    const reads = seen.filter((c) => c.includes(`{${room}}:log`))
    // One read for all 50, and it stops where the tail starts (not at `+`, the stream's end).
    expect(reads.filter((c) => c.startsWith('XRANGE') && !c.includes(' - + COUNT'))).toEqual([
      `XRANGE ${rb.prefix}{${room}}:log ${base + 1}-0 ${base + 10}-0`,
    ])
    seen.length = 0
    expect((await rb.broker.since(room, base + 3)).frames).toHaveLength(12)
    await Bun.sleep(100)
    expect(seen).toEqual([])
    for (let i = 0; i < 3; i++) rb.broker.unwatch(roomTopic(room))
  })

  test('without a store, a resume from before what the stream keeps is answered "not complete" without Redis', async () => {
    const p2 = `${rb.prefix}short:`
    const shortNode = await startRedisBroker(p2, 'short', { historyLimit: 10 })
    const short = shortNode.broker
    try {
      const room = 'busy'
      for (let i = 0; i < 3; i++) await short.watch(roomTopic(room))
      const base = (await short.position(room)).seq
      for (let i = 0; i < 300; i++) await short.append(room, chat(room, `b${i}`))
      const last = (await short.position(room)).seq
      await short.caughtUp(room, last)
      await Bun.sleep(100)
      seen.length = 0
      const first = await short.since(room, base)
      expect(first.complete).toBe(false)
      await Bun.sleep(100)
      expect(seen.length).toBeGreaterThan(0) // the node learns where the stream starts
      seen.length = 0
      const again = await Promise.all(Array.from({ length: 20 }, () => short.since(room, base)))
      for (const r of again) {
        expect(r.complete).toBe(false)
        expect(r.seq).toBe(last)
      }
      await Bun.sleep(100)
      expect(seen).toEqual([])
      // Within the tail it is still a complete answer.
      const recent = await short.since(room, last - 3)
      expect(recent.complete).toBe(true)
      expect(recent.frames.map((f) => JSON.parse(f).body)).toEqual(['b297', 'b298', 'b299'])
      for (let i = 0; i < 3; i++) short.unwatch(roomTopic(room))
    } finally {
      await shortNode.stop()
    }
  })

  test("a watched room's settings are read from Redis once, and again after a settings event", async () => {
    const room = 'slow'
    await rb.broker.watch(roomTopic(room))
    await rb.broker.position(room)
    const settings = (slow_mode_s: number): EventDraft => {
      const event: RoomEvent = {
        type: 'settings',
        id: Bun.randomUUIDv7(),
        room,
        from: alice,
        ts: new Date().toISOString(),
        extra: { slow_mode_s },
      }
      return { event, head: eventHead('settings'), tail: eventTail(event), moderator: true }
    }
    await rb.broker.append(room, settings(5))
    await rb.broker.caughtUp(room, (await rb.broker.position(room)).seq)
    await Bun.sleep(100)
    seen.length = 0
    for (let i = 0; i < 3; i++) expect(await rb.broker.settings!(room)).toEqual({ slow_mode_s: 5 })
    await Bun.sleep(100)
    expect(seen.filter((c) => c.includes(`{${room}}:state`))).toHaveLength(1)
    const at = await rb.broker.append(room, settings(0))
    await rb.broker.caughtUp(room, at.seq)
    expect(await rb.broker.settings!(room)).toEqual({ slow_mode_s: 0 })
    rb.broker.unwatch(roomTopic(room))
  })

  test('an unwatched room, or a since past what the node has handed over, is read from Redis', async () => {
    const room = 'hall'
    const base = (await rb.broker.position(room)).seq
    await rb.broker.append(room, chat(room, 'x'))
    seen.length = 0
    const replay = await rb.broker.since(room, base)
    expect(replay.frames.map((f) => JSON.parse(f).body)).toEqual(['x'])
    await Bun.sleep(100)
    expect(seen.some((c) => c.includes(`{${room}}:log`))).toBe(true)
  })
})
