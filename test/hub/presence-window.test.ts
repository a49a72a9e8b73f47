// A big room's presence window grows with the room (hub/presence-events.ts WINDOW_USERS): each
// member gets every batch, so batches of a fixed window would cost the cluster frames in
// proportion to the room's size during a wave of connects.
import { expect, test } from 'bun:test'
import { memoryBroker } from '../../src/broker/memory'
import { roomTopic } from '../../src/broker/types'
import { presenceEvents } from '../../src/hub/presence-events'

async function room(windowUsers: number) {
  const broker = memoryBroker({ historyLimit: 10 })
  const batches: { at: number; joined: number }[] = []
  await broker.start(
    (_topic, frame) => {
      const f = JSON.parse(frame)
      if (f.event === 'batch') batches.push({ at: Date.now(), joined: f.joined.length })
    },
    () => {},
  )
  const name = `w-${windowUsers}`
  await broker.watch(roomTopic(name))
  const events = presenceEvents({ broker, max: 1, windowMs: 100, windowUsers, onError: (_, err) => console.error(err) })
  /** `present` users in the room without a word (as if they were there before), then one joins: it opens a window. */
  const fill = async (present: number) => {
    for (let i = 0; i < present; i++) await broker.presence.add(name, { id: `p${i}`, name: `P ${i}` }, `c-p${i}`)
    const user = { id: 'late', name: 'Late' }
    expect(await broker.presence.add(name, user, 'c-late')).toBe(true)
    events.announce(name, 'join', user)
  }
  const until = async (ms: number) => {
    for (const end = Date.now() + ms; batches.length === 0 && Date.now() < end; ) await Bun.sleep(5)
  }
  return { fill, until, batches, close: () => broker.close() }
}

test('up to WINDOW_USERS present users a window is PRESENCE_BATCH_MS long; a bigger room waits longer in proportion', async () => {
  // 11 present, windowMs 100: a window of 100 ms with 1 000 users a window, of 550 ms with 2.
  const [small, big] = await Promise.all([room(1000), room(2)])
  await Promise.all([small.fill(10), big.fill(10)])
  await small.until(2000)
  expect(small.batches).toHaveLength(1)
  await Bun.sleep(300)
  expect(big.batches).toHaveLength(0)
  await big.until(3000)
  expect(big.batches).toEqual([{ at: expect.any(Number), joined: 1 }])
  await Promise.all([small.close(), big.close()])
})
