import type { Broker } from '../broker/types'
import type { Book } from '../cluster/ledger'
import { log } from '../log'

/**
 * Sessions of the HTTP faces (SSE, Pusher's xhr transports) live on one node, while a client's
 * next request may reach any node (no sticky sessions). With Redis the holding node records
 * each session in a book of the ledger and watches its node topic; another node asks the book
 * who holds a session and relays the request's payload on that node's topic. On one node there
 * is nothing to record or relay.
 */
export interface SessionRelay {
  /** True when sessions are shared by several nodes (Redis). */
  readonly shared: boolean
  /** This node's topic is watched (once): relayed payloads reach the face's delivery hook. Rejects when Redis cannot. */
  listen(): Promise<void>
  /** The session is held here from now on: recorded in the book (with `info`, e.g. the client's address), this node's topic watched. Rejects when Redis cannot. */
  hold(session: string, info?: string): Promise<void>
  /** The session ended here. */
  drop(session: string): void
  /** The node holding the session and the `info` it recorded, by the book (undefined: no node). */
  holder(session: string): Promise<{ node: string; info: string } | undefined>
  /** A payload to the topic of the node named. */
  send(node: string, payload: string): Promise<void>
}

export interface SessionRelayDeps {
  broker: Pick<Broker, 'kind' | 'watch' | 'relay'>
  nodeId: string
  /** The ledger's book of the face's sessions: key the session, member the holding node. */
  book: Book
  /** The face's node topic (core/topic.ts), whose frames the face's delivery hook owns. */
  topic(node: string): string
}

export function sessionRelay(d: SessionRelayDeps): SessionRelay {
  const shared = d.broker.kind === 'redis'
  /** This node's topic, watched from the first session on. */
  let watching: Promise<void> | undefined
  const listen = async () => {
    if (!shared) return
    watching ??= d.broker.watch(d.topic(d.nodeId)).catch((err) => {
      watching = undefined
      throw err
    })
    await watching
  }
  return {
    shared,
    listen,
    async hold(session, info) {
      if (shared) await Promise.all([listen(), d.book.up(session, d.nodeId, info)])
    },
    drop(session) {
      if (shared) d.book.down(session, d.nodeId).catch((err) => log.warn('session not unrecorded', { err }))
    },
    async holder(session) {
      if (!shared) return undefined
      const fact = (await d.book.list(session, undefined, 1)).facts[0]
      return fact && { node: fact.member, info: fact.info }
    },
    send: (node, payload) => d.broker.relay(d.topic(node), payload),
  }
}
