import type { Broker } from '../broker/types'
import { FrameError } from '../core/errors'
import type { Identity, User } from '../core/identity'
import type { Threads } from '../members/threads'
import { eventSeq, threadJson } from '../protocol/server-frames'
import type { Store } from '../store/types'
import type { Changes } from './changes'
import type { Conversations } from './conversations'
import type { Rooms } from './rooms'

/** A page of a user's thread list: encoded thread objects and the cursor of the next page. */
export interface ThreadListPage {
  threads: string[]
  more: boolean
  next?: string
}

/** The users' thread lists and thread markers (PROTOCOL-v4 Threads), on the Threads engine. */
export interface HubThreads {
  /** A reply by `from` (seq, ts) to `parent` was accepted by the room's log: the lists follow it. */
  replied(room: string, parent: string, from: User, seq: number, ts: string): Promise<void>
  /** The threads `identity` started or replied in, most recently active first, each with its root as it stands. */
  list(identity: Identity, opts: { room?: string; before?: string; limit: number }): Promise<ThreadListPage>
  /** Moves the user's marker in a thread (the room's marker stays). */
  read(room: string, msg: string, user: string, seq: number): Promise<number>
}

export function createHubThreads(deps: {
  broker: Broker
  store?: Pick<Store, 'messages'>
  threads: Threads
  rooms: Pick<Rooms, 'page'>
  changes: Pick<Changes, 'present'>
  conversations: Pick<Conversations, 'mayUse'>
}): HubThreads {
  const { broker, store, threads, rooms, changes, conversations } = deps

  async function replied(room: string, parent: string, from: User, seq: number, ts: string) {
    // The root's seq and author: the sequencer just checked it exists (its state, or the store's copy).
    let root = (await broker.messages?.(room, [parent]))?.get(parent)
    if (!root && store) root = (await store.messages(room, [parent])).get(parent)
    if (!root) return
    await threads.replied({ room, msg: parent, rootSeq: root.seq, rootAuthor: root.author, seq, from: from.id, ts })
  }

  async function list(identity: Identity, opts: { room?: string; before?: string; limit: number }): Promise<ThreadListPage> {
    let before: number | undefined
    if (opts.before !== undefined) {
      before = Date.parse(opts.before)
      if (Number.isNaN(before)) throw new FrameError('bad_request', "before: must be an ISO 8601 time (a previous answer's next)")
    }
    const user = identity.user.id
    const page = await threads.list(user, { room: opts.room, before, limit: opts.limit })
    const shown = await Promise.all(
      page.threads.map(async (t) => {
        // A thread of a room the user may no longer use (a token's rooms, a direct room) is not shown.
        if (!(await conversations.mayUse(identity, t.room))) return undefined
        const p = await rooms.page(t.room, t.rootSeq + 1, 1)
        const raw = p.frames.filter((f) => eventSeq(f) === t.rootSeq)
        if (!raw.length) return undefined
        const [root] = (await changes.present(t.room, { frames: raw, more: false }, user)).frames
        return threadJson({ ...t, root: root! })
      }),
    )
    const last = page.threads[page.threads.length - 1]
    return { threads: shown.filter((x): x is string => x !== undefined), more: page.more, next: page.more ? last?.last_ts : undefined }
  }

  return { replied, list, read: threads.read }
}
