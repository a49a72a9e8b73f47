import { describe, expect, test as plain } from 'bun:test'
import { appendBatches } from '../../src/broker/append-batch'
import { appendScript } from '../../src/broker/redis-scripts'
import { eventHead } from '../../src/protocol/server-frames'
import { chatDraft, useRedisBroker } from '../helpers/redis-broker'
import { needService } from '../helpers/services'

// A room's appends that wait together go to Redis as one call of append.lua: calling a script
// is about half of a lone chat's Redis CPU (issue 34). A quiet room's append still goes at once.

/** A send that answers when told to, recording what each call carried. */
function manualSend() {
  const calls: { room: string; items: number[]; answer: (r: string[]) => void; fail: (e: Error) => void }[] = []
  const send = (room: string, items: number[]) =>
    new Promise<string[]>((answer, fail) => {
      calls.push({ room, items, answer, fail })
    })
  return { calls, send }
}

describe('appendBatches (a group commit per room)', () => {
  plain('the first append goes at once; those that come while it is out go together, in order, each with its answer', async () => {
    const { calls, send } = manualSend()
    const append = appendBatches(send, 64)
    const first = append('r', 0)
    expect(calls.map((c) => c.items)).toEqual([[0]])
    const rest = [1, 2, 3].map((i) => append('r', i))
    expect(calls).toHaveLength(1) // they wait for the call out
    calls[0]!.answer(['a0'])
    expect(await first).toBe('a0')
    await Bun.sleep(0)
    expect(calls.map((c) => c.items)).toEqual([[0], [1, 2, 3]])
    calls[1]!.answer(['a1', 'a2', 'a3'])
    expect(await Promise.all(rest)).toEqual(['a1', 'a2', 'a3'])
  })

  plain('rooms do not wait for each other; a call carries at most max; a failed call fails its own appends only', async () => {
    const { calls, send } = manualSend()
    const append = appendBatches(send, 2)
    const a = append('a', 0)
    const b = append('b', 0)
    expect(calls.map((c) => [c.room, c.items])).toEqual([
      ['a', [0]],
      ['b', [0]],
    ])
    const more = [1, 2, 3].map((i) => append('a', i))
    calls[0]!.fail(new Error('down'))
    await expect(a).rejects.toThrow('down')
    await Bun.sleep(0)
    expect(calls[2]).toMatchObject({ room: 'a', items: [1, 2] })
    calls[2]!.answer(['x1']) // an answer short of its appends fails the one left without
    expect(await more[0]).toBe('x1')
    await expect(more[1]).rejects.toThrow('1 answers to 2 appends')
    await Bun.sleep(0)
    expect(calls[3]).toMatchObject({ room: 'a', items: [3] })
    calls[3]!.answer(['x3'])
    calls[1]!.answer(['b0'])
    expect(await Promise.all([more[2], b])).toEqual(['x3', 'b0'])
  })

  plain('a send that throws fails its appends, and the room goes on', async () => {
    let n = 0
    const append = appendBatches(async (_room: string, items: number[]) => {
      if (n++ === 0) throw new Error('bad')
      return items.map(String)
    })
    await expect(append('r', 1)).rejects.toThrow('bad')
    expect(await append('r', 2)).toBe('2')
  })
})

const test = await needService('Redis', 6379)
const alice = { id: 'alice', name: 'Alice' }
const chat = (room: string, body: string) => chatDraft(room, body, alice)

describe('appends in Redis', () => {
  const rb = useRedisBroker(test, 'batch')

  test('40 appends to one room at once: a few calls of the script, each append its own seq, in the order sent', async () => {
    const room = 'busy'
    const start = (await rb.broker.append(room, chat(room, 'warm'))).seq
    const monitor = await rb.redis.monitor()
    const calls: string[] = []
    monitor.on('monitor', (_t: string, args: string[]) => {
      if (args[0]?.toLowerCase() === 'evalsha' && args[3] === `${rb.prefix}{${room}}:state`) calls.push(args[0])
    })
    try {
      await Bun.sleep(50) // MONITOR is on before the appends
      const acks = await Promise.all(Array.from({ length: 40 }, (_, i) => rb.broker.append(room, chat(room, `m${i}`), `k${i}`)))
      expect(acks.map((a) => a.seq)).toEqual(Array.from({ length: 40 }, (_, i) => start + i + 1))
      expect(acks.every((a) => !a.duplicate)).toBe(true)
      await Bun.sleep(50)
      // The first goes alone; the 39 that came while it was out go in one call.
      expect(calls.length).toBeGreaterThanOrEqual(1)
      expect(calls.length).toBeLessThanOrEqual(3)
      const frames = (await rb.broker.since(room, start)).frames.map((f) => JSON.parse(f).body)
      expect(frames).toEqual(Array.from({ length: 40 }, (_, i) => `m${i}`))
    } finally {
      monitor.disconnect()
    }
  })

  test('a command Redis refuses part-way through a call: the events before keep their seqs, that one and the rest answer -4, the room goes on', async () => {
    const room = 'refused'
    const start = (await rb.broker.append(room, chat(room, 'first'))).seq
    const k = (x: string) => `${rb.prefix}{${room}}:${x}`
    const keys = [k('state'), k('log'), k('msgs'), k('msgorder'), k('pins')]
    const ev = (body: string, command: string) => [eventHead('chat'), `,"body":"${body}"}`, Bun.randomUUIDv7(), '', command, '"alice"', '']
    // A settings event whose value Redis cannot take (a table): its HSET fails inside the script.
    const bad = JSON.stringify({ t: 'settings', by: 'mod', mod: true, sl: { no: 1 } })
    const args = [
      1000,
      k('ch:r'),
      120000,
      0,
      room,
      2000,
      ...ev('b0', 'calice'),
      ...ev('b1', 'calice'),
      ...ev('', bad),
      ...ev('b3', 'calice'),
    ]
    const out = (await rb.redis.eval(appendScript(false), keys.length, ...keys, ...args)) as [number, number | string][]
    expect(out.map((x) => x[0])).toEqual([1, 1, -4, -4])
    expect(out.slice(0, 2).map((x) => x[1])).toEqual([start + 1, start + 2])
    expect(String(out[2]![1])).toMatch(/arguments must be strings or integers/)
    // The two appended are in the stream and the state's seq counts them: the room goes on after them.
    expect(Number(await rb.redis.hget(k('state'), 'seq'))).toBe(start + 2)
    expect((await rb.broker.append(room, chat(room, 'after'))).seq).toBe(start + 3)
  })
})
