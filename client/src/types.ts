/** The wire frames of chat-server protocol v1 and v2 (conversations, message lifecycle, moderation), as a client sees them. */

export interface User {
  id: string
  name: string
  /** Set only on messages the server itself sent (its publish API); no user can carry it. */
  system?: true
}

export interface WelcomeFrame {
  type: 'welcome'
  conn: string
  user: User
  node: string
  /** The rooms the connection is live in from the start: the user's memberships and the default room. */
  rooms: string[]
  /** v2: unread messages over all memberships. */
  unread?: number
  /** Over SSE only: the session that `POST /sse/:session` names (the transport uses it). */
  session?: string
}

/** v2: one reaction value on a message, as `history` shows it. */
export interface Reaction {
  reaction: string
  count: number
  /** The asking user has this reaction. */
  me: boolean
}

/**
 * v2: a message's current state, as `history` shows it (live frames are as sent; the changes
 * come as `edit`, `delete` and `react` events).
 */
export interface MessageState {
  /** The message this one replies to. */
  reply_to?: string
  /** When it was last edited (`body` and `data` are the edited ones). */
  edited_at?: string
  /** Deleted: the server sends no `body` nor `data`; the client sets `body` to `''`. */
  deleted?: true
  /** Absent when it has none. */
  reactions?: Reaction[]
  /** v4: its first link's preview (LINK_PREVIEWS on the server); live, it comes as a `preview` event. */
  preview?: LinkPreview
  /** v4: its replies, once it has one (in `history`, `threads` and search results; live, count the replies you receive). */
  thread?: ThreadSummary
}

/** v4: what a link's page says about itself (og: tags, twitter:, `<title>`, meta description). */
export interface LinkPreview {
  url: string
  title: string
  description?: string
  /** An absolute http(s) URL of the page's image: load it only as the app's policy allows. */
  image?: string
  site_name?: string
}

/** v4: a message's thread: how many replies, the newest one's time, the latest distinct repliers (at most 5, most recent first). */
export interface ThreadSummary {
  count: number
  last_ts: string
  participants: User[]
}

/** v3: an uploaded file a message carries (`POST /api/uploads`); `url` needs the viewer's credentials. */
export interface Attachment {
  id: string
  name: string
  type: string
  size: number
  url: string
  width?: number
  height?: number
}

export interface ChatMessage extends MessageState {
  type: 'chat'
  id: string
  room: string
  seq: number
  from: User
  body: string
  data?: unknown
  attachments?: Attachment[]
  /** v4: the message is a poll (live frames show it as sent; `history` as it stands, with `mine`). */
  poll?: Poll
  ts: string
}

/** v4: a poll as a message carries it. */
export interface Poll {
  question: string
  options: { text: string; votes: number }[]
  multiple: boolean
  /** Votes name no user. */
  anonymous: boolean
  closed: boolean
  /** The options of the asking user's vote (`[]`: none); always there in `history`. */
  mine: number[]
  closes_at?: string
}

/** v4: what `sendPoll` sends (the server makes the rest). */
export interface PollInput {
  question: string
  /** 2..10 options of 1..100 characters. */
  options: string[]
  multiple?: boolean
  anonymous?: boolean
  /** ISO time, ahead: the poll closes by itself then. */
  closes_at?: string
}

/** v4: a user's vote replaced (`options` `[]`: withdrawn); `tallies` are every option's votes after it. */
export interface VoteEvent {
  type: 'vote'
  id: string
  room: string
  seq: number
  /** Absent when the poll is anonymous. */
  user?: User
  msg: string
  options: number[]
  tallies: number[]
  anonymous?: true
  ts: string
}

/** v4: a poll closed (by its author, a moderator, or the server at `closes_at`), with its final tallies. */
export interface PollClosedEvent {
  type: 'poll_closed'
  id: string
  room: string
  seq: number
  by: User
  msg: string
  tallies: number[]
  ts: string
}

/** v4: a room's settings. */
export interface RoomSettings {
  /** A member's chats are at least this many seconds apart (owners and moderators exempt); 0: off. */
  slow_mode_s: number
}

/** v4: an owner, a moderator or the server changed the room's settings. */
export interface SettingsEvent extends RoomSettings {
  type: 'settings'
  id: string
  room: string
  seq: number
  by: User
  ts: string
}

/** v2: a message of a direct room (the pair's conversation), sequenced like chat. */
export interface DirectMessage extends MessageState {
  type: 'dm'
  id: string
  /** The pair's direct room (`dm:` + 40 hex digits, named by the server). */
  room: string
  seq: number
  from: User
  to: string
  body: string
  data?: unknown
  attachments?: Attachment[]
  ts: string
}

export interface AckFrame {
  type: 'ack'
  id: string
  /** v4: the id of a scheduled message (a `chat` or `dm` with `send_at`), and its time. */
  scheduled?: string
  send_at?: string
  /** Server message id (chat, dm). */
  msg?: string
  /** The message's seq in its room (chat, dm). */
  seq?: number
  /** v2: the room of a dm (its direct room). */
  room?: string
}

export interface JoinedFrame {
  type: 'joined'
  room: string
  seq: number
  epoch: string
  recovered: boolean
  id?: string
  /** v2: the user is a member of the room; then `read` and `unread` are set. */
  member?: true
  /** v2: the user's read marker (the last seq read). */
  read?: number
  /** v2: messages by others after the marker (exact up to 999; 1000 means more). */
  unread?: number
  /** v2: the user's role in the room; only in the answer to a `join` (not in direct rooms). */
  role?: Role
  /** v4: the room's settings. */
  settings?: RoomSettings
}

/** v2: a user's role in a room (token claim `roles`, or the server API). */
export type Role = 'owner' | 'moderator' | 'member'

export interface LeftFrame {
  type: 'left'
  room: string
  /** Why the server took the connection out (when it did so unasked): `banned`, `kicked`. */
  reason?: 'banned' | 'kicked' | (string & {})
  id?: string
}

/** A message of a room's log: chat, or dm in a direct room. */
export type RoomMessage = ChatMessage | DirectMessage

/** v2: the author (or the server API) changed a message's body and data. */
export interface EditEvent {
  type: 'edit'
  /** The event's own id; `msg` is the message it changes. */
  id: string
  room: string
  seq: number
  msg: string
  by: User
  body: string
  data?: unknown
  ts: string
}

/** v2: a message was deleted, by its author or a moderator (or the server API). */
export interface DeleteEvent {
  type: 'delete'
  id: string
  room: string
  seq: number
  msg: string
  by: User
  ts: string
}

/** v2: a user added (`op: "add"`) or removed a reaction on a message. */
export interface ReactEvent {
  type: 'react'
  id: string
  room: string
  seq: number
  msg: string
  user: User
  reaction: string
  op: 'add' | 'remove'
  ts: string
}

export type ModerationAction = 'mute' | 'unmute' | 'ban' | 'unban' | 'kick'

/** v2: a moderator (or the server API, `by.id === "server"`) acted on `user` in the room. */
export interface ModerationEvent {
  type: 'moderation'
  id: string
  room: string
  seq: number
  action: ModerationAction
  user: User
  by: User
  /** With `mute`: when it ends. */
  until?: string
  reason?: string
  ts: string
}

/** v4: the server attached a link preview to message `msg` (each message its own event). */
export interface PreviewEvent {
  type: 'preview'
  id: string
  room: string
  seq: number
  msg: string
  /** The server (`system: true`). */
  by: User
  preview: LinkPreview
  ts: string
}

/** v2: an event of a room's sequence that changes a message or a user's standing. */
export type ChangeEvent = EditEvent | DeleteEvent | ReactEvent | ModerationEvent | PreviewEvent

/** The answer to `search`: matching messages as they stand, newest first, and a cursor while there are more. */
export interface SearchFrame {
  type: 'search'
  results: RoomMessage[]
  cursor?: string
  id?: string
}

/** One pinned message of a room: who pinned it, when, and the message as it stands (when the server still has it). */
export interface Pin {
  msg: string
  by: User
  ts: string
  message?: RoomMessage
}

export interface PinsFrame {
  type: 'pins'
  room: string
  pins: Pin[]
  id?: string
}

export interface HistoryFrame {
  type: 'history'
  room: string
  /** Oldest first: every event of the page (messages in their current state, and the changes). */
  messages: (RoomMessage | ChangeEvent)[]
  more: boolean
  id?: string
}

/**
 * A `presence` frame: an answer (one page of `users`, the room's `count`, `next` when more
 * pages follow), one user's `join`/`leave`, or, in a room above the server's
 * PRESENCE_EVENTS_MAX, a `batch` of the users who `joined` and `left` in one window
 * (`truncated`: more did than the lists hold; ask `presence` for the whole list).
 */
export type PresenceFrame =
  | { type: 'presence'; room: string; users: User[]; count: number; next?: string; id?: string; event?: undefined; user?: undefined }
  | { type: 'presence'; room: string; event: 'join' | 'leave'; user: User; users?: undefined; id?: undefined }
  | PresenceBatch

export interface PresenceBatch {
  type: 'presence'
  room: string
  event: 'batch'
  joined: User[]
  left: User[]
  /** The room's present users, cluster-wide. */
  count: number
  truncated?: true
  user?: undefined
  users?: undefined
  id?: undefined
}

/** One page of a room's presence (`client.presence(room, { limit, cursor })`). */
export interface PresencePage {
  users: User[]
  /** The room's present users, cluster-wide. */
  count: number
  /** The `cursor` of the next page; absent on the last. */
  next?: string
}

export interface TypingFrame {
  type: 'typing'
  room: string
  user: User
}

/** v2: one entry of the conversation list (`rooms`). */
export interface Conversation {
  room: string
  kind: 'room' | 'direct'
  /** The other user of a direct conversation. */
  with?: User
  /** The room's last seq and its epoch. */
  seq: number
  epoch: string
  /** The user's read marker. */
  read: number
  /** Messages by others after the marker (exact up to 999; 1000 means more). */
  unread: number
  /** The last message. */
  last?: RoomMessage
}

/** v2: the answer to `rooms`: the user's memberships, most recently active first. */
export interface RoomsFrame {
  type: 'rooms'
  rooms: Conversation[]
  more: boolean
  /** Cursor for the next page (`before`). */
  next?: string
  id?: string
}

/** v2: a user's read marker moved (a read receipt; also to the user's own connections). */
export interface ReadFrame {
  type: 'read'
  room: string
  user: User
  seq: number
}

export interface PongFrame {
  type: 'pong'
  id?: string
}

export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'rate_limited'
  | 'too_large'
  | 'unavailable'
  | 'internal'
  | 'not_found'
  | 'limit'
  /** The word filter refused the text (MODERATION_WORDS_ACTION=reject). */
  | 'rejected'
  | 'closed'
  | 'slow_mode'

export interface ErrorFrame {
  type: 'error'
  code: ErrorCode
  message: string
  /** v4: seconds to wait before sending again (`slow_mode`). */
  retry_after?: number
  id?: string
  /** v4: a scheduled message refused at its time (sent to its author's connections). */
  scheduled?: string
}

/** v4: one of the user's threads (started or replied in): its root as it stands, its count, last activity and unread replies. */
export interface ThreadEntry {
  room: string
  msg: string
  root: RoomMessage
  count: number
  last_ts: string
  /** Replies by others above the user's marker in this thread (`readThread` moves it). */
  unread: number
}

/** v4: the answer to `threads`, most recently active first; `next` is the `before` of the following page. */
export interface ThreadsFrame {
  type: 'threads'
  threads: ThreadEntry[]
  more: boolean
  next?: string
  id?: string
}

/** v4: one of the user's pending scheduled messages. */
export interface ScheduledMessage {
  scheduled: string
  room?: string
  to?: string
  body: string
  data?: unknown
  send_at: string
}

/** v4: the answer to `scheduled`. */
export interface ScheduledFrame {
  type: 'scheduled'
  messages: ScheduledMessage[]
  id?: string
}

export type ServerFrame =
  | WelcomeFrame
  | ChatMessage
  | DirectMessage
  | AckFrame
  | JoinedFrame
  | LeftFrame
  | HistoryFrame
  | PresenceFrame
  | TypingFrame
  | PongFrame
  | ErrorFrame
  | RoomsFrame
  | ReadFrame
  | SearchFrame
  | PinsFrame
  | ThreadsFrame
  | ScheduledFrame
  | EditEvent
  | DeleteEvent
  | ReactEvent
  | ModerationEvent
  | PreviewEvent
  | VoteEvent
  | PollClosedEvent
  | SettingsEvent

/** Close codes the server uses. */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  policy: 1008,
  tooBig: 1009,
  tokenExpired: 4001,
  slowConsumer: 4008,
} as const
