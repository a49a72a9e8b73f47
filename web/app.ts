/**
 * The demo chat page: plain DOM, the @chat-server/client package underneath. Every piece of
 * user-supplied text is put on the page with `textContent`, never parsed as HTML.
 */
import { ChatClient, isSystemMessage } from '../client/src/index'
import type { DirectMessage, RoomMessage, User } from '../client/src/index'

const params = new URLSearchParams(location.search)
const name = (params.get('name') ?? '').trim().slice(0, 64) || undefined
const token = params.get('token') ?? undefined
/** With auth off the server takes `?user=`: derive a stable id from the name. */
const derived = name ? name.toLowerCase().replace(/[^a-z0-9_.:@-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64) || undefined : undefined
/** `server` is the server's own id (refused to connections): a person named Server gets another. */
const userId = derived === 'server' ? 'user-server' : derived
const extraRooms = (params.get('rooms') ?? '').split(',').map((r) => r.trim()).filter(Boolean)

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T
const el = <K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string) => {
  const e = document.createElement(tag)
  if (className) e.className = className
  if (text !== undefined) e.textContent = text
  return e
}

const ui = {
  me: $('me'),
  status: $('status'),
  rooms: $<HTMLUListElement>('rooms'),
  users: $<HTMLUListElement>('users'),
  roomLabel: $('room-label'),
  messages: $<HTMLDivElement>('messages'),
  typing: $('typing'),
  sendForm: $<HTMLFormElement>('send-form'),
  text: $<HTMLInputElement>('text'),
  joinForm: $<HTMLFormElement>('join-form'),
  joinName: $<HTMLInputElement>('join-name'),
}

interface RoomView {
  /** One list per epoch of the room: a restart of the server's sequence opens a new one. */
  segment: HTMLElement[]
  list: HTMLOListElement
  ids: Set<string>
  users: Map<string, User>
  typing: Map<string, { name: string; until: number }>
  /** Counted here only for a room that is no membership (the client counts the others). */
  unread: number
  historyLoaded: boolean
  /** A direct conversation not written yet: the user to write to (its room comes with the first dm). */
  draft?: User
}

/** Keys of views: room names, or `@<user id>` for a draft (no room name holds `@`). */
const views = new Map<string, RoomView>()
let current = ''
/** The other user of direct rooms this page started, until the conversation list names them. */
const partners = new Map<string, User>()

const url = new URL('/ws', location.href)
url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:'
const client = new ChatClient({ url: url.toString(), token: token ? () => token : undefined, user: token ? undefined : userId, name: token ? undefined : name, rooms: extraRooms })
;(globalThis as { chat?: ChatClient }).chat = client // for the console (and tests)

const me = () => client.user?.id
const isDirect = (room: string) => client.conversation(room)?.kind === 'direct' || room.startsWith('dm:')
const partnerOf = (room: string): User | undefined => partners.get(room) ?? client.conversation(room)?.with ?? views.get(room)?.draft

function view(room: string, draft?: User): RoomView {
  let v = views.get(room)
  if (!v) {
    const list = el('ol', 'room-log')
    list.dataset.room = room
    list.hidden = true
    ui.messages.append(list)
    v = { segment: [], list, ids: new Set(), users: new Map(), typing: new Map(), unread: 0, historyLoaded: false, draft }
    views.set(room, v)
    if (!current) select(room)
    renderRooms()
  }
  return v
}

function drop(room: string) {
  const v = views.get(room)
  if (!v) return
  v.list.remove()
  views.delete(room)
  if (current === room) {
    current = ''
    const next = views.keys().next()
    if (!next.done) select(next.value)
  }
  renderRooms()
}

function select(room: string) {
  current = room
  const v = view(room)
  v.unread = 0
  for (const other of views.values()) other.list.hidden = other !== v
  renderHeader()
  renderRooms()
  renderUsers()
  renderTyping()
  ui.messages.scrollTop = ui.messages.scrollHeight
  markReadIfSeen()
}

/** What names the open conversation: the label beside "Online" and the input's placeholder. */
function renderHeader() {
  if (!current) return
  ui.roomLabel.textContent = `in ${label(current)}`
  ui.text.placeholder = views.get(current)?.draft || isDirect(current) ? `Write to ${partnerOf(current)?.name ?? 'them'}` : 'Write a message'
}

function label(room: string): string {
  if (!views.get(room)?.draft && !isDirect(room)) return `# ${room}`
  return `@ ${partnerOf(room)?.name ?? 'direct conversation'}`
}

const badge = (n: number) => (n > 999 ? '999+' : String(n))

/** Conversations first, most recently active on top (the client's order), then other rooms and drafts. */
function renderRooms() {
  const order = client.conversations.map((c) => c.room).filter((r) => views.has(r))
  for (const r of views.keys()) if (!order.includes(r)) order.push(r)
  ui.rooms.replaceChildren(
    ...order.map((room) => {
      const v = views.get(room)!
      const li = el('li')
      li.dataset.room = room
      li.dataset.kind = v.draft || isDirect(room) ? 'direct' : 'room'
      const partner = partnerOf(room)
      if (partner && li.dataset.kind === 'direct') li.dataset.with = partner.id
      li.append(el('span', 'name', label(room)))
      const unread = client.conversation(room)?.unread ?? v.unread
      if (unread > 0 && room !== current) li.append(el('span', 'unread', badge(unread)))
      if (room === current) li.setAttribute('aria-current', 'true')
      li.addEventListener('click', () => select(room))
      return li
    }),
  )
}

function renderUsers() {
  const v = views.get(current)
  const users = [...(v?.users.values() ?? [])].sort((a, b) => a.name.localeCompare(b.name))
  ui.users.replaceChildren(
    ...users.map((u) => {
      const li = el('li', undefined, u.name)
      li.dataset.user = u.id
      if (u.id === me()) li.title = `${u.id} (you)`
      else {
        li.title = `write to ${u.name} (${u.id})`
        li.classList.add('writable')
        li.addEventListener('click', () => openDirect(u))
      }
      return li
    }),
  )
}

/** Opens the direct conversation with a user: the one that exists, or a draft until the first message. */
function openDirect(u: User) {
  const known = client.directWith(u.id)?.room ?? [...partners.entries()].find(([, p]) => p.id === u.id)?.[0]
  if (known) return select(known)
  view(`@${u.id}`, u)
  select(`@${u.id}`)
}

function renderTyping() {
  const v = views.get(current)
  const now = Date.now()
  const names = [...(v?.typing.entries() ?? [])].filter(([, t]) => t.until > now).map(([, t]) => t.name)
  ui.typing.textContent = names.length === 0 ? '' : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`
}
setInterval(renderTyping, 1000)

const timeOf = (ts: string) => new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })

/** Puts a message in its room's list, in seq order, once (by server id). */
function addMessage(m: RoomMessage) {
  const v = view(m.room)
  if (v.ids.has(m.id)) return
  v.ids.add(m.id)
  const li = el('li', 'msg')
  li.dataset.seq = String(m.seq)
  li.dataset.id = m.id
  li.dataset.from = m.from.id
  if (m.from.id === me()) li.classList.add('mine')
  if (isSystemMessage(m)) li.classList.add('system') // from the server itself, not a user
  const meta = el('div', 'meta')
  meta.append(el('span', 'from', isSystemMessage(m) ? `${m.from.name} (system)` : m.from.name), el('time', undefined, timeOf(m.ts)))
  meta.lastElementChild!.setAttribute('datetime', m.ts)
  li.append(meta, el('div', 'body', m.body)) // textContent: a body is never HTML
  // Insert before the first message of the current segment with a greater seq.
  const atBottom = ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 40
  const later = v.segment.find((n) => Number(n.dataset.seq) > m.seq)
  if (later) v.list.insertBefore(li, later)
  else v.list.append(li)
  v.segment.push(li)
  v.segment.sort((a, b) => Number(a.dataset.seq) - Number(b.dataset.seq))
  if (m.room === current) {
    if (atBottom || m.from.id === me()) ui.messages.scrollTop = ui.messages.scrollHeight
  } else if (!client.conversation(m.room) && m.from.id !== me()) {
    v.unread++
    renderRooms()
  }
  v.typing.delete(m.from.id)
  if (m.room === current) renderTyping()
  renderSeen(m.room)
}

/** "Seen by …" on the room's last message: the other members whose read marker reached it. */
function renderSeen(room: string) {
  const v = views.get(room)
  if (!v) return
  for (const s of v.list.querySelectorAll('.seen')) s.remove()
  const last = v.segment.at(-1)
  const c = client.conversation(room)
  if (!last || !c) return
  const seq = Number(last.dataset.seq)
  const names = c.readBy.filter((r) => r.seq >= seq && r.user.id !== me() && r.user.id !== last.dataset.from).map((r) => r.user.name)
  if (names.length > 0) last.append(el('div', 'seen', `Seen by ${names.join(', ')}`))
}

function addDivider(room: string, text: string) {
  const v = view(room)
  const li = el('li', 'divider', text)
  v.list.append(li)
  v.segment = [] // later messages are of a new sequence
}

/** The open conversation is read once the page is visible: its marker moves to the last message. */
const marking = new Set<string>()
/** An anonymous user (no name, no token) holds no read markers. */
const anonymous = !userId && !token
function markReadIfSeen() {
  if (anonymous) return
  const room = current
  const c = client.conversation(room)
  if (!c || c.unread === 0 || document.visibilityState !== 'visible' || marking.has(room)) return
  marking.add(room)
  client
    .markRead(room, c.seq)
    .catch((err) => console.warn('not marked read', room, err.code, err.message))
    .finally(() => {
      marking.delete(room)
      if (client.conversation(room)?.unread) setTimeout(markReadIfSeen, 250) // more came meanwhile
    })
}
document.addEventListener('visibilitychange', markReadIfSeen)

/** The conversation list names the other user of direct rooms (and gives each its last message). */
let listing: Promise<void> | undefined
let listAgain = false
function loadConversations() {
  if (listing) return void (listAgain = true) // once more when this one is done: it may predate the change
  listing = (async () => {
    try {
      let before: string | undefined
      for (let page = 0; page < 10; page++) {
        const r = await client.loadConversations({ before, limit: 100 })
        for (const c of r.rooms) if (c.with) partners.set(c.room, c.with)
        if (!r.more) break
        before = r.next
      }
    } catch (err) {
      console.warn('conversations not listed', err)
    } finally {
      listing = undefined
      renderRooms()
      renderHeader()
      if (listAgain) {
        listAgain = false
        loadConversations()
      }
    }
  })()
}

// ---- client events ----

const statusText: Record<string, string> = { idle: 'offline', connecting: 'connecting…', open: 'connected', reconnecting: 'reconnecting…', closed: 'disconnected' }
client.on('state', (s) => {
  ui.status.dataset.state = s
  ui.status.textContent = statusText[s] ?? s
})
client.on('reconnecting', ({ attempt, delayMs }) => {
  ui.status.textContent = `reconnecting in ${(delayMs / 1000).toFixed(1)} s (attempt ${attempt})`
})
client.on('welcome', (w) => {
  ui.me.textContent = `${w.user.name} · ${w.node}`
  for (const r of w.rooms) view(r)
  if (w.rooms.some((r) => r.startsWith('dm:'))) loadConversations()
})
client.on('membership', ({ room, member }) => {
  if (!member) return drop(room)
  view(room)
  if (isDirect(room)) loadConversations() // the other user's name
})
client.on('conversation', (c) => {
  renderRooms()
  if (c.room === current) markReadIfSeen()
})
client.on('unread', ({ total }) => {
  document.title = total > 0 ? `(${badge(total)}) chat-server` : 'chat-server'
})
client.on('read', (r) => renderSeen(r.room))
client.on('joined', async (j) => {
  const v = view(j.room)
  try {
    const users = await client.presence(j.room)
    v.users = new Map(users.map((u) => [u.id, u]))
    if (j.room === current) renderUsers()
  } catch {}
  if (!v.historyLoaded) {
    v.historyLoaded = true
    try {
      const page = await client.history(j.room, { limit: 50 })
      for (const m of page.messages) addMessage(m)
      ui.messages.scrollTop = ui.messages.scrollHeight
    } catch {
      v.historyLoaded = false
    }
  }
})
client.on('chat', addMessage)
client.on('dm', addMessage)
client.on('reset', ({ room }) => addDivider(room, 'the server restarted: a new conversation begins'))
client.on('gap', ({ room }) => addDivider(room, 'some messages could not be recovered'))
client.on('presence', (p) => {
  if (!p.event) return
  const v = view(p.room)
  if (p.event === 'join') v.users.set(p.user.id, p.user)
  else v.users.delete(p.user.id)
  if (p.room === current) renderUsers()
})
client.on('typing', (t) => {
  const v = view(t.room)
  v.typing.set(t.user.id, { name: t.user.name, until: Date.now() + 3000 })
  if (t.room === current) renderTyping()
})
client.on('error', (e) => console.warn('chat error', e.code, e.message))

// ---- user input ----

let lastTyping = 0
ui.text.addEventListener('input', () => {
  const now = Date.now()
  if (now - lastTyping > 2000 && ui.text.value && current && !views.get(current)?.draft) {
    lastTyping = now
    client.typing(current)
  }
})

/** A direct message: the server names the pair's room in its answer; this connection gets no frame of its own dm. */
async function sendDirect(from: string, to: User, body: string) {
  try {
    const ack = await client.dm(to.id, body)
    const room = ack.room!
    partners.set(room, to)
    const sent: DirectMessage = { type: 'dm', id: ack.msg ?? ack.id, room, seq: ack.seq!, from: client.user!, to: to.id, body, ts: new Date().toISOString() }
    addMessage(sent)
    if (from !== room) {
      // The draft becomes the conversation.
      drop(from)
      select(room)
    }
  } catch (err) {
    addDivider(from, `not sent: ${(err as Error).message}`)
  }
}

ui.sendForm.addEventListener('submit', (e) => {
  e.preventDefault()
  const body = ui.text.value
  if (!body.trim() || !current) return
  ui.text.value = ''
  lastTyping = 0
  const to = views.get(current)?.draft ?? (isDirect(current) ? partnerOf(current) : undefined)
  if (to) return void sendDirect(current, to, body)
  if (isDirect(current)) return addDivider(current, 'not sent: the other user of this conversation is not known yet')
  // Sent at once when connected; kept in the client's outbox (same id) while reconnecting.
  const room = current
  client.send(room, body).catch((err) => addDivider(room, `not sent: ${err.message}`))
})

ui.joinForm.addEventListener('submit', (e) => {
  e.preventDefault()
  const room = ui.joinName.value.trim()
  if (!room) return
  ui.joinName.value = ''
  view(room)
  select(room)
  // A membership when the server allows one (not for an anonymous user): listed and counted on every device.
  client
    .joinAsMember(room)
    .catch((err) => (err.code === 'forbidden' && !client.conversation(room) ? client.join(room) : Promise.reject(err)))
    .catch((err) => addDivider(room, `could not join: ${err.message}`))
})
