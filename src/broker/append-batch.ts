/**
 * A room's appends that wait together go to Redis as one script call (a group commit). Calling
 * a script with its arguments is about half of what Redis spends on a lone plain chat
 * (docs/performance.md, issue 34), so a busy room's messages share that cost.
 *
 * A room has at most one call out. An append to a room with none goes at once, alone, as it
 * always did: a quiet room waits for nothing. The appends that come while a call is out wait
 * for its answer and then go together, at most `max` in one call, in the order they came (the
 * script appends them in that order, each as if alone: a refusal or a duplicate is that event's
 * answer only).
 */
export type SendBatch<A, R> = (room: string, items: A[]) => Promise<R[]>

interface Waiting<A, R> {
  item: A
  resolve: (r: R) => void
  reject: (err: unknown) => void
}

export function appendBatches<A, R>(send: SendBatch<A, R>, max = 64): (room: string, item: A) => Promise<R> {
  /** The rooms with a call out, and what waits for the next one. */
  const out = new Map<string, Waiting<A, R>[]>()

  function flush(room: string, queue: Waiting<A, R>[]) {
    const batch = queue.splice(0, max)
    let sent: Promise<R[]>
    try {
      sent = send(
        room,
        batch.map((w) => w.item),
      )
    } catch (err) {
      sent = Promise.reject(err)
    }
    sent
      .then(
        (results) => {
          for (let i = 0; i < batch.length; i++) {
            if (i < results.length) batch[i]!.resolve(results[i]!)
            else batch[i]!.reject(new Error(`redis: ${results.length} answers to ${batch.length} appends`))
          }
        },
        (err) => {
          for (const w of batch) w.reject(err)
        },
      )
      .finally(() => {
        if (queue.length > 0) flush(room, queue)
        else out.delete(room)
      })
  }

  return (room, item) =>
    new Promise<R>((resolve, reject) => {
      const queue = out.get(room)
      if (queue) return void queue.push({ item, resolve, reject })
      const mine: Waiting<A, R>[] = [{ item, resolve, reject }]
      out.set(room, mine)
      flush(room, mine)
    })
}
