import { describe, expect, test } from 'bun:test'
import { UNREAD_CAP, summarize, summarizeShared } from '../../src/broker/read-model'
import type { Tallies } from '../../src/broker/read-model'
import { isMessageFrame } from '../../src/protocol/server-frames'

// A room's summaries for one marker are shared while the room stands still (one walk answers a
// storm of welcomes): they must be summarize's own answers, whoever asks.

const users = ['alice', 'bob', 'carol', 'd"q\\x', 'e']
function frameOf(seq: number, rnd: () => number): string {
  const from = users[Math.floor(rnd() * users.length)]!
  const kind = rnd()
  const fromJson = `{"id":${JSON.stringify(from)},"name":"N"}`
  if (kind < 0.6) return `{"type":"chat","seq":${seq},"room":"r","id":"m${seq}","from":${fromJson},"body":"hi","ts":"t"}`
  if (kind < 0.7) return `{"type":"dm","seq":${seq},"room":"r","id":"m${seq}","from":${fromJson},"body":"hi","ts":"t"}`
  // Not messages: an edit (its own `from`) and one whose data names another user as `from`.
  if (kind < 0.85) return `{"type":"edit","seq":${seq},"room":"r","msg":"m1","from":${fromJson},"body":"x","ts":"t"}`
  return `{"type":"react","seq":${seq},"room":"r","msg":"m1","from":${fromJson},"reaction":"x","op":"add","ts":"t"}`
}

function rng(seed: number) {
  let s = seed
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff
    return s / 0x7fffffff
  }
}

describe('summaries shared by marker', () => {
  test('the same unread, completeness and last message as summarize, for every reader and marker', () => {
    const rnd = rng(7)
    let unreadSeen = 0
    let capped = 0
    for (let round = 0; round < 40; round++) {
      const first = 1 + Math.floor(rnd() * 50)
      const n = Math.floor(rnd() * (round % 5 === 0 ? 3 * UNREAD_CAP : 300))
      const frames = Array.from({ length: n }, (_, i) => frameOf(first + i, rnd))
      const seq = first + n - 1
      const pos = { seq, epoch: 'e' }
      const entries = () =>
        (function* () {
          for (let s = seq; s >= first; s--) yield [s, frames[s - first]!] as [number, string]
        })()
      expect(n === 0 || frames.some(isMessageFrame)).toBe(true)
      const cache: { tallies?: Tallies } = {}
      for (let k = 0; k < 30; k++) {
        const read = Math.floor(rnd() * (seq + 10)) - 5
        for (const user of users) {
          const want = summarize(pos, read, user, entries(), isMessageFrame)
          const got = summarizeShared(cache, pos, first, read, user, entries, isMessageFrame)
          expect({ unread: got.unread, complete: got.complete, last: got.last }).toEqual({
            unread: want.unread,
            complete: want.complete,
            last: want.last,
          })
          if (!want.complete) expect(got.counted).toBe(want.counted)
          unreadSeen += want.unread
          if (want.unread === UNREAD_CAP) capped++
        }
      }
    }
    expect(unreadSeen).toBeGreaterThan(0)
    expect(capped).toBeGreaterThan(0) // readers past UNREAD_CAP, and tallies cut short, are among them
  })

  test('one walk per marker while the room stands still; a new seq walks again', () => {
    const frames = ['{"type":"chat","seq":1,"room":"r","id":"a","from":{"id":"bob","name":"B"},"body":"x","ts":"t"}']
    let walks = 0
    const entries = () => {
      walks++
      return [[1, frames[0]!] as [number, string]]
    }
    const cache: { tallies?: Tallies } = {}
    for (const user of ['u1', 'u2', 'u3', 'bob']) summarizeShared(cache, { seq: 1, epoch: 'e' }, 1, 0, user, entries, isMessageFrame)
    expect(walks).toBe(1)
    expect(summarizeShared(cache, { seq: 1, epoch: 'e' }, 1, 0, 'u9', entries, isMessageFrame).unread).toBe(1)
    expect(summarizeShared(cache, { seq: 1, epoch: 'e' }, 1, 0, 'bob', entries, isMessageFrame).unread).toBe(0)
    summarizeShared(cache, { seq: 2, epoch: 'e' }, 1, 0, 'u1', entries, isMessageFrame)
    expect(walks).toBe(2)
  })
})
