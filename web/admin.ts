/**
 * The admin page: polls the admin API with the key the operator typed (kept in sessionStorage
 * only, never in the page). Every piece of text from the server is put on the page with
 * `textContent`, never parsed as HTML.
 */
import uPlot from 'uplot'
import type { NodeStat } from '../src/broker/node-stats' // erased in the page's bundle

const KEY = 'chat-admin-key'
const POLL_MS = 2000

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T
const el = <K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string) => {
  const e = document.createElement(tag)
  if (text !== undefined) e.textContent = text
  if (className) e.className = className
  return e
}

const ui = {
  status: $('status'),
  scope: $('scope'),
  keyForm: $<HTMLFormElement>('key-form'),
  key: $<HTMLInputElement>('key'),
  forget: $<HTMLButtonElement>('forget'),
  main: $('main'),
  nodes: $<HTMLTableElement>('nodes').tBodies[0]!,
  rooms: $<HTMLTableElement>('rooms').tBodies[0]!,
  chart: $('chart'),
  publishForm: $<HTMLFormElement>('publish-form'),
  publishRoom: $<HTMLInputElement>('publish-room'),
  publishBody: $<HTMLInputElement>('publish-body'),
  publishResult: $('publish-result'),
  disconnectForm: $<HTMLFormElement>('disconnect-form'),
  disconnectUser: $<HTMLInputElement>('disconnect-user'),
  disconnectReason: $<HTMLInputElement>('disconnect-reason'),
  disconnectResult: $('disconnect-result'),
  lookupForm: $<HTMLFormElement>('lookup-form'),
  lookupRoom: $<HTMLInputElement>('lookup-room'),
  lookupResult: $('lookup-result'),
  members: $<HTMLUListElement>('members'),
  moderateForm: $<HTMLFormElement>('moderate-form'),
  moderateRoom: $<HTMLInputElement>('moderate-room'),
  moderateUser: $<HTMLInputElement>('moderate-user'),
  moderateAction: $<HTMLSelectElement>('moderate-action'),
  moderateSeconds: $<HTMLInputElement>('moderate-seconds'),
  moderateReason: $<HTMLInputElement>('moderate-reason'),
  moderateResult: $('moderate-result'),
  roleForm: $<HTMLFormElement>('role-form'),
  roleRoom: $<HTMLInputElement>('role-room'),
  roleUser: $<HTMLInputElement>('role-user'),
  roleRole: $<HTMLSelectElement>('role-role'),
  roleResult: $('role-result'),
  auditForm: $<HTMLFormElement>('audit-form'),
  auditRoom: $<HTMLInputElement>('audit-room'),
  auditUser: $<HTMLInputElement>('audit-user'),
  auditOlder: $<HTMLButtonElement>('audit-older'),
  auditResult: $('audit-result'),
  audit: $<HTMLTableElement>('audit').tBodies[0]!,
  history: $<HTMLOListElement>('history'),
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: { error?: string; reason?: string },
  ) {
    super(body.reason ? `${body.error}: ${body.reason}` : (body.error ?? `HTTP ${status}`))
  }
}

async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const key = sessionStorage.getItem(KEY) ?? ''
  const res = await fetch(path, {
    ...init,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...init.headers },
  })
  const body = await res.json().catch(() => ({}))
  if (!res.ok) throw new ApiError(res.status, body)
  return body as T
}

function setStatus(text: string, error = false) {
  ui.status.textContent = text
  ui.status.dataset.state = error ? 'error' : 'ok'
}

// ---- formatting ----

const bytes = (n: number) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : `${(n / (1 << 20)).toFixed(1)} MiB`)
function duration(s: number) {
  const d = Math.floor(s / 86400)
  const h = Math.floor((s % 86400) / 3600)
  const m = Math.floor((s % 3600) / 60)
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`
}
const cell = (text: string, className?: string) => el('td', text, className)
const dep = (state: string) => cell(state, state === 'ok' ? 'ok' : state === 'off' ? undefined : 'bad')

// ---- views ----

interface View {
  scope: 'cluster' | 'node'
  problem?: string
}

function renderNodes(v: View & { nodes: NodeStat[] }) {
  ui.scope.textContent = v.scope === 'cluster' ? `cluster of ${v.nodes.length} node${v.nodes.length === 1 ? '' : 's'}` : 'this node only'
  if (v.problem) ui.scope.textContent += ` (${v.problem})`
  const rows = v.nodes.map((n) => {
    const tr = el('tr')
    tr.dataset.node = n.id
    tr.append(
      cell(n.id),
      cell(duration(n.uptimeS)),
      cell(String(n.connections), 'num'),
      cell(String(n.rooms), 'num'),
      cell(String(n.msgInPerS), 'num'),
      cell(String(n.msgOutPerS), 'num'),
      cell(bytes(n.rssBytes), 'num'),
      cell(bytes(n.heapUsedBytes), 'num'),
      dep(n.redis),
      dep(n.postgres),
      cell(n.draining ? 'draining' : 'serving', n.draining ? 'bad' : 'ok'),
    )
    return tr
  })
  ui.nodes.replaceChildren(...rows)
}

function renderRooms(v: { rooms: { room: string; members: number; nodes: number }[] }) {
  const rows = v.rooms.map((r) => {
    const tr = el('tr')
    const name = cell(r.room)
    name.title = 'look up this room'
    name.addEventListener('click', () => {
      ui.lookupRoom.value = r.room
      void lookup(r.room)
    })
    tr.append(name, cell(String(r.members), 'num'), cell(String(r.nodes), 'num'))
    return tr
  })
  if (rows.length === 0) {
    const tr = el('tr')
    const td = cell('no room has members')
    td.colSpan = 3
    tr.append(td)
    rows.push(tr)
  }
  ui.rooms.replaceChildren(...rows)
}

let plot: uPlot | undefined
function renderSeries(v: { points: { t: number; connections: number; msgInPerS: number; msgOutPerS: number }[] }) {
  const data: uPlot.AlignedData = [
    v.points.map((p) => p.t / 1000),
    v.points.map((p) => p.msgInPerS),
    v.points.map((p) => p.msgOutPerS),
    v.points.map((p) => p.connections),
  ]
  if (plot) return plot.setData(data)
  plot = new uPlot(
    {
      width: Math.max(400, ui.chart.clientWidth - 8),
      height: 220,
      series: [
        {},
        { label: 'messages in/s', stroke: '#3b5bdb', width: 2, scale: 'rate' },
        { label: 'messages out/s', stroke: '#e8590c', width: 2, scale: 'rate' },
        { label: 'connections', stroke: '#2b8a3e', width: 2, scale: 'conns' },
      ],
      scales: { rate: { range: (_u, _min, max) => [0, Math.max(1, max)] }, conns: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      axes: [
        {
          space: 70,
          incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600],
          values: (_u, splits) =>
            splits.map((s) => new Date(s * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })),
        },
        { scale: 'rate', label: 'messages/s' },
        { scale: 'conns', side: 1, label: 'connections', grid: { show: false } },
      ],
    },
    data,
    ui.chart,
  )
}

async function refresh() {
  try {
    const [nodes, rooms, series] = await Promise.all([
      api<View & { nodes: NodeStat[] }>('/api/admin/nodes'),
      api<{ rooms: { room: string; members: number; nodes: number }[] }>('/api/admin/rooms?limit=15'),
      api<{ points: { t: number; connections: number; msgInPerS: number; msgOutPerS: number }[] }>('/api/admin/series'),
    ])
    renderNodes(nodes)
    renderRooms(rooms)
    renderSeries(series)
    setStatus(`updated ${new Date().toLocaleTimeString()}`)
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      stop()
      sessionStorage.removeItem(KEY)
      showKeyForm()
      setStatus(err.status === 401 ? 'the key was refused' : 'the API is off on this server (API_KEY unset)', true)
      return
    }
    setStatus(`update failed: ${(err as Error).message}`, true)
  }
}

// ---- actions ----

async function publish(room: string, body: string) {
  ui.publishResult.className = 'result'
  try {
    const r = await api<{ id: string; room: string; seq: number }>('/api/publish', {
      method: 'POST',
      body: JSON.stringify(room ? { room, body } : { body }),
    })
    ui.publishResult.textContent = `published to ${r.room} as seq ${r.seq}`
    ui.publishBody.value = ''
  } catch (err) {
    ui.publishResult.className = 'result error'
    ui.publishResult.textContent = (err as Error).message
  }
}

async function disconnect(user: string, reason: string) {
  ui.disconnectResult.className = 'result'
  try {
    const r = await api<{ user: string; code: number }>(`/api/users/${encodeURIComponent(user)}/disconnect`, {
      method: 'POST',
      body: JSON.stringify(reason ? { reason } : {}),
    })
    ui.disconnectResult.textContent = `every connection of ${r.user} closed with ${r.code}`
  } catch (err) {
    ui.disconnectResult.className = 'result error'
    ui.disconnectResult.textContent = (err as Error).message
  }
}

/** A page of history holds every event of the room (v2): the messages show their current state. */
interface Message {
  type: string
  seq: number
  from: { id: string; name: string }
  body?: string
  ts: string
  edited_at?: string
  deleted?: true
}

/** Shows what a call answered, or its error, in one of the result lines. */
async function report<T>(out: HTMLElement, call: () => Promise<T>, say: (r: T) => string) {
  out.className = 'result'
  try {
    out.textContent = say(await call())
  } catch (err) {
    out.className = 'result error'
    out.textContent = (err as Error).message
  }
}

function moderate() {
  const room = ui.moderateRoom.value.trim()
  const user = ui.moderateUser.value.trim()
  const action = ui.moderateAction.value
  const reason = ui.moderateReason.value.trim()
  const body = {
    user,
    ...(action === 'mute' ? { seconds: Number(ui.moderateSeconds.value) } : {}),
    ...(reason && (action === 'ban' || action === 'kick' || action === 'mute') ? { reason } : {}),
  }
  return report(
    ui.moderateResult,
    () => api<{ seq: number }>(`/api/rooms/${encodeURIComponent(room)}/${action}`, { method: 'POST', body: JSON.stringify(body) }),
    (r) => `${action} ${user} in ${room}: event seq ${r.seq}`,
  ).then(() => (ui.auditRoom.value || ui.auditUser.value ? showAudit() : undefined))
}

function setRole() {
  const room = ui.roleRoom.value.trim()
  const user = ui.roleUser.value.trim()
  return report(
    ui.roleResult,
    () =>
      api<{ role: string }>(`/api/rooms/${encodeURIComponent(room)}/roles/${encodeURIComponent(user)}`, {
        method: 'PUT',
        body: JSON.stringify({ role: ui.roleRole.value }),
      }),
    (r) => `${user} is ${r.role} of ${room} (shown to them on their next join)`,
  )
}

interface AuditEntry {
  id: number
  at: string
  event: string
  user?: string
  room?: string
  detail?: Record<string, unknown>
}

/** The newest audit rows for the room and user typed (either may be empty); `before` pages back. */
let auditNext: number | undefined
async function showAudit(before?: number) {
  const q = new URLSearchParams({ limit: '50' })
  if (ui.auditRoom.value.trim()) q.set('room', ui.auditRoom.value.trim())
  if (ui.auditUser.value.trim()) q.set('user', ui.auditUser.value.trim())
  if (before !== undefined) q.set('before', String(before))
  ui.auditResult.className = 'result'
  try {
    const r = await api<{ entries: AuditEntry[]; more: boolean; next?: number }>(`/api/audit?${q}`)
    auditNext = r.more ? r.next : undefined
    ui.auditOlder.hidden = auditNext === undefined
    ui.auditResult.textContent = r.entries.length ? '' : 'no entries'
    ui.audit.replaceChildren(
      ...r.entries.map((e) => {
        const tr = el('tr')
        const detail = e.detail
          ? Object.entries(e.detail)
              .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`)
              .join(', ')
          : ''
        tr.append(
          cell(String(e.id)),
          cell(new Date(e.at).toLocaleString()),
          cell(e.event),
          cell(e.room ?? ''),
          cell(e.user ?? ''),
          cell(detail),
        )
        return tr
      }),
    )
  } catch (err) {
    ui.auditResult.className = 'result error'
    ui.auditResult.textContent =
      (err as ApiError).status === 404 ? `${(err as Error).message} (the audit log needs PostgreSQL)` : (err as Error).message
    ui.audit.replaceChildren()
    ui.auditOlder.hidden = true
  }
}

async function lookup(room: string) {
  ui.lookupResult.className = 'result'
  ui.lookupResult.textContent = 'looking up…'
  const path = encodeURIComponent(room)
  try {
    const [presence, history] = await Promise.all([
      api<{ users: { id: string; name: string }[] }>(`/api/rooms/${path}/presence`),
      api<{ messages: Message[]; more: boolean }>(`/api/rooms/${path}/messages?limit=20`),
    ])
    ui.lookupResult.textContent = `${room}: ${presence.users.length} member${presence.users.length === 1 ? '' : 's'}, ${history.messages.length} latest message${history.messages.length === 1 ? '' : 's'}${history.more ? ' (older ones exist)' : ''}`
    ui.members.replaceChildren(
      ...presence.users.map((u) => {
        const li = el('li', u.name)
        li.prepend(el('span', u.id, 'meta'))
        return li
      }),
    )
    ui.history.replaceChildren(
      ...history.messages
        .filter((m) => m.type === 'chat' || m.type === 'dm') // not the edits, reactions and moderation between them
        .map((m) => {
          const li = el('li')
          li.append(
            el('span', `#${m.seq} ${new Date(m.ts).toLocaleTimeString()}`, 'meta'),
            el('strong', m.from.name),
            document.createTextNode(': '),
            el('span', m.deleted ? '(deleted)' : `${m.body}${m.edited_at ? ' (edited)' : ''}`),
          )
          return li
        }),
    )
  } catch (err) {
    ui.lookupResult.className = 'result error'
    ui.lookupResult.textContent = (err as Error).message
    ui.members.replaceChildren()
    ui.history.replaceChildren()
  }
}

// ---- key and polling ----

let timer: ReturnType<typeof setInterval> | undefined
function stop() {
  clearInterval(timer)
  timer = undefined
}
function start() {
  ui.keyForm.hidden = true
  ui.forget.hidden = false
  ui.main.hidden = false
  stop()
  void refresh()
  timer = setInterval(refresh, POLL_MS)
}
function showKeyForm() {
  ui.keyForm.hidden = false
  ui.forget.hidden = true
  ui.main.hidden = true
  ui.key.focus()
}

ui.keyForm.addEventListener('submit', (e) => {
  e.preventDefault()
  const key = ui.key.value.trim()
  if (!key) return
  sessionStorage.setItem(KEY, key)
  ui.key.value = ''
  setStatus('connecting…')
  start()
})
ui.forget.addEventListener('click', () => {
  stop()
  sessionStorage.removeItem(KEY)
  setStatus('key forgotten')
  showKeyForm()
})
ui.publishForm.addEventListener('submit', (e) => {
  e.preventDefault()
  void publish(ui.publishRoom.value.trim(), ui.publishBody.value)
})
ui.disconnectForm.addEventListener('submit', (e) => {
  e.preventDefault()
  void disconnect(ui.disconnectUser.value.trim(), ui.disconnectReason.value.trim())
})
ui.lookupForm.addEventListener('submit', (e) => {
  e.preventDefault()
  void lookup(ui.lookupRoom.value.trim())
})

ui.moderateForm.addEventListener('submit', (e) => {
  e.preventDefault()
  void moderate()
})
ui.roleForm.addEventListener('submit', (e) => {
  e.preventDefault()
  void setRole()
})
ui.auditForm.addEventListener('submit', (e) => {
  e.preventDefault()
  void showAudit()
})
ui.auditOlder.addEventListener('click', () => void showAudit(auditNext))

if (sessionStorage.getItem(KEY)) start()
else {
  showKeyForm()
  setStatus('enter the API key to see the cluster')
}
