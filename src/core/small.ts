/**
 * Map and Set for the few entries a connection holds (its rooms, its memberships, the
 * connections of one user): the entries in one array until there are more than SMALL, then a
 * real Map or Set. JSC gives a Map or Set a hash table of ~220 bytes on its first entry; a
 * socket in one room held several, most of an idle socket's JS memory.
 *
 * Same behaviour as Map and Set, iteration order included; iterating while deleting is safe
 * (it walks a copy in the array form, as a Map's iterator tolerates deletion).
 */
const SMALL = 8

export class SmallMap<K, V> implements Map<K, V> {
  /** k0, v0, k1, v1, … while small. */
  private a: unknown[] = []
  private m: Map<K, V> | undefined

  get size() {
    return this.m ? this.m.size : this.a.length >> 1
  }
  private find(k: K) {
    const a = this.a
    for (let i = 0; i < a.length; i += 2) if (a[i] === k) return i
    return -1
  }
  get(k: K): V | undefined {
    if (this.m) return this.m.get(k)
    const i = this.find(k)
    return i < 0 ? undefined : (this.a[i + 1] as V)
  }
  has(k: K) {
    return this.m ? this.m.has(k) : this.find(k) >= 0
  }
  set(k: K, v: V) {
    if (this.m) {
      this.m.set(k, v)
      return this
    }
    const i = this.find(k)
    if (i >= 0) this.a[i + 1] = v
    else if (this.a.length === 0)
      this.a = [k, v] // exactly sized: most hold one entry for life
    else if (this.a.length < 2 * SMALL) this.a.push(k, v)
    else {
      this.m = new Map(this.entries())
      this.m.set(k, v)
      this.a = []
    }
    return this
  }
  delete(k: K) {
    if (this.m) return this.m.delete(k)
    const i = this.find(k)
    if (i < 0) return false
    this.a.splice(i, 2)
    return true
  }
  clear() {
    this.m = undefined
    this.a = []
  }
  forEach(f: (v: V, k: K, map: Map<K, V>) => void, self?: unknown) {
    for (const [k, v] of this.entries()) f.call(self, v, k, this)
  }
  *entries(): MapIterator<[K, V]> {
    if (this.m) return yield* this.m.entries()
    const a = this.a.slice()
    for (let i = 0; i < a.length; i += 2) yield [a[i] as K, a[i + 1] as V]
  }
  *keys(): MapIterator<K> {
    for (const [k] of this.entries()) yield k
  }
  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v
  }
  [Symbol.iterator]() {
    return this.entries()
  }
  get [Symbol.toStringTag]() {
    return 'Map'
  }
}

export class SmallSet<T> implements Set<T> {
  private a: T[] = []
  private s: Set<T> | undefined

  constructor(values?: Iterable<T>) {
    if (values) for (const v of values) this.add(v)
  }
  get size() {
    return this.s ? this.s.size : this.a.length
  }
  has(v: T) {
    return this.s ? this.s.has(v) : this.a.includes(v)
  }
  add(v: T) {
    if (this.s) this.s.add(v)
    else if (!this.a.includes(v)) {
      if (this.a.length === 0)
        this.a = [v] // exactly sized: most hold one entry for life
      else if (this.a.length < SMALL) this.a.push(v)
      else {
        this.s = new Set(this.a)
        this.s.add(v)
        this.a = []
      }
    }
    return this
  }
  delete(v: T) {
    if (this.s) return this.s.delete(v)
    const i = this.a.indexOf(v)
    if (i < 0) return false
    this.a.splice(i, 1)
    return true
  }
  clear() {
    this.s = undefined
    this.a = []
  }
  forEach(f: (v: T, v2: T, set: Set<T>) => void, self?: unknown) {
    for (const v of this.values()) f.call(self, v, v, this)
  }
  *values(): SetIterator<T> {
    if (this.s) return yield* this.s.values()
    yield* this.a.slice()
  }
  keys() {
    return this.values()
  }
  *entries(): SetIterator<[T, T]> {
    for (const v of this.values()) yield [v, v]
  }
  [Symbol.iterator]() {
    return this.values()
  }
  get [Symbol.toStringTag]() {
    return 'Set'
  }
  // The set algebra of ES2025, on a real Set (nothing here uses it per message).
  union<U>(o: ReadonlySetLike<U>) {
    return new Set(this).union(o)
  }
  intersection<U>(o: ReadonlySetLike<U>) {
    return new Set(this).intersection(o)
  }
  difference<U>(o: ReadonlySetLike<U>) {
    return new Set(this).difference(o)
  }
  symmetricDifference<U>(o: ReadonlySetLike<U>) {
    return new Set(this).symmetricDifference(o)
  }
  isSubsetOf(o: ReadonlySetLike<unknown>) {
    return new Set(this).isSubsetOf(o)
  }
  isSupersetOf(o: ReadonlySetLike<unknown>) {
    return new Set(this).isSupersetOf(o)
  }
  isDisjointFrom(o: ReadonlySetLike<unknown>) {
    return new Set(this).isDisjointFrom(o)
  }
}

/**
 * A flat copy of a string that a connection keeps for its life: not a slice of the upgrade
 * request's URL (which keeps the whole URL), nor a rope of the pieces it was made of (a cell
 * for each). Once per connection, never per message.
 */
export const flat = (s: string): string => JSON.parse(JSON.stringify(s))
