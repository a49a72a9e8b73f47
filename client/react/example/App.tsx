import { useChat, useConversations, useRoom } from '@chat-server/react'
import type { MessageRow, SendOptions } from '@chat-server/react'
import type { ConversationState, User } from '@chat-server/client'
import { memo, useEffect, useLayoutEffect, useRef, useState } from 'react'
import type { FormEvent } from 'react'

/** A small chat: the conversation list with unread badges, and the selected room. */
export function App({ rooms }: { rooms: string[] }) {
  const { client, state, user } = useChat()
  const [current, setCurrent] = useState(rooms[0])
  // Become a member of the starting rooms: they are listed, and count unread while not shown.
  useEffect(() => {
    for (const room of rooms) client.joinAsMember(room).catch((err) => console.warn('could not join', room, err.message))
  }, [client, rooms])
  return (
    <div className="app">
      <header>
        <span id="status" data-state={state}>
          {state}
        </span>{' '}
        {user?.name}
      </header>
      <ConversationList current={current} onSelect={setCurrent} />
      {/* key: a new room is a new view (its own scroll, draft and reply) */}
      {current && <RoomView key={current} room={current} />}
    </div>
  )
}

function ConversationList({ current, onSelect }: { current?: string; onSelect: (room: string) => void }) {
  const { conversations, unreadTotal } = useConversations()
  return (
    <nav className="conversations">
      <h2>Conversations {unreadTotal > 0 && <span className="badge total">{unreadTotal}</span>}</h2>
      <ul>
        {conversations.map((c) => (
          <ConversationItem key={c.room} c={c} active={c.room === current} onSelect={onSelect} />
        ))}
      </ul>
    </nav>
  )
}

/** Memo: a conversation object changes only when that conversation did, so the other items skip rendering. */
const ConversationItem = memo(function ConversationItem({
  c,
  active,
  onSelect,
}: {
  c: ConversationState
  active: boolean
  onSelect: (room: string) => void
}) {
  return (
    <li>
      <button type="button" className="conversation" data-room={c.room} aria-current={active} onClick={() => onSelect(c.room)}>
        <span className="name">{c.kind === 'direct' ? (c.with?.name ?? 'direct') : `#${c.room}`}</span>
        {c.unread > 0 && <span className="badge unread">{c.unread >= 1000 ? '999+' : c.unread}</span>}
        {c.last && (
          <small className="last">
            {c.last.from.name}: {c.last.deleted ? 'message deleted' : c.last.body}
          </small>
        )}
      </button>
    </li>
  )
})

function RoomView({ room }: { room: string }) {
  const { messages, typing, presence, status, more, loadOlder, send, sendTyping, react, edit, remove, markRead, error } = useRoom(room, {
    member: true,
  })
  const [replyTo, setReplyTo] = useState<MessageRow>()
  const list = useRef<HTMLOListElement>(null)
  const last = messages.at(-1)?.seq
  // The room is on screen: what it shows is read (the unread badge clears, here and on the user's other devices).
  useEffect(() => {
    if (status === 'ready' && last !== undefined) markRead().catch(() => {})
  }, [status, last, markRead])
  // Follow new messages.
  useLayoutEffect(() => {
    if (last !== undefined) list.current?.lastElementChild?.scrollIntoView({ block: 'end' })
  }, [last])
  return (
    <main className="room" data-room={room} data-status={status}>
      <header>
        <h1>#{room}</h1>
        <span className="presence">{presence.map((u) => u.name).join(', ')}</span>
        {error && <span className="error">{error}</span>}
      </header>
      {more && (
        <button type="button" className="older" onClick={() => loadOlder().catch(() => {})}>
          Load older messages
        </button>
      )}
      <ol className="messages" ref={list}>
        {messages.map((m) => (
          <Message key={m.id} m={m} onReply={setReplyTo} onReact={react} onEdit={edit} onRemove={remove} />
        ))}
      </ol>
      <Typing users={typing} />
      <Composer replyTo={replyTo} onCancelReply={() => setReplyTo(undefined)} onSend={send} onTyping={sendTyping} />
    </main>
  )
}

interface MessageProps {
  m: MessageRow
  onReply: (m: MessageRow) => void
  onReact: (msg: string, reaction: string) => Promise<unknown>
  onEdit: (msg: string, body: string) => Promise<unknown>
  onRemove: (msg: string) => Promise<unknown>
}

/**
 * Memo: `m` is the same object until this message changes, and the handlers are the same
 * functions on every render, so a new message renders one row, not the whole list.
 * (`data-renders` counts this row's renders: the example's test reads it.)
 */
const Message = memo(function Message({ m, onReply, onReact, onEdit, onRemove }: MessageProps) {
  const renders = useRef(0)
  renders.current += 1
  const [editing, setEditing] = useState(false)
  const save = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault()
    const body = new FormData(e.currentTarget).get('body')
    setEditing(false)
    if (typeof body === 'string' && body.trim() && body !== m.body) onEdit(m.id, body.trim()).catch(() => {})
  }
  return (
    <li
      className={`msg${m.mine ? ' mine' : ''}${m.deleted ? ' deleted' : ''}${m.system ? ' system' : ''}`}
      data-id={m.id}
      data-seq={m.seq}
      data-from={m.from.id}
      data-renders={renders.current}
    >
      {m.replyTo && (
        <blockquote className="quote">
          {m.replyTo.from.name}: {m.replyTo.deleted ? 'message deleted' : m.replyTo.body}
        </blockquote>
      )}
      <span className="from">{m.from.name}</span>{' '}
      {editing ? (
        <form className="edit-form" onSubmit={save}>
          <input name="body" defaultValue={m.body} aria-label="edit message" />
        </form>
      ) : (
        <span className="body">{m.deleted ? 'message deleted' : m.body}</span>
      )}
      {m.edited_at && !m.deleted && <span className="edited"> (edited)</span>}
      {m.preview && (
        <a className="preview" href={m.preview.url} rel="noreferrer noopener" target="_blank">
          {m.preview.title}
        </a>
      )}
      <span className="reactions">
        {m.reactions.map((r) => (
          <button type="button" key={r.reaction} data-reaction={r.reaction} aria-pressed={r.me} onClick={() => onReact(m.id, r.reaction)}>
            {r.reaction} {r.count}
          </button>
        ))}
      </span>
      {!m.deleted && (
        <span className="actions">
          <button type="button" className="react" onClick={() => onReact(m.id, '👍')}>
            👍
          </button>
          <button type="button" className="reply" onClick={() => onReply(m)}>
            Reply
          </button>
          {m.mine && (
            <button type="button" className="edit" onClick={() => setEditing(true)}>
              Edit
            </button>
          )}
          {m.mine && (
            <button type="button" className="delete" onClick={() => onRemove(m.id).catch(() => {})}>
              Delete
            </button>
          )}
        </span>
      )}
    </li>
  )
})

function Typing({ users }: { users: readonly User[] }) {
  if (users.length === 0) return <div className="typing" />
  const names = users.map((u) => u.name).join(', ')
  return (
    <div className="typing" aria-live="polite">
      {names} {users.length === 1 ? 'is' : 'are'} typing…
    </div>
  )
}

function Composer({
  replyTo,
  onCancelReply,
  onSend,
  onTyping,
}: {
  replyTo?: MessageRow
  onCancelReply: () => void
  onSend: (body: string, options?: SendOptions) => Promise<unknown>
  onTyping: () => void
}) {
  const [text, setText] = useState('')
  const [failed, setFailed] = useState<string>()
  const submit = (e: FormEvent) => {
    e.preventDefault()
    const body = text.trim()
    if (!body) return
    setText('')
    setFailed(undefined)
    onSend(body, replyTo ? { replyTo: replyTo.id } : undefined).catch((err: Error) => setFailed(`not sent: ${err.message}`))
    onCancelReply()
  }
  return (
    <form className="composer" onSubmit={submit}>
      {replyTo && (
        <div className="replying">
          Replying to {replyTo.from.name}: {replyTo.body}{' '}
          <button type="button" onClick={onCancelReply} aria-label="do not reply">
            ×
          </button>
        </div>
      )}
      {failed && <div className="failed">{failed}</div>}
      <input
        id="text"
        value={text}
        placeholder="Message"
        autoComplete="off"
        aria-label="message"
        onChange={(e) => {
          setText(e.target.value)
          if (e.target.value) onTyping()
        }}
      />
      <button type="submit">Send</button>
    </form>
  )
}
