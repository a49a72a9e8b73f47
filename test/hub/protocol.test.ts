import { describe, expect, test } from 'bun:test'
import { clientFrameSchemas, frameDecoder } from '../../src/protocol/client-frames'
import { isoNow } from '../../src/hub/clock'
import { chatFrame, eventSeq, chatTail, chatTailOfOwn, userJson } from '../../src/protocol/server-frames'

describe('client frame validation', () => {
  const decode = frameDecoder(10)
  const bad = (raw: unknown) => {
    const d = decode(raw)
    if (d.ok) throw new Error(`accepted ${JSON.stringify(raw)}`)
    return d.message
  }

  test('names the field that is wrong', () => {
    expect(bad('{x')).toBe('frame is not valid JSON')
    expect(bad(5)).toBe('frame must be a JSON object')
    expect(bad({})).toMatch(/^type:/)
    expect(bad({ type: 'nope' })).toMatch(/^type: unknown frame type "nope"/)
    expect(bad({ type: 'chat' })).toBe('body: is required')
    expect(bad({ type: 'chat', body: '' })).toBe('body: must not be empty')
    expect(bad({ type: 'chat', body: 'x'.repeat(11) })).toBe('body: must be at most 10 characters')
    expect(bad({ type: 'chat', body: 3 })).toBe('body: expected string, got number')
    expect(bad({ type: 'chat', body: 'hi', room: 'a b' })).toMatch(/^room:/)
    expect(bad({ type: 'chat', body: 'hi', id: 'x'.repeat(65) })).toMatch(/^id:/)
    expect(bad({ type: 'join', room: 'a', since: 1.5 })).toBe('since: must be a whole number')
    expect(bad({ type: 'history', room: 'a', limit: 101 })).toBe('limit: must be 1..100')
    expect(bad({ type: 'toString' })).toMatch(/^type: unknown/)
  })

  test('keeps a well-formed frame and its id', () => {
    const d = decode({ type: 'chat', body: 'hi', data: { a: [1, null] }, id: 'c1' })
    expect(d).toEqual({ ok: true, frame: { type: 'chat', body: 'hi', data: { a: [1, null] }, id: 'c1' } })
    const e = decode({ type: 'chat', body: '', id: 'c2' })
    expect(e.ok).toBe(false)
    expect(!e.ok && e.id).toBe('c2')
  })
})

describe('chat frames decoded without zod', () => {
  test("a plain chat frame decodes to what zod makes of it; any other to zod's error", () => {
    const decode = frameDecoder(10)
    const schema = clientFrameSchemas(10).chat
    const frames: unknown[] = [
      { type: 'chat', body: 'hi' },
      { type: 'chat', body: 'hi', room: 'a.b:c-d_1', id: 'x' },
      { id: 'x', extra: 1, body: '0123456789', type: 'chat', room: 'r' },
      { type: 'chat', body: 'hi', data: { a: 1 } },
      { type: 'chat', body: 'hi', reply_to: '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b' },
      { type: 'chat', body: 'hi', reply_to: 5 },
      { type: 'chat', body: '' },
      { type: 'chat', body: '01234567890' },
      { type: 'chat', body: 'a\0b' },
      { type: 'chat', body: 'hi', room: 'no spaces' },
      { type: 'chat', body: 'hi', room: '' },
      { type: 'chat', body: 'hi', room: 7 },
      { type: 'chat', body: 'hi', room: null },
      { type: 'chat', body: 'hi', id: 'i'.repeat(65) },
      { type: 'chat', body: 'hi', id: 5 },
      { type: 'chat', body: 5 },
      { type: 'chat' },
    ]
    for (const raw of frames) {
      const d = decode(raw)
      const z = schema.safeParse(raw)
      expect(d.ok).toBe(z.success)
      // Same keys in the same order, same values.
      if (d.ok && z.success) expect(JSON.stringify(d.frame)).toBe(JSON.stringify(z.data))
    }
  })
})

describe('message timestamps', () => {
  test('isoNow is Date#toISOString, across seconds and for every width of milliseconds', () => {
    for (const t of [0, 1, 9, 10, 99, 100, 999, 1000, 1001, 1795781979009, 1795781979099, 1795781979100, 1795781980000, Date.now()])
      expect(isoNow(t)).toBe(new Date(t).toISOString())
  })
})

describe('chat frame encoding', () => {
  test('is valid JSON with the seq spliced in, and the seq reads back', () => {
    const tail = chatTail({
      id: 'm1',
      room: 'r',
      from: { id: 'u', name: 'U "q"' },
      body: '<b>\n',
      data: { x: 1 },
      ts: '2026-01-01T00:00:00.000Z',
    })
    const f = chatFrame(42, tail)
    expect(JSON.parse(f)).toEqual({
      type: 'chat',
      seq: 42,
      id: 'm1',
      room: 'r',
      from: { id: 'u', name: 'U "q"' },
      body: '<b>\n',
      data: { x: 1 },
      ts: '2026-01-01T00:00:00.000Z',
    })
    expect(eventSeq(f)).toBe(42)
    expect(eventSeq('{"type":"typing"}')).toBe(-1)
  })

  test('a pre-encoded sender gives the same bytes as encoding it per message', () => {
    for (const from of [
      { id: 'u', name: 'U "q"' },
      { id: 'ü\u2028', name: '<\\>\n\t' },
      { id: 'anon-1', name: '' },
    ]) {
      const m = { id: Bun.randomUUIDv7(), room: 'general', from, body: 'hi "there"', data: { a: 1 }, ts: new Date().toISOString() }
      expect(userJson(from)).toBe(JSON.stringify({ id: from.id, name: from.name }))
      expect(chatTailOfOwn(m.id, m.room, userJson(from), m.body, m.data, m.ts)).toBe(chatTail(m))
    }
  })

  test("a reply: chatTailOfOwn with reply_to gives chatTail's (eventTail's) bytes", () => {
    const from = { id: 'u', name: 'U' }
    const m = {
      id: '0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000',
      room: 'r',
      from,
      body: 'b',
      data: { x: 1 },
      ts: '2026-01-01T00:00:00.000Z',
      reply_to: 'p"1',
    }
    const own = chatTailOfOwn(m.id, m.room, userJson(from), m.body, m.data, m.ts, m.reply_to)
    expect(own).toBe(chatTail(m))
    expect(JSON.parse(`{"type":"chat","seq":1${own}`).reply_to).toBe('p"1')
  })

  test("own ids and timestamps need no escaping: chatTailOfOwn gives chatTail's bytes", () => {
    const from = { id: 'u"1', name: 'N\\n' }
    const times = [0, Date.now(), Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(1970, 0, 1, 0, 0, 0, 1)]
    for (let i = 0; i < 2000; i++) {
      const id = Bun.randomUUIDv7()
      const ts = new Date(times[i % times.length]! + i).toISOString()
      expect(JSON.stringify(id)).toBe(`"${id}"`)
      expect(JSON.stringify(ts)).toBe(`"${ts}"`)
      const data = i % 2 ? undefined : { k: [i, 'x"'] }
      expect(chatTailOfOwn(id, 'r.1:a-b_c', userJson(from), 'b"\u2028', data, ts)).toBe(
        chatTail({ id, room: 'r.1:a-b_c', from, body: 'b"\u2028', data, ts }),
      )
    }
  })
})
