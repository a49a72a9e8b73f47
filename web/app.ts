/**
 * The demo chat page: plain DOM, the @chat-server/client package underneath. Every piece of
 * user-supplied text is put on the page with `textContent`, never parsed as HTML.
 */
import { ChatClient } from '../client/src/index'
import type { RoomMessage, User } from '../client/src/index'

const params = new URLSearchParams(location.search)
const name = (params.get('name') ?? '').trim().slice(0, 64) || undefined
const token = params.get('token') ?? undefined
/** With auth off the server takes `?user=`: derive a stable id from the name. */
const userId = name ? name.toLowerCase().replace(/[^a-z0-9_.:@-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64) || undefined : undefined
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
  unread: number
  historyLoaded: boolean
}

const views = new Map<string, RoomView>()
let current = ''

const url = new URL('/ws', location.href)
url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:'
const client = new ChatClient({ url: url.toString(), token: token ? () => token : undefined, user: token ? undefined : userId, name: token ? undefined : name, rooms: extraRooms })
;(globalThis as { chat?: ChatClient }).chat = client // for the console (and tests)

function view(room: string): RoomView {
  let v = views.get(room)
  if (!v) {
    const list = el('ol', 'room-log')
    list.dataset.room = room
    list.hidden = true
    ui.messages.append(list)
    v = { segment: [], list, ids: new Set(), users: new Map(), typing: new Map(), unread: 0, historyLoaded: false }
    views.set(room, v)
    if (!current) select(room)
    renderRooms()
  }
  return v
}

function select(room: string) {
  current = room
  const v = view(room)
  v.unread = 0
  for (const other of views.values()) other.list.hidden = other !== v
  ui.roomLabel.textContent = `in ${room}`
  renderRooms()
  renderUsers()
  renderTyping()
  ui.messages.scrollTop = ui.messages.scrollHeight
}

function renderRooms() {
  ui.rooms.replaceChildren(
    ...[...views.entries()].map(([room, v]) => {
      const li = el('li')
      li.dataset.room = room
      li.append(el('span', 'name', `# ${room}`))
      if (v.unread > 0 && room !== current) li.append(el('span', 'unread', String(v.unread)))
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
      li.title = u.id
      return li
    }),
  )
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
  if (m.from.id === client.user?.id) li.classList.add('mine')
  const meta = el('div', 'meta')
  meta.append(el('span', 'from', m.from.name), el('time', undefined, timeOf(m.ts)))
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
    if (atBottom || m.from.id === client.user?.id) ui.messages.scrollTop = ui.messages.scrollHeight
  } else {
    v.unread++
    renderRooms()
  }
  v.typing.delete(m.from.id)
  if (m.room === current) renderTyping()
}

function addDivider(room: string, text: string) {
  const v = view(room)
  const li = el('li', 'divider', text)
  v.list.append(li)
  v.segment = [] // later messages are of a new sequence
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
})
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
  if (now - lastTyping > 2000 && ui.text.value && current) {
    lastTyping = now
    client.typing(current)
  }
})

ui.sendForm.addEventListener('submit', (e) => {
  e.preventDefault()
  const body = ui.text.value
  if (!body.trim() || !current) return
  ui.text.value = ''
  lastTyping = 0
  // Sent at once when connected; kept in the client's outbox (same id) while reconnecting.
  client.send(current, body).catch((err) => addDivider(current, `not sent: ${err.message}`))
})

ui.joinForm.addEventListener('submit', (e) => {
  e.preventDefault()
  const room = ui.joinName.value.trim()
  if (!room) return
  ui.joinName.value = ''
  view(room)
  select(room)
  client.join(room).catch((err) => addDivider(room, `could not join: ${err.message}`))
})
