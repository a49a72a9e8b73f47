import { ChatClient } from '@chat-server/client'
import type { Ack, ChatClientOptions, ConnectionState, User } from '@chat-server/client'
import { createContext, useContext, useEffect, useMemo, useState, useSyncExternalStore } from 'react'
import type { ReactNode } from 'react'
import { conversationsOf } from './conversations'
import type { ConversationsView } from './conversations'
import { roomOf } from './room'
import type { RoomOptions, RoomStatus, SendOptions } from './room'
import type { Store } from './store'
import type { MessageRow } from './timeline'

const ClientContext = createContext<ChatClient | null>(null)

export type ChatProviderProps = {
  children?: ReactNode
} & (
  | {
      /** A client made (and closed) by the app. */
      client: ChatClient
      url?: undefined
    }
  | ({
      /** The server's `/ws` endpoint: the provider makes the client, connects it while mounted, and closes it after. */
      url: string
      /** Called before every connection (see the client's `token` option). */
      token?: ChatClientOptions['token']
      client?: undefined
    } & Omit<Partial<ChatClientOptions>, 'url' | 'token' | 'autoConnect'>)
)

/**
 * Gives the components below it one chat client: the app's (`client`), or one made from `url`
 * (and `token`, or `user`/`name` with auth off). The context holds only the client, which never
 * changes: what changes lives in small stores that each hook subscribes to.
 */
export function ChatProvider(props: ChatProviderProps) {
  const { children, client: given, ...options } = props
  // Made once (options read at mount), connected by the effect: StrictMode's mount, unmount, mount reconnects it.
  const [own] = useState(() => (given ? undefined : new ChatClient({ ...(options as ChatClientOptions), autoConnect: false })))
  useEffect(() => {
    if (!own) return
    void own.connect()
    return () => own.close()
  }, [own])
  return <ClientContext.Provider value={given ?? own!}>{children}</ClientContext.Provider>
}

function useClient(): ChatClient {
  const client = useContext(ClientContext)
  if (!client) throw new Error('@chat-server/react: a chat hook is used outside <ChatProvider>')
  return client
}

const useStore = <T,>(store: Store<T>): T => useSyncExternalStore(store.subscribe, store.get, store.get)

export interface ChatView {
  client: ChatClient
  /** The connection: `idle`, `connecting`, `open`, `reconnecting`, `closed`. */
  state: ConnectionState
  /** Who the server says this is (after the first `welcome`). */
  user?: User
}

/** The client, its connection state and its user; re-renders when the state changes. */
export function useChat(): ChatView {
  const client = useClient()
  const subscribe = useMemo(
    () => (fn: () => void) => {
      const offs = [client.on('state', fn), client.on('welcome', fn)]
      return () => {
        for (const off of offs) off()
      }
    },
    [client],
  )
  const state = useSyncExternalStore(
    subscribe,
    () => client.state,
    () => client.state,
  )
  const user = useSyncExternalStore(
    subscribe,
    () => client.user,
    () => client.user,
  )
  return { client, state, user }
}

export interface RoomView {
  /** In seq order, with edits, deletes, reactions, reply quotes and previews applied; unchanged rows keep their object. */
  messages: readonly MessageRow[]
  /** Who is typing now (not this user). */
  typing: readonly User[]
  /** Who is in the room. */
  presence: readonly User[]
  status: RoomStatus
  /** Older messages can be loaded. */
  more: boolean
  loadingOlder: boolean
  /** Why the room is in `error`. */
  error?: string
  /** Sends `body` (a reply with `{ replyTo }`); resolves with the server's ack (`msg`, `seq`). */
  send: (body: string, options?: SendOptions) => Promise<Ack>
  edit: (msg: string, body: string, data?: unknown) => Promise<Ack>
  remove: (msg: string) => Promise<Ack>
  /** Toggles this user's reaction on a message. */
  react: (msg: string, reaction: string) => Promise<Ack>
  /** Reads one older page; resolves with whether more are left. */
  loadOlder: () => Promise<boolean>
  /** Call on every keystroke: at most one `typing` frame per 2 s goes out. */
  sendTyping: () => void
  /** Moves the user's read marker to the room's last message (members' rooms). */
  markRead: () => Promise<void>
}

/**
 * A room: joined (as a member with `{ member: true }`) while a component shows it; its messages,
 * typing users, presence and status, each from its own store; actions that are the same
 * functions on every render (pass them to memo rows freely). Options count from the first
 * component that shows the room.
 */
export function useRoom(room: string, options?: RoomOptions): RoomView {
  const client = useClient()
  const member = options?.member
  const pageSize = options?.pageSize
  // One controller per room of a client: its options are the first caller's.
  const ctl = useMemo(() => roomOf(client, room, { member, pageSize }), [client, room, member, pageSize])
  useEffect(() => ctl.retain(), [ctl])
  const messages = useStore(ctl.timeline.rows)
  const typing = useStore(ctl.typing)
  const presence = useStore(ctl.presence)
  const meta = useStore(ctl.meta)
  return {
    messages,
    typing,
    presence,
    status: meta.status,
    more: meta.more,
    loadingOlder: meta.loadingOlder,
    ...(meta.error === undefined ? {} : { error: meta.error }),
    send: ctl.send,
    edit: ctl.edit,
    remove: ctl.remove,
    react: ctl.react,
    loadOlder: ctl.loadOlder,
    sendTyping: ctl.sendTyping,
    markRead: ctl.markRead,
  }
}

export interface ConversationsResult extends ConversationsView {
  /** Moves the user's read marker in `room` to its last message. */
  markRead: (room: string) => Promise<void>
  /** Reads the list from the server again (done on every connection by itself). */
  reload: () => Promise<void>
}

/** The user's conversations with their `unread` counts and last messages, kept live from the connection. */
export function useConversations(): ConversationsResult {
  const client = useClient()
  const ctl = useMemo(() => conversationsOf(client), [client])
  useEffect(() => ctl.retain(), [ctl])
  const view = useStore(ctl.view)
  return { ...view, markRead: ctl.markRead, reload: ctl.reload }
}
