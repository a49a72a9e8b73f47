/**
 * The demo chat page: plain DOM, the @chat-server/client package underneath. Every piece of
 * user-supplied text is put on the page with `textContent`, never parsed as HTML.
 */
import { ChatClient, isSystemMessage } from '../client/src/index'
import type { Attachment, DirectMessage, LinkPreview, ModerationEvent, Poll, RoomMessage, ThreadEntry, User } from '../client/src/index'

const params = new URLSearchParams(location.search)
const name = (params.get('name') ?? '').trim().slice(0, 64) || undefined
const token = params.get('token') ?? undefined
/** With auth off the server takes `?user=`: derive a stable id from the name. */
const derived = name
  ? name
      .toLowerCase()
      .replace(/[^a-z0-9_.:@-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 64) || undefined
  : undefined
/** `server` is the server's own id (refused to connections): a person named Server gets another. */
const userId = derived === 'server' ? 'user-server' : derived
const extraRooms = (params.get('rooms') ?? '')
  .split(',')
  .map((r) => r.trim())
  .filter(Boolean)

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
  replying: $('replying'),
  text: $<HTMLInputElement>('text'),
  joinForm: $<HTMLFormElement>('join-form'),
  joinName: $<HTMLInputElement>('join-name'),
  file: $<HTMLInputElement>('file'),
  attach: $<HTMLButtonElement>('attach'),
  threads: $<HTMLUListElement>('threads'),
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
  /** The messages shown, by id, with their current state. */
  msgs: Map<string, Shown>
  /** Changes that came before the history page: applied once it is in (those it does not hold yet). */
  early?: Change[]
  /** The last seq the history page showed the state of. */
  loadedUpTo: number
  /** The user's role here, once the server named it (a `join`'s answer). */
  role?: string
  roleAsked?: boolean
}

/** A message on the page and its current state (edits, delete, reactions applied). */
interface Shown {
  m: RoomMessage
  li: HTMLLIElement
  edited: boolean
  deleted: boolean
  reactions: Map<string, { count: number; me: boolean }>
}

type Change = {
  type: 'edit' | 'delete' | 'react' | 'preview'
  seq: number
  msg: string
  body?: string
  data?: unknown
  op?: 'add' | 'remove'
  reaction?: string
  user?: User
  preview?: LinkPreview
}

/** The reaction buttons every message offers. */
const QUICK = ['👍', '❤️', '😂', '🎉']
/** How long the demo's Mute button mutes. */
const MUTE_S = 300

/** Keys of views: room names, or `@<user id>` for a draft (no room name holds `@`). */
const views = new Map<string, RoomView>()
let current = ''
/** The other user of direct rooms this page started, until the conversation list names them. */
const partners = new Map<string, User>()

const url = new URL('/ws', location.href)
url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:'
// The default transports: the WebSocket, else Server-Sent Events with POST (same origin: the CSP's connect-src 'self').
const client = new ChatClient({
  url: url.toString(),
  token: token ? () => token : undefined,
  user: token ? undefined : userId,
  name: token ? undefined : name,
  rooms: extraRooms,
})
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
    v = {
      segment: [],
      list,
      ids: new Set(),
      users: new Map(),
      typing: new Map(),
      unread: 0,
      historyLoaded: false,
      draft,
      msgs: new Map(),
      loadedUpTo: 0,
    }
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
  renderReplying()
  ui.messages.scrollTop = ui.messages.scrollHeight
  markReadIfSeen()
}

/** What names the open conversation: the label beside "Online" and the input's placeholder. */
function renderHeader() {
  if (!current) return
  ui.roomLabel.textContent = `in ${label(current)}`
  ui.text.placeholder =
    views.get(current)?.draft || isDirect(current) ? `Write to ${partnerOf(current)?.name ?? 'them'}` : 'Write a message'
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

/** Puts an entry (a message, a moderation line) in its room's list, in seq order within the current segment. */
function place(v: RoomView, li: HTMLLIElement, seq: number) {
  li.dataset.seq = String(seq)
  const later = v.segment.find((n) => Number(n.dataset.seq) > seq)
  if (later) v.list.insertBefore(li, later)
  else v.list.append(li)
  v.segment.push(li)
  v.segment.sort((a, b) => Number(a.dataset.seq) - Number(b.dataset.seq))
}

/** Puts a message in its room's list, in seq order, once (by server id); history may bring its current state. */
function addMessage(m: RoomMessage) {
  const v = view(m.room)
  const known = v.msgs.get(m.id)
  if (known) {
    // The history page's copy is the newer state (it arrived live before the page was read).
    if (m.edited_at || m.deleted || m.reactions || (m.type === 'chat' && m.poll)) render(Object.assign(known, stateOf(m)), m.room)
    return
  }
  if (v.ids.has(m.id)) return
  v.ids.add(m.id)
  const li = el('li', 'msg')
  li.dataset.id = m.id
  li.dataset.from = m.from.id
  if (m.from.id === me()) li.classList.add('mine')
  if (isSystemMessage(m)) li.classList.add('system') // from the server itself, not a user
  const shown: Shown = { li, ...stateOf(m) }
  v.msgs.set(m.id, shown)
  render(shown, m.room)
  // Insert before the first message of the current segment with a greater seq.
  const atBottom = ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 40
  place(v, li, m.seq)
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

const stateOf = (m: RoomMessage) => ({
  m,
  edited: !!m.edited_at,
  deleted: !!m.deleted,
  reactions: new Map((m.reactions ?? []).map((r) => [r.reaction, { count: r.count, me: r.me }])),
})

const button = (className: string, text: string, title: string, onClick: () => void) => {
  const b = el('button', className, text)
  b.type = 'button'
  b.title = title
  b.addEventListener('click', onClick)
  return b
}

const moderates = (room: string) => {
  const role = views.get(room)?.role
  return role === 'moderator' || role === 'owner'
}

/** Draws a message from its state: author and time, the quoted parent, the body or a tombstone, reactions, actions. */
function render(s: Shown, room: string) {
  const { m, li } = s
  const mine = m.from.id === me()
  const meta = el('div', 'meta')
  meta.append(el('span', 'from', isSystemMessage(m) ? `${m.from.name} (system)` : m.from.name), el('time', undefined, timeOf(m.ts)))
  meta.lastElementChild!.setAttribute('datetime', m.ts)
  if (s.edited && !s.deleted) meta.append(el('span', 'edited', '(edited)'))
  const parts: HTMLElement[] = [meta]
  if (m.reply_to) parts.push(quote(room, m.reply_to))
  li.classList.toggle('deleted', s.deleted)
  if (s.deleted) {
    parts.push(el('div', 'body', 'message deleted'))
  } else {
    // An edit in progress stays open while reactions and other changes come in.
    parts.push(li.querySelector<HTMLFormElement>('.edit-form') ?? el('div', 'body', m.body)) // textContent: a body is never HTML
    if (m.attachments?.length) parts.push(attachmentsOf(m.attachments))
    if (m.type === 'chat' && m.poll) parts.push(pollView(m.poll, room, m.id, mine))
    if (m.preview) parts.push(previewCard(m.preview))
    const reactions = el('div', 'reactions')
    for (const [reaction, r] of s.reactions) {
      if (r.count <= 0) continue
      const b = button('reaction', `${reaction} ${r.count}`, r.me ? 'remove your reaction' : 'react too', () =>
        toggleReaction(s, room, reaction),
      )
      b.dataset.reaction = reaction
      b.setAttribute('aria-pressed', String(r.me))
      reactions.append(b)
    }
    parts.push(reactions)
    if (!isSystemMessage(m) && !views.get(room)?.draft) parts.push(actions(s, room, mine))
  }
  const seen = li.querySelector('.seen')
  li.replaceChildren(...parts)
  if (seen) li.append(seen)
}

/**
 * A link preview as a small card: site, title, description, all as text. The page's image is
 * not loaded: it would tell a third party every reader's address.
 */
function previewCard(p: LinkPreview) {
  const a = el('a', 'preview')
  a.href = p.url
  a.target = '_blank'
  a.rel = 'noopener noreferrer nofollow'
  if (p.site_name) a.append(el('span', 'site', p.site_name))
  a.append(el('strong', 'title', p.title))
  if (p.description) a.append(el('span', 'description', p.description))
  return a
}

/** The parent of a reply, quoted from what the page holds. */
function quote(room: string, parentId: string) {
  const parent = views.get(room)?.msgs.get(parentId)
  const q = el('div', 'quote')
  q.dataset.parent = parentId
  if (!parent) q.textContent = '↪ an earlier message'
  else q.textContent = `↪ ${parent.m.from.name}: ${parent.deleted ? 'message deleted' : parent.m.body}`
  return q
}

function actions(s: Shown, room: string, mine: boolean) {
  const box = el('div', 'actions')
  for (const r of QUICK) {
    const b = button('react', r, `react with ${r}`, () => toggleReaction(s, room, r))
    b.dataset.reaction = r
    box.append(b)
  }
  box.append(button('reply', 'Reply', 'reply to this message', () => startReply(s, room)))
  if (mine) box.append(button('edit', 'Edit', 'edit your message', () => startEdit(s, room)))
  if (mine || moderates(room))
    box.append(button('delete', 'Delete', mine ? 'delete your message' : 'delete this message (moderator)', () => remove(s, room)))
  if (!mine && moderates(room)) {
    const who = s.m.from
    box.append(
      button('mute', 'Mute', `mute ${who.name} here for ${MUTE_S / 60} minutes`, () =>
        moderate(room, () => client.mute(room, who.id, MUTE_S)),
      ),
      button('ban', 'Ban', `ban ${who.name} from this room`, () => moderate(room, () => client.ban(room, who.id))),
    )
  }
  return box
}

const failed = (room: string, what: string) => (err: Error) => addDivider(room, `${what}: ${err.message}`)

function toggleReaction(s: Shown, room: string, reaction: string) {
  const mine = s.reactions.get(reaction)?.me
  ;(mine ? client.unreact(room, s.m.id, reaction) : client.react(room, s.m.id, reaction)).catch(failed(room, 'not reacted'))
}

function remove(s: Shown, room: string) {
  client.delete(room, s.m.id).catch(failed(room, 'not deleted'))
}

function moderate(room: string, act: () => Promise<unknown>) {
  act().catch(failed(room, 'not done'))
}

/** Edits in place: the body becomes an input; Enter saves, Escape gives up. */
function startEdit(s: Shown, room: string) {
  const body = s.li.querySelector('.body')
  if (!body || s.li.querySelector('.edit-form')) return
  const form = el('form', 'edit-form')
  const input = el('input')
  input.value = s.m.body
  input.maxLength = 4000
  input.setAttribute('aria-label', 'edit the message')
  form.append(input)
  body.replaceWith(form)
  input.focus()
  const done = () => {
    form.remove()
    render(s, room)
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    const text = input.value
    if (!text.trim() || text === s.m.body) return done()
    client.edit(room, s.m.id, text, s.m.data).then(done, (err) => {
      done()
      failed(room, 'not edited')(err)
    })
  })
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') done()
  })
}

/** The message the next one sent in this room replies to. */
let replyTo: { room: string; id: string } | undefined
function startReply(s: Shown, room: string) {
  replyTo = { room, id: s.m.id }
  renderReplying()
  ui.text.focus()
}
function renderReplying() {
  const target = replyTo && replyTo.room === current ? views.get(current)?.msgs.get(replyTo.id) : undefined
  ui.replying.hidden = !target
  if (!target) return ui.replying.replaceChildren()
  ui.replying.replaceChildren(
    el('span', undefined, `Replying to ${target.m.from.name}: ${target.deleted ? 'message deleted' : target.m.body}`),
    button('cancel', '×', 'do not reply', () => {
      replyTo = undefined
      renderReplying()
    }),
  )
}

/** An edit, delete or reaction, live or replayed: applied to the message the page shows. */
function applyChange(c: Change & { room: string }) {
  const v = views.get(c.room)
  if (!v) return
  if (v.early) return void v.early.push(c) // the history page is not in yet
  if (c.seq <= v.loadedUpTo) return // the history page showed it already
  const s = v.msgs.get(c.msg)
  if (!s) return // older than what the page holds
  if (c.type === 'edit') {
    s.m = { ...s.m, body: c.body!, data: c.data }
    s.edited = true
  } else if (c.type === 'delete') s.deleted = true
  else if (c.type === 'preview') s.m = { ...s.m, preview: c.preview }
  else {
    const r = s.reactions.get(c.reaction!) ?? { count: 0, me: false }
    r.count = Math.max(0, r.count + (c.op === 'add' ? 1 : -1))
    if (c.user?.id === me()) r.me = c.op === 'add'
    s.reactions.set(c.reaction!, r)
  }
  render(s, c.room)
  // Replies quoting it show the change too.
  for (const other of v.msgs.values()) if (other.m.reply_to === c.msg) render(other, c.room)
  if (replyTo?.id === c.msg) renderReplying()
}

const verbs: Record<ModerationEvent['action'], string> = {
  mute: 'muted',
  unmute: 'unmuted',
  ban: 'banned',
  unban: 'unbanned',
  kick: 'removed',
}

/** A moderation event, as a line in the room's log. */
function addModeration(e: ModerationEvent) {
  const v = view(e.room)
  if (v.ids.has(e.id)) return // live before the history page had it too
  v.ids.add(e.id)
  const who = e.user.id === me() ? 'you' : e.user.name
  const by = e.by.id === 'server' ? 'The server' : e.by.name
  const until = e.until ? ` until ${timeOf(e.until)}` : ''
  const li = el('li', 'event', `${by} ${verbs[e.action]} ${who}${until}${e.reason ? ` (${e.reason})` : ''}`)
  li.dataset.action = e.action
  place(v, li, e.seq)
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

const statusText: Record<string, string> = {
  idle: 'offline',
  connecting: 'connecting…',
  open: 'connected',
  reconnecting: 'reconnecting…',
  closed: 'disconnected',
}
client.on('state', (s) => {
  ui.status.dataset.state = s
  // Where WebSockets are blocked the client goes on over Server-Sent Events by itself: say so.
  ui.status.dataset.transport = client.transport ?? ''
  ui.status.textContent = s === 'open' && client.transport === 'sse' ? 'connected (SSE)' : (statusText[s] ?? s)
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
  if (j.role) {
    v.role = j.role
    for (const s of v.msgs.values()) render(s, j.room)
  } else if (!v.roleAsked && !isDirect(j.room) && !client.role(j.room)) {
    // The rooms the server joins on connect come without the role: ask by joining again (it replays nothing new).
    v.roleAsked = true
    client.join(j.room).catch((err) => console.warn('role not known', j.room, err.code, err.message))
  }
  const loading = !v.historyLoaded
  if (loading) {
    v.historyLoaded = true
    v.early = [] // changes that come while the page is read wait for it
  }
  try {
    const users = await client.presence(j.room)
    v.users = new Map(users.map((u) => [u.id, u]))
    if (j.room === current) renderUsers()
  } catch {}
  if (!loading) return
  try {
    const page = await client.history(j.room, { limit: 50 })
    for (const m of page.messages) addMessage(m)
    v.loadedUpTo = Math.max(v.loadedUpTo, page.events.at(-1)?.seq ?? 0)
    for (const e of page.events) if (e.type === 'moderation') addModeration(e)
    ui.messages.scrollTop = ui.messages.scrollHeight
  } catch {
    v.historyLoaded = false
  }
  const early = v.early ?? []
  v.early = undefined
  for (const c of early) applyChange(c as Change & { room: string })
})
// ---- threads (v4): the user's threads with their unread replies; a click reads the thread.
let threadsTimer: ReturnType<typeof setTimeout> | undefined
function loadThreads() {
  clearTimeout(threadsTimer)
  threadsTimer = setTimeout(async () => {
    const { threads } = await client.threads({ limit: 10 }).catch(() => ({ threads: [] as ThreadEntry[] }))
    ui.threads.replaceChildren(
      ...threads.map((t) => {
        const li = el('li', 'thread', `${t.root.from.name}: ${t.root.body ?? ''}`.slice(0, 60))
        li.title = `${t.count} replies in ${t.room}`
        li.append(el('span', 'count', ` ${t.count}↩`))
        if (t.unread) li.append(el('span', 'unread', ` ${t.unread}`))
        li.onclick = async () => {
          const page = await client.thread(t.room, t.msg, { limit: 100 })
          const last = page.messages[page.messages.length - 1]
          if (last) await client.readThread(t.room, t.msg, last.seq)
          loadThreads()
        }
        return li
      }),
    )
  }, 300)
}
client.on('welcome', loadThreads)
client.on('chat', (m) => {
  if (m.reply_to) loadThreads()
})

client.on('chat', addMessage)
client.on('dm', addMessage)
client.on('edit', (e) => applyChange({ type: 'edit', room: e.room, seq: e.seq, msg: e.msg, body: e.body, data: e.data }))
client.on('delete', (e) => applyChange({ type: 'delete', room: e.room, seq: e.seq, msg: e.msg }))
client.on('react', (e) =>
  applyChange({ type: 'react', room: e.room, seq: e.seq, msg: e.msg, reaction: e.reaction, op: e.op, user: e.user }),
)
client.on('moderation', addModeration)
client.on('preview', (e) => applyChange({ type: 'preview', room: e.room, seq: e.seq, msg: e.msg, preview: e.preview }))
client.on('left', (l) => {
  if (l.reason === 'banned') addDivider(l.room, 'you were banned from this room')
  else if (l.reason === 'kicked') addDivider(l.room, 'you were removed from this room; join it again to come back')
})
client.on('reset', ({ room }) => {
  const v = views.get(room)
  if (v) v.loadedUpTo = 0 // the new epoch numbers its events afresh
  addDivider(room, 'the server restarted: a new conversation begins')
})
client.on('gap', ({ room }) => addDivider(room, 'some messages could not be recovered'))
client.on('presence', (p) => {
  if (!p.event) return
  const v = view(p.room)
  if (p.event === 'batch') {
    // A big room's window of changes (PRESENCE_EVENTS_MAX): the lists may be truncated, then ask again.
    for (const u of p.joined) v.users.set(u.id, u)
    for (const u of p.left) v.users.delete(u.id)
    if (p.truncated)
      void client
        .presence(p.room)
        .then((users) => {
          v.users = new Map(users.map((u) => [u.id, u]))
          if (p.room === current) renderUsers()
        })
        .catch(() => {})
  } else if (p.event === 'join') v.users.set(p.user.id, p.user)
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
    const sent: DirectMessage = {
      type: 'dm',
      id: ack.msg ?? ack.id,
      room,
      seq: ack.seq!,
      from: client.user!,
      to: to.id,
      body,
      ts: new Date().toISOString(),
    }
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
  if (body.startsWith('/poll ')) return sendPoll(room, body)
  const parent = replyTo?.room === room ? replyTo.id : undefined
  replyTo = undefined
  renderReplying()
  ;(parent ? client.reply(room, parent, body) : client.send(room, body)).then(
    () => sent(room),
    (err) => notSent(room, err),
  )
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

// ---------------------------------------------------------------- polls and slow mode (v4)

/** `/poll Question? | option | option…` (`/poll!` for several choices): a chat carrying a poll. */
function sendPoll(room: string, text: string) {
  const multiple = text.startsWith('/poll! ')
  const [question = '', ...options] = text
    .slice(multiple ? 7 : 6)
    .split('|')
    .map((s) => s.trim())
  client.sendPoll(room, question, { question, options: options.filter(Boolean), multiple }).then(
    () => sent(room),
    (err) => notSent(room, err),
  )
}

/** A poll's question and one bar per option (its share of the votes); a click votes (again: withdraws). */
function pollView(p: Poll, room: string, msg: string, mine: boolean): HTMLElement {
  const box = el('div', 'poll')
  box.dataset.msg = msg
  box.append(el('div', 'question', p.question))
  const total = p.options.reduce((n, o) => n + o.votes, 0)
  p.options.forEach((o, i) => {
    const chosen = p.mine.includes(i)
    const b = button('option', '', p.closed ? 'closed' : chosen ? 'withdraw your vote' : 'vote', () => {
      const next = chosen ? p.mine.filter((x) => x !== i) : p.multiple ? [...p.mine, i] : [i]
      client.vote(room, msg, next).then(
        () => {
          p.mine = next // an anonymous vote's event names nobody: this page knows its own
          redraw(room, msg)
        },
        (err) => addDivider(room, `vote not counted: ${err.message}`),
      )
    })
    b.disabled = p.closed
    b.setAttribute('aria-pressed', String(chosen))
    const bar = el('span', 'bar')
    bar.style.width = `${total ? Math.round((o.votes / total) * 100) : 0}%`
    b.append(bar, el('span', 'text', o.text), el('span', 'votes', String(o.votes)))
    box.append(b)
  })
  const foot = el('div', 'poll-foot', p.closed ? `closed · ${total} votes` : `${total} votes${p.anonymous ? ' · anonymous' : ''}`)
  if (!p.closed && (mine || moderates(room)))
    foot.append(button('close-poll', 'Close', 'close the poll', () => void client.closePoll(room, msg).catch(() => {})))
  box.append(foot)
  return box
}

/** The poll of a message on the page, to change and draw again. */
function shownPoll(room: string, msg: string): Poll | undefined {
  const m = views.get(room)?.msgs.get(msg)?.m
  return m?.type === 'chat' ? m.poll : undefined
}
function redraw(room: string, msg: string) {
  const s = views.get(room)?.msgs.get(msg)
  if (s) render(s, room)
}
client.on('vote', (e) => {
  const p = shownPoll(e.room, e.msg)
  if (!p) return
  for (const [i, o] of p.options.entries()) o.votes = e.tallies[i] ?? o.votes
  if (e.user?.id === me()) p.mine = e.options
  redraw(e.room, e.msg)
})
client.on('poll_closed', (e) => {
  const p = shownPoll(e.room, e.msg)
  if (!p) return
  p.closed = true
  for (const [i, o] of p.options.entries()) o.votes = e.tallies[i] ?? o.votes
  redraw(e.room, e.msg)
})

/** Slow mode per room (`joined` and `settings` say it), and when this user may write again. */
const slowMode = new Map<string, number>()
const waitUntil = new Map<string, number>()
const slowLabel = el('span', 'slow-mode')
ui.sendForm.append(slowLabel)
client.on('joined', (j) => {
  if (j.settings) slowMode.set(j.room, j.settings.slow_mode_s)
  if (j.room === current) renderSlow()
})
client.on('settings', (e) => {
  slowMode.set(e.room, e.slow_mode_s)
  if (e.slow_mode_s === 0) waitUntil.delete(e.room)
  addDivider(e.room, e.slow_mode_s ? `slow mode: one message every ${e.slow_mode_s} s` : 'slow mode off')
  renderSlow()
})
/** Sent: in slow mode a member's next message waits (owners and moderators do not). */
function sent(room: string) {
  const s = slowMode.get(room) ?? 0
  if (s > 0 && !moderates(room)) waitUntil.set(room, Date.now() + s * 1000)
  renderSlow()
}
function notSent(room: string, err: { code?: string; message: string; retryAfter?: number }) {
  if (err.code === 'slow_mode' && err.retryAfter) waitUntil.set(room, Date.now() + err.retryAfter * 1000)
  addDivider(room, `not sent: ${err.message}`)
  renderSlow()
}
/** The countdown beside Send while the current room makes this user wait. */
function renderSlow() {
  const left = Math.ceil(((waitUntil.get(current) ?? 0) - Date.now()) / 1000)
  slowLabel.textContent = left > 0 ? `slow mode: ${left} s` : (slowMode.get(current) ?? 0) > 0 ? 'slow mode' : ''
}
setInterval(renderSlow, 1000)

// ---------------------------------------------------------------- attachments

/** An upload's URL with this page's credentials (`?user=`, or a signed link when a token is used: an <img> sends no header). */
async function downloadUrl(a: Attachment): Promise<string> {
  if (!token) return `${a.url}?user=${encodeURIComponent(userId ?? '')}`
  const res = await fetch(`${a.url}/link`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })
  if (!res.ok) throw new Error(`link: ${res.status}`)
  return ((await res.json()) as { url: string }).url
}

const sizeOf = (n: number) =>
  n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`

/** Images inline (the server sniffed their type; SVG is never one of them), anything else as a link. */
function attachmentsOf(list: Attachment[]): HTMLElement {
  const box = el('div', 'attachments')
  for (const a of list) {
    const link = el('a', 'attachment', a.type.startsWith('image/') ? '' : `${a.name} (${sizeOf(a.size)})`)
    link.rel = 'noopener'
    link.target = '_blank'
    link.dataset.type = a.type
    if (a.type.startsWith('image/') && a.type !== 'image/svg+xml') {
      const img = el('img', 'attachment-image')
      img.alt = a.name
      if (a.width && a.height) {
        img.width = Math.min(a.width, 320)
        img.height = Math.round((img.width * a.height) / a.width)
      }
      link.append(img)
      void downloadUrl(a).then(
        (u) => {
          img.src = u
          link.href = u
        },
        () => (img.alt = `${a.name} (not available)`),
      )
    } else {
      void downloadUrl(a).then(
        (u) => (link.href = u),
        () => link.append(' (not available)'),
      )
    }
    box.append(link)
  }
  return box
}

/** Uploads a file and sends it as a message of the current conversation (the typed text, else its name, is the body). */
async function sendFile(file: File) {
  const room = current
  if (!room) return
  if (!userId && !token) return addDivider(room, 'not sent: an anonymous user cannot upload (open the page with ?name=)')
  const form = new FormData()
  form.append('file', file, file.name || 'pasted')
  const res = await fetch(`/api/uploads${token ? '' : `?user=${encodeURIComponent(userId!)}`}`, {
    method: 'POST',
    body: form,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  })
  const answer = (await res.json().catch(() => ({}))) as { upload?: Attachment; reason?: string; error?: string }
  if (!res.ok || !answer.upload) return addDivider(room, `not sent: ${answer.reason ?? answer.error ?? res.status}`)
  const body = ui.text.value.trim() || answer.upload.name
  ui.text.value = ''
  const to = views.get(room)?.draft ?? (isDirect(room) ? partnerOf(room) : undefined)
  try {
    if (to) {
      const ack = await client.dm(to.id, body, undefined, { attachments: [answer.upload.id] })
      addMessage({
        type: 'dm',
        id: ack.msg ?? ack.id,
        room: ack.room!,
        seq: ack.seq!,
        from: client.user!,
        to: to.id,
        body,
        attachments: [answer.upload],
        ts: new Date().toISOString(),
      })
    } else await client.send(room, body, undefined, { attachments: [answer.upload.id] })
  } catch (err) {
    addDivider(room, `not sent: ${(err as Error).message}`)
  }
}

const sendFiles = (files: Iterable<File>) => {
  for (const f of files) void sendFile(f)
}
ui.attach.addEventListener('click', () => ui.file.click())
ui.file.addEventListener('change', () => {
  sendFiles([...(ui.file.files ?? [])])
  ui.file.value = ''
})
document.addEventListener('paste', (e) => {
  const files = [...(e.clipboardData?.files ?? [])]
  if (!files.length) return
  e.preventDefault()
  sendFiles(files)
})
ui.messages.addEventListener('dragover', (e) => e.preventDefault())
ui.messages.addEventListener('drop', (e) => {
  e.preventDefault()
  sendFiles([...(e.dataTransfer?.files ?? [])])
})
