import type { Broker } from '../broker/types'
import type { Config } from '../config'
import type { ErrorCode } from '../core/errors'
import type { Identity } from '../core/identity'
import type { Members } from '../members/types'
import type { Metrics } from '../metrics'
import type { ClientFrame, FrameOf } from '../protocol/client-frames'
import type { AuditEntry, Store } from '../store/types'
import type { Uploads } from '../uploads/service'
import type { HubPush } from '../push'
import type { HubWebhooks } from '../webhooks'
import type { Append } from './append'
import type { Conn } from './connection'
import type { Conversations } from './conversations'
import type { Changes } from './changes'
import type { Moderation } from './moderation'
import type { Mutes } from './mutes'
import type { Rooms } from './rooms'
import type { WordFilter } from './word-filter'
import type { Previews } from './previews'
import type { HubThreads } from './threads'

/** What every frame family works with: the engines, the way out to a connection, and the hub's parts. */
export interface HubContext {
  config: Config
  broker: Broker
  metrics: Metrics
  store?: Store
  members: Members
  webhooks?: HubWebhooks
  /** Attachments (uploads); absent in a hub built without them. */
  uploads?: Uploads
  /** Push notifications, when a provider is configured. */
  push?: HubPush
  /** Verifies a `refresh` token; undefined when auth is off. */
  refresh?: (token: string) => Promise<Identity>
  append: Append
  rooms: Rooms
  conversations: Conversations
  changes: Changes
  moderation: Moderation
  mutes: Mutes
  /** The word filter (MODERATION_WORDS_FILE): every text users write for others goes through `words.filterText`. */
  words: WordFilter
  /** Link previews (LINK_PREVIEWS): each accepted chat message is handed to `previews.created`. */
  previews?: Previews
  /** The users' thread lists and thread markers. */
  threads: HubThreads
  send(c: Conn, frame: string, type: keyof Metrics['framesOut']): void
  sendError(c: Conn, code: ErrorCode, message: string, id?: string, retryAfter?: number): void
  audit(entry: AuditEntry): void
  /** Refuses (forbidden) a room the connection may not use: the token's rooms, a direct room's pair. */
  mayUse(c: Conn, room: string, verb: string): Promise<void>
  /** Waits for a join in progress, then refuses (forbidden) a room the connection is not live in. */
  live(c: Conn, room: string): Promise<void>
  /** Makes the connection live in a room it is a member of, its marker at `read`. */
  memberJoin(c: Conn, room: string, read: number, since?: number, id?: string): Promise<void>
}

/** A frame's handler, and whether it answers by itself (else an `ack` follows when the frame has an `id`). */
export interface Handler<F> {
  run(c: Conn, f: F): Promise<void> | void
  answers: boolean
}

export type Handlers<T extends ClientFrame['type']> = { [K in T]: Handler<FrameOf<K>> }

/** The handler sends its own answer (an ack with the message's id, a `joined`, a page). */
export const answering = <F>(run: Handler<F>['run']): Handler<F> => ({ run, answers: true })
/** The hub acks the frame when it carries an `id` and the handler did not throw. */
export const acked = <F>(run: Handler<F>['run']): Handler<F> => ({ run, answers: false })
