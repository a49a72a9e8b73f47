import type { ChatClient, ConversationState } from '@chat-server/client'
import { Store } from './store'

export interface ConversationsView {
  /** The user's memberships, most recently active first; an unchanged conversation keeps its object. */
  conversations: readonly ConversationState[]
  /** Unread messages over all of them. */
  unreadTotal: number
  /** The first `rooms` answer arrived (until then `with` and `last` may be missing). */
  loaded: boolean
}

/**
 * The client's conversation list as a store: refreshed from the client's `conversation`,
 * `membership` and `unread` events (no polling), and read from the server (`rooms`) on every
 * connection, which names the other user of direct rooms and each room's last message.
 */
export class ConversationsController {
  readonly view = new Store<ConversationsView>({ conversations: [], unreadTotal: 0, loaded: false })
  #off: (() => void)[] = []
  #retained = 0

  constructor(readonly client: ChatClient) {}

  retain(): () => void {
    if (this.#retained++ === 0) this.#start()
    let released = false
    return () => {
      if (released) return
      released = true
      if (--this.#retained === 0) for (const off of this.#off.splice(0)) off()
    }
  }

  /** Moves the user's read marker in `room` to its last message. */
  readonly markRead = async (room: string): Promise<void> => {
    const c = this.client.conversation(room)
    if (!c || c.read >= c.seq) return
    await this.client.markRead(room)
  }

  /** Reads the list from the server again. */
  readonly reload = async (): Promise<void> => {
    await this.client.loadConversations({ limit: 100 })
    this.#publish(true)
  }

  #start() {
    const c = this.client
    const publish = () => this.#publish()
    this.#off.push(
      c.on('conversation', publish),
      c.on('membership', publish),
      c.on('unread', publish),
      c.on('welcome', () => void this.reload().catch(() => {})),
    )
    this.#publish()
    if (c.state === 'open') void this.reload().catch(() => {})
  }

  #publish(loaded = this.view.get().loaded) {
    const before = this.view.get()
    const list = this.client.conversations
    const same = list.length === before.conversations.length && list.every((c, i) => c === before.conversations[i])
    const unreadTotal = this.client.unreadTotal
    if (same && unreadTotal === before.unreadTotal && loaded === before.loaded) return
    this.view.set({ conversations: same ? before.conversations : list, unreadTotal, loaded })
  }
}

const lists = new WeakMap<ChatClient, ConversationsController>()

export function conversationsOf(client: ChatClient): ConversationsController {
  let c = lists.get(client)
  if (!c) lists.set(client, (c = new ConversationsController(client)))
  return c
}
