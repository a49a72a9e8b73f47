import { isUserTopic, topicRoom, topicUser } from '../core/topic'
import { log } from '../log'
import type { User } from '../protocol/server-frames'
import type { Book } from './ledger'

/** `u`: a user's connections (online/offline); `r`: a room's live members (occupied/vacated). */
export type Kind = 'u' | 'r'

/**
 * The cluster's first (`up`) or last (`down`) of a user or room. `user`: who made it; for an
 * edge no call of this node made (a dead node reaped), the user with the name the ledger kept,
 * and none for a room.
 */
export type Edge = (edge: 'up' | 'down', id: string, user?: User) => void

/**
 * Who is online, cluster-wide: users (topic `u:<user>`) and rooms (`r:<room>`) with a live
 * connection anywhere. The hub reports this node's first and last connection of a topic; each
 * is written once to the ledger's `live` book, whoever follows it (webhooks' online/offline and
 * occupied/vacated, push's offline members): one write per fact.
 */
export interface Online {
  /** From the hub: this node's first connection on a topic. */
  live(topic: string, user: User): void
  /** From the hub: this node's last connection on a topic left. */
  idle(topic: string, user: User): void
  /** Counts `kind` from now on (nothing is counted that nobody follows); `f` hears its edges, a dead node's included. */
  follow(kind: Kind, f?: Edge): void
  /** Which of these users have a live connection anywhere. */
  online(userIds: string[]): Promise<Set<string>>
  /** Lets the writes in flight finish, for at most `ms` (the last offline of a graceful stop). */
  settle(ms: number): Promise<void>
}

/** The `live` book's edges reach these; a ledger calls `onEdge` of a book made before any follower. */
export function ledgerOnline(open: (onEdge: (edge: 'up' | 'down', key: string, member: string, info: string) => void) => Book): Online {
  const followers: Record<Kind, Edge[]> = { u: [], r: [] }
  const counted: Record<Kind, boolean> = { u: false, r: false }
  const tell = (kind: Kind, edge: 'up' | 'down', id: string, user?: User) => {
    for (const f of followers[kind]) f(edge, id, user)
  }
  const book = open((edge, key, member, info) => {
    if (key === 'u') tell(key, edge, member, { id: member, name: info || member })
    else if (key === 'r') tell(key, edge, member)
  })
  const inflight = new Set<Promise<unknown>>()
  const track = (p: Promise<unknown>) => {
    inflight.add(p)
    p.catch((err) => log.warn('liveness not recorded', { err })).finally(() => inflight.delete(p))
  }
  const change = (edge: 'up' | 'down') => (topic: string, user: User) => {
    const kind: Kind = isUserTopic(topic) ? 'u' : 'r'
    if (!counted[kind]) return
    const id = kind === 'u' ? topicUser(topic) : topicRoom(topic)
    if (id === undefined) return
    const first = edge === 'up' ? book.up(kind, id, user.name) : book.down(kind, id)
    track(first.then((yes) => yes && tell(kind, edge, id, user)))
  }
  return {
    live: change('up'),
    idle: change('down'),
    follow(kind, f) {
      counted[kind] = true
      if (f) followers[kind].push(f)
    },
    online: (ids) => book.has('u', ids),
    async settle(ms) {
      await Promise.race([Promise.allSettled([...inflight]), Bun.sleep(ms)])
    },
  }
}
