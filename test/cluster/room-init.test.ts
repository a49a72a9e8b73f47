import { describe, expect } from 'bun:test'
import type { Origin } from '../../src/core/room-log'
import { useRedisBroker } from '../helpers/redis-broker'
import { needService } from '../helpers/services'

// A new room's first reads on a node (a join asks for the position and the settings at once)
// each found no state and read the room's origin. The store's origin creates the room's row on
// the first read, so the second read answered "known" and started the room REBUILT_SEQ_GAP on,
// in another epoch, whenever its INIT reached Redis first (CI: a room that began at seq 1001).
const test = await needService('Redis', 6379)

describe("a room's state is initialised once per node", () => {
  const reads: string[] = []
  // As the store's origin: the first read of a room creates its row (slowly here), later reads
  // find the row ("known") at once.
  const created = new Set<string>()
  async function origin(room: string): Promise<Origin> {
    reads.push(room)
    if (created.has(room)) return { seq: 0, epoch: 'known-epoch', known: true }
    created.add(room)
    await Bun.sleep(50)
    return { seq: 0, epoch: 'new-epoch', known: false }
  }

  const rb = useRedisBroker(test, 'init', { historyLimit: 100, origin })

  test('concurrent first reads of a new room read its origin once: it starts at 0 in its own epoch', async () => {
    const room = 'fresh'
    const [a, b, c] = await Promise.all([rb.broker.position(room), rb.broker.position(room), rb.broker.since(room, 0)])
    expect(reads).toEqual([room])
    expect(a).toMatchObject({ seq: 0, epoch: 'new-epoch' })
    expect(b).toMatchObject({ seq: 0, epoch: 'new-epoch' })
    expect(c.epoch).toBe('new-epoch')
  })
})
