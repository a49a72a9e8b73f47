/** The wire frames of chat-server protocol v1, as a client sees them. */

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
  rooms: string[]
}

export interface ChatMessage {
  type: 'chat'
  id: string
  room: string
  seq: number
  from: User
  body: string
  data?: unknown
  ts: string
}

export interface DirectMessage {
  type: 'dm'
  id: string
  from: User
  to: string
  body: string
  data?: unknown
  ts: string
}

export interface AckFrame {
  type: 'ack'
  id: string
  /** Server message id (chat, dm). */
  msg?: string
  /** The message's seq in its room (chat). */
  seq?: number
}

export interface JoinedFrame {
  type: 'joined'
  room: string
  seq: number
  epoch: string
  recovered: boolean
  id?: string
}

export interface LeftFrame {
  type: 'left'
  room: string
  id?: string
}

export interface HistoryFrame {
  type: 'history'
  room: string
  messages: ChatMessage[]
  more: boolean
  id?: string
}

export type PresenceFrame =
  | { type: 'presence'; room: string; users: User[]; id?: string; event?: undefined; user?: undefined }
  | { type: 'presence'; room: string; event: 'join' | 'leave'; user: User; users?: undefined; id?: undefined }

export interface TypingFrame {
  type: 'typing'
  room: string
  user: User
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

export interface ErrorFrame {
  type: 'error'
  code: ErrorCode
  message: string
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

/** Close codes the server uses. */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  policy: 1008,
  tooBig: 1009,
  tokenExpired: 4001,
  slowConsumer: 4008,
} as const
