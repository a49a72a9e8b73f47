/**
 * True when a parsed JSON value nests arrays/objects deeper than `max` (a scalar is depth 0,
 * `[]` and `{}` depth 1). Iterative, so it cannot overflow the stack itself: it runs before
 * zod, whose recursive `z.json()` throws RangeError on ~10 000 levels (60 KB of `[`), which
 * fits in a frame. Stops at the first level past `max`.
 */
export function deeperThan(value: unknown, max: number): boolean {
  if (value === null || typeof value !== 'object') return false
  const stack: [object, number][] = [[value, 1]]
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!
    if (depth > max) return true
    const children = Array.isArray(v) ? v : Object.values(v)
    for (const c of children) if (c !== null && typeof c === 'object') stack.push([c, depth + 1])
  }
  return false
}
