// The memory engine's message states (src/broker/lifecycle.ts MessageStates): the newest
// `generation` messages are always there to be edited, deleted or reacted to, and the states
// never grow past twice that.
import { describe, expect, test } from 'bun:test'
import { MessageStates } from '../../src/broker/message-rules'
import type { MessageState } from '../../src/broker/message-rules'

const state = (seq: number): MessageState => ({ seq, author: 'alice', reactions: {} })

describe('MessageStates', () => {
  test('the newest `generation` are always found, and never more than twice that are kept', () => {
    const G = 50
    const s = new MessageStates(G)
    for (let i = 0; i < 1000; i++) {
      s.set(`m${i}`, state(i))
      expect(s.size).toBeLessThanOrEqual(2 * G)
      for (let k = Math.max(0, i - G + 1); k <= i; k++) expect(s.get(`m${k}`)?.seq).toBe(k)
    }
    expect(s.has('m999')).toBe(true)
    expect(s.has('m0')).toBe(false)
    expect(s.get('m0')).toBeUndefined()
  })

  test('setting a message already kept replaces it in place (a loaded or changed state), without dropping others', () => {
    const s = new MessageStates(3)
    for (let i = 0; i < 5; i++) s.set(`m${i}`, state(i)) // old: m0..m2, young: m3, m4
    const before = s.size
    s.set('m1', { ...state(1), deleted: true })
    expect(s.size).toBe(before)
    expect(s.get('m1')?.deleted).toBe(true)
    expect(s.get('m0')?.seq).toBe(0)
    s.set('m5', state(5)) // young is full now: m3, m4, m5
    s.set('m4', { ...state(4), body: 'edited' })
    expect(s.get('m4')?.body).toBe('edited')
    expect(s.size).toBe(before + 1)
    expect(s.get('m0')?.seq).toBe(0) // a replace in a full young map does not turn the generations
  })
})
