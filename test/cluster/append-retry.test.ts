import { describe, expect } from 'bun:test'
import { chatDraft, useRedisBroker } from '../helpers/redis-broker'
import { needService } from '../helpers/services'

// A retry key used to be a key of its own with a PX per message: a GET, a SET and an expiry that
// cost Redis about a third of a plain chat's CPU (bench/redis-cost.ts, issue 34). It is now a field
// of the room's msgs hash, read and written with the message's own state, and it leaves the hash
// with its message.
const test = await needService('Redis', 6379)
const alice = { id: 'alice', name: 'Alice' }
const HISTORY = 10 // the msgs hash keeps 2 × HISTORY_LIMIT messages, trimmed 64 at a time
const chat = (room: string, body: string) => chatDraft(room, body, alice)

describe('retry keys in Redis', () => {
  const rb = useRedisBroker(test, 'retry', { historyLimit: HISTORY })

  test('a retry key is no key of its own, and it leaves the hash with its message', async () => {
    const room = 'retries'
    const first = await rb.broker.append(room, chat(room, 'm0'), 'k0')
    expect(await rb.broker.append(room, chat(room, 'm0'), 'k0')).toMatchObject({ id: first.id, seq: first.seq, duplicate: true })
    for (let i = 1; i < 100; i++) await rb.broker.append(room, chat(room, `m${i}`), `k${i}`)
    expect(await rb.redis.keys(`${rb.prefix}*`)).toEqual(expect.not.arrayContaining([expect.stringContaining('dedupe')]))
    const fields = await rb.redis.hkeys(`${rb.prefix}{${room}}:msgs`)
    const retries = fields.filter((f) => f.startsWith('~d:'))
    const messages = fields.filter((f) => !f.startsWith('~'))
    // Past 2 × 10 + 64 entries the oldest leave down to 20: every kept message keeps its key, no other.
    expect(messages.length).toBeGreaterThanOrEqual(2 * HISTORY)
    expect(messages.length).toBeLessThanOrEqual(2 * HISTORY + 64)
    expect(retries).toHaveLength(messages.length)
    expect(retries).not.toContain('~d:k0')
    expect(retries).toContain('~d:k99')
    // Its message gone from the hash, an old key is a new message again: as with the old PX key
    // after its 120 s, the window is bounded (here by count).
    expect((await rb.broker.append(room, chat(room, 'm0'), 'k0')).duplicate).toBe(false)
    expect((await rb.broker.append(room, chat(room, 'm99'), 'k99')).duplicate).toBe(true)
    expect(await rb.redis.llen(`${rb.prefix}{${room}}:msgorder`)).toBe(messages.length + 1)
  })
})
