export { ChatClient, ChatError } from './client'
export type {
  Ack,
  ChatClientOptions,
  ClientEvents,
  Clock,
  ConnectionState,
  HistoryPage,
  Transport,
  WebSocketConstructor,
  WebSocketLike,
} from './client'
export type { ConversationState } from './conversations'
export { SseSocket } from './sse'
export type { FetchLike, SseSocketOptions } from './sse'
export { backoffDelay } from './backoff'
export type { BackoffOptions } from './backoff'
export { jwtExpiry } from './jwt'
export { isSystemMessage } from './system'
export { Emitter } from './emitter'
export { CloseCode } from './types'
export type * from './types'
