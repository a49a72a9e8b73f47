// Moderation is all or nothing (issue 22): when the event cannot be appended, the mute or ban
// does not hold either (no standing, the membership intact), and nothing is audited or emitted.
import { describe, expect, test } from 'bun:test'
import { memoryBroker } from '../../src/broker/memory'
import { memoryMembers } from '../../src/members/memory'
import { appender } from '../../src/hub/append'
import { createModeration } from '../../src/hub/moderation'
import { FrameError } from '../../src/core/errors'
import type { AuditEntry } from '../../src/store/types'

const alice = { id: 'alice', name: 'Alice' }
const mo = { id: 'mo', name: 'Mo' }

/** A memory engine whose store has stopped keeping up: every append is refused `unavailable`. */
function refusingSetup() {
  const broker = memoryBroker({ historyLimit: 10, store: { accepting: () => false, save: async () => {} } })
  const members = memoryMembers()
  const audited: AuditEntry[] = []
  const emitted: unknown[] = []
  const brokerErrors = {
    n: 0,
    inc() {
      this.n++
    },
  }
  const moderation = createModeration({
    broker,
    append: appender(broker, { brokerErrors } as never),
    members,
    audit: (e) => audited.push(e),
    emit: (e) => emitted.push(e),
  })
  return { broker, members, moderation, audited, emitted }
}

describe('moderation when its event cannot be appended', () => {
  for (const action of ['mute', 'ban', 'unmute', 'unban'] as const) {
    test(`${action}: refused with unavailable, and the standing and membership are as before`, async () => {
      const { members, moderation, audited, emitted } = refusingSetup()
      await members.add('room', alice, 7, Infinity)
      if (action === 'unmute') await members.setStanding('room', 'alice', { mutedUntil: Date.now() + 60_000 })
      if (action === 'unban') await members.setStanding('room', 'alice', { banned: true })
      const before = await members.standing('room', 'alice')
      const err = await moderation.act('room', mo, action, alice, { seconds: 60 }).catch((e) => e)
      expect(err).toBeInstanceOf(FrameError)
      expect(err.code).toBe('unavailable')
      expect(await members.standing('room', 'alice')).toEqual(before)
      expect(await members.get('room', 'alice')).toEqual({ room: 'room', read: 7 })
      expect(audited).toEqual([])
      expect(emitted).toEqual([])
    })
  }

  test('the same actions hold, with their event, when the append succeeds', async () => {
    const broker = memoryBroker({ historyLimit: 10 })
    const members = memoryMembers()
    const audited: AuditEntry[] = []
    const moderation = createModeration({
      broker,
      append: appender(broker, { brokerErrors: { inc() {} } } as never),
      members,
      audit: (e) => audited.push(e),
    })
    await members.add('room', alice, 3, Infinity)
    await moderation.act('room', mo, 'mute', alice, { seconds: 60 })
    expect((await members.standing('room', 'alice')).mutedUntil).toBeGreaterThan(Date.now())
    await moderation.act('room', mo, 'ban', alice)
    expect((await members.standing('room', 'alice')).banned).toBe(true)
    expect(await members.get('room', 'alice')).toBeUndefined()
    expect((await broker.since('room', 0)).frames.map((f) => JSON.parse(f).action)).toEqual(['mute', 'ban'])
    expect(audited.map((a) => a.detail?.action)).toEqual(['mute', 'ban'])
  })
})
