/**
 * The smallest external store `useSyncExternalStore` needs: a snapshot that is the same object
 * until something changes, and listeners told when it does. Each part of a room (messages,
 * typing, presence, status) is one of these, so a component re-renders only for the part it reads.
 */
export class Store<T> {
  #value: T
  #listeners = new Set<() => void>()

  constructor(initial: T) {
    this.#value = initial
  }

  /** The current snapshot: the same object until `set` is called with another. */
  readonly get = (): T => this.#value

  /** Returns the function that removes the listener (the shape `useSyncExternalStore` wants). */
  readonly subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  set(value: T): void {
    if (Object.is(value, this.#value)) return
    this.#value = value
    for (const l of [...this.#listeners]) l()
  }
}
