import { describe, expect, test } from 'bun:test'
import { SmallMap, SmallSet } from '../../src/core/small'

/** A fixed pseudo-random sequence, so that a failure is the same on every run. */
function rng(seed: number) {
  return () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
}

describe('SmallMap and SmallSet behave as Map and Set', () => {
  test('through small and promoted sizes, in content, size and order', () => {
    const r = rng(7)
    const m = new SmallMap<string, number>()
    const ref = new Map<string, number>()
    const s = new SmallSet<string>()
    const sref = new Set<string>()
    for (let step = 0; step < 5000; step++) {
      // Few keys early (the array form), up to 30 later (past the promotion at 8).
      const k = `k${Math.floor(r() * (step < 2500 ? 6 : 30))}`
      const op = r()
      if (op < 0.5) {
        m.set(k, step)
        ref.set(k, step)
        s.add(k)
        sref.add(k)
      } else if (op < 0.95) {
        expect(m.delete(k)).toBe(ref.delete(k))
        expect(s.delete(k)).toBe(sref.delete(k))
      } else {
        m.clear()
        ref.clear()
        s.clear()
        sref.clear()
      }
      expect(m.get(k)).toBe(ref.get(k))
      expect(m.has(k)).toBe(ref.has(k))
      expect(m.size).toBe(ref.size)
      expect([...m]).toEqual([...ref])
      expect(s.has(k)).toBe(sref.has(k))
      expect(s.size).toBe(sref.size)
      expect([...s]).toEqual([...sref])
    }
  })

  test('deleting while iterating visits every entry once, as with a Map', () => {
    const m = new SmallMap<string, number>()
    for (const k of ['a', 'b', 'c']) m.set(k, 1)
    const seen: string[] = []
    for (const k of m.keys()) {
      seen.push(k)
      m.delete(k)
    }
    expect(seen).toEqual(['a', 'b', 'c'])
    expect(m.size).toBe(0)
    const s = new SmallSet(['x', 'y'])
    expect(new Set(s).union(new Set(['z']))).toEqual(new Set(['x', 'y', 'z']))
    expect(s.union(new Set(['z']))).toEqual(new Set(['x', 'y', 'z']))
  })
})
