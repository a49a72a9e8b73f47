// The liveness rule of every face (src/hub/admission.ts checkIdle, heard): a frame costs one field
// write (no clock read per frame); the periodic check dates it, pings the silent, closes the mute.
import { describe, expect, test } from 'bun:test'
import { checkIdle, heard } from '../../src/hub/admission'
import type { Liveness } from '../../src/hub/admission'

const rule = { pingAfterMs: 10_000, answerWithinMs: 5_000 }
const fresh = (at: number): Liveness => ({ heard: false, lastSeen: at, pingedAt: 0 })

describe('liveness', () => {
  test('a client heard since the last check is neither pinged nor closed, whatever the clock says; the check dates it', () => {
    const s = fresh(0)
    heard(s)
    expect(checkIdle(s, 60_000, rule)).toBeUndefined()
    expect(s.lastSeen).toBe(60_000)
    expect(s.heard).toBe(false)
    // Silent from that check on: pinged once pingAfterMs has passed since it.
    expect(checkIdle(s, 60_000 + rule.pingAfterMs, rule)).toBeUndefined()
    expect(checkIdle(s, 60_001 + rule.pingAfterMs, rule)).toBe('ping')
  })

  test('a ping answered (heard) before the next check clears the wait; unanswered, it closes after answerWithinMs', () => {
    const s = fresh(0)
    expect(checkIdle(s, 10_001, rule)).toBe('ping')
    expect(checkIdle(s, 12_000, rule)).toBeUndefined() // waiting for the answer
    heard(s)
    expect(checkIdle(s, 13_000, rule)).toBeUndefined()
    expect(s.pingedAt).toBe(0)
    const mute = fresh(0)
    expect(checkIdle(mute, 10_001, rule)).toBe('ping')
    expect(checkIdle(mute, 15_001, rule)).toBeUndefined()
    expect(checkIdle(mute, 15_002, rule)).toBe('close')
  })
})
