import type { Attachment, DeleteEvent, EditEvent, HistoryPage, Reaction, ReactEvent, RoomMessage, User } from '@chat-server/client'
import { Store } from './store'

/** v4: what the server found at a message's first link (`preview` room event, or `preview` in history). */
export interface LinkPreview {
  url: string
  title: string
  description?: string
  image?: string
  site_name?: string
}

/** The message a reply answers, as the reply shows it (kept current: an edit or delete of it shows here too). */
export interface Quote {
  id: string
  from: User
  body: string
  deleted: boolean
}

/**
 * One message as a list shows it, with every change applied. Immutable: a change makes a new
 * row, and a row nothing changed stays the very same object, so `React.memo` rows skip it.
 */
export interface MessageRow {
  id: string
  type: 'chat' | 'dm'
  room: string
  seq: number
  from: User
  /** `''` once deleted. */
  body: string
  data?: unknown
  attachments?: Attachment[]
  ts: string
  /** Written by this user. */
  mine: boolean
  /** Sent by the server itself (`from.system`). */
  system: boolean
  /** When it was last edited. */
  edited_at?: string
  deleted: boolean
  /** In the order they were first added; `me`: this user's own. */
  reactions: readonly Reaction[]
  /** The message this one replies to (its id), and, once that message is loaded, how it reads now. */
  reply_to?: string
  replyTo?: Quote
  preview?: LinkPreview
}

/** A v4 `preview` room event (the typed client passes it on as a raw frame). */
export interface PreviewEvent {
  type: 'preview'
  room: string
  seq: number
  msg: string
  preview: LinkPreview
}

type Change = EditEvent | DeleteEvent | ReactEvent | PreviewEvent
type Live = { kind: 'message'; m: RoomMessage } | { kind: 'change'; e: Change }

/** Previews that came before their message (a raw frame may overtake a held replay), at most. */
const MAX_EARLY_PREVIEWS = 200
const NO_REACTIONS: readonly Reaction[] = Object.freeze([])

const quoteOf = (r: MessageRow): Quote => ({ id: r.id, from: r.from, body: r.body, deleted: r.deleted })
const sameQuote = (a: Quote | undefined, b: Quote | undefined) =>
  a === b || (!!a && !!b && a.id === b.id && a.body === b.body && a.deleted === b.deleted && a.from === b.from)

/**
 * A room's messages in seq order, each once, with edits, deletes, reactions, reply quotes and
 * link previews applied: the pure part of `useRoom`, fed by the client's events and `history`
 * pages. `rows` is a store whose snapshot is a new array when anything changed, holding the same
 * row objects for the messages that did not.
 *
 * While the newest page is read (`hold`), live events wait; `loaded(page)` puts the page in and
 * then applies only the waiting events the page does not show already (those after its last seq).
 */
export class Timeline {
  readonly rows = new Store<readonly MessageRow[]>([])
  #list: MessageRow[] = []
  #byId = new Map<string, MessageRow>()
  /** Reply ids by the id of the message they answer. */
  #replies = new Map<string, Set<string>>()
  #held?: Live[]
  /** While an older page is read: edits and deletes of messages not loaded (they may be on that page). */
  #olderPending?: Change[]
  #earlyPreviews = new Map<string, LinkPreview>()

  constructor(private readonly me: () => string | undefined) {}

  get size(): number {
    return this.#list.length
  }

  /** The oldest message loaded (its seq is where an older page ends). */
  get first(): MessageRow | undefined {
    return this.#list[0]
  }

  get(id: string): MessageRow | undefined {
    return this.#byId.get(id)
  }

  /** From now until `loaded`, live events wait for the page being read. */
  hold(): void {
    this.#held ??= []
  }

  get holding(): boolean {
    return this.#held !== undefined
  }

  /** A live message (from the client's `chat`/`dm` events: in seq order, once). */
  message(m: RoomMessage): void {
    if (this.#held) return void this.#held.push({ kind: 'message', m })
    if (this.#insert(m)) this.#publish()
  }

  /** A live edit, delete, reaction or preview. */
  change(e: Change): void {
    if (this.#held) return void this.#held.push({ kind: 'change', e })
    if (this.#apply(e)) this.#publish()
  }

  /**
   * The newest page arrived (or could not be read: no page): its messages in their current
   * state, then what came live meanwhile and is newer than the page.
   */
  loaded(page?: Pick<HistoryPage, 'messages' | 'events'>): void {
    const held = this.#held ?? []
    this.#held = undefined
    let changed = false
    const upTo = page?.events.at(-1)?.seq ?? page?.messages.at(-1)?.seq ?? 0
    for (const m of page?.messages ?? []) changed = this.#insert(m, true) || changed
    for (const l of held) {
      if (l.kind === 'message') changed = (l.m.seq > upTo && this.#insert(l.m)) || changed
      else if (l.e.seq > upTo) changed = this.#apply(l.e) || changed
    }
    if (changed) this.#publish()
  }

  /** An older page is being read: from now until `older`, changes to messages not loaded are kept. */
  readingOlder(): void {
    this.#olderPending ??= []
  }

  /**
   * An older page (`history` with `before`): its messages in their current state, before the
   * ones shown. Edits and deletes that came live while it was read, to its messages, are applied
   * after it: they are newer than anything before the request, and applying one twice changes
   * nothing. (Reactions are not: a count cannot tell whether the page had it already.)
   */
  older(page: Pick<HistoryPage, 'messages'>): void {
    const pending = this.#olderPending ?? []
    this.#olderPending = undefined
    let changed = false
    for (const m of page.messages) changed = this.#insert(m, true) || changed
    for (const e of pending) changed = this.#apply(e) || changed
    if (changed) this.#publish()
  }

  /** Forgets everything (the room's sequence restarted, or messages were lost): a new page follows. */
  clear(): void {
    this.#list = []
    this.#byId.clear()
    this.#replies.clear()
    this.#earlyPreviews.clear()
    this.#olderPending = undefined
    this.#publish()
  }

  // ---------------------------------------------------------------- internals

  /** Inserts a message once, in seq order; `current` (a history copy) replaces a live copy's state. */
  #insert(m: RoomMessage, current = false): boolean {
    const known = this.#byId.get(m.id)
    if (known) {
      if (!current) return false
      // A history copy is the message's state when the page was read: at least as new as a live copy.
      const row = this.#rowOf(m)
      if (this.#same(known, row)) return false
      this.#replace(known, row)
      return true
    }
    const row = this.#rowOf(m)
    this.#byId.set(row.id, row)
    const list = this.#list
    let i = list.length
    if (i > 0 && list[i - 1]!.seq > row.seq) {
      // Not the newest (an older page): binary search for its place.
      let lo = 0
      let hi = list.length
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        if (list[mid]!.seq < row.seq) lo = mid + 1
        else hi = mid
      }
      i = lo
    }
    list.splice(i, 0, row)
    if (row.reply_to) {
      let set = this.#replies.get(row.reply_to)
      if (!set) this.#replies.set(row.reply_to, (set = new Set()))
      set.add(row.id)
    }
    // Replies loaded before it (it came with an older page) quote it now.
    this.#requote(row)
    return true
  }

  #rowOf(m: RoomMessage): MessageRow {
    const deleted = !!m.deleted
    const parent = m.reply_to ? this.#byId.get(m.reply_to) : undefined
    const preview = (m as { preview?: LinkPreview }).preview ?? this.#earlyPreviews.get(m.id)
    this.#earlyPreviews.delete(m.id)
    return {
      id: m.id,
      type: m.type,
      room: m.room,
      seq: m.seq,
      from: m.from,
      body: deleted ? '' : (m.body ?? ''),
      ...(deleted || m.data === undefined ? {} : { data: m.data }),
      ...(m.attachments?.length && !deleted ? { attachments: m.attachments } : {}),
      ts: m.ts,
      mine: m.from.id === this.me(),
      system: m.from.system === true,
      ...(m.edited_at ? { edited_at: m.edited_at } : {}),
      deleted,
      reactions: m.reactions?.length && !deleted ? m.reactions : NO_REACTIONS,
      ...(m.reply_to ? { reply_to: m.reply_to } : {}),
      ...(parent ? { replyTo: quoteOf(parent) } : {}),
      ...(preview && !deleted ? { preview } : {}),
    }
  }

  #same(a: MessageRow, b: MessageRow): boolean {
    return (
      a.body === b.body &&
      a.deleted === b.deleted &&
      a.edited_at === b.edited_at &&
      a.data === b.data &&
      a.preview === b.preview &&
      sameQuote(a.replyTo, b.replyTo) &&
      a.reactions.length === b.reactions.length &&
      a.reactions.every((r, i) => {
        const o = b.reactions[i]!
        return r.reaction === o.reaction && r.count === o.count && r.me === o.me
      })
    )
  }

  /** Puts the new row where the old one was, and updates the replies that quote it. */
  #replace(old: MessageRow, row: MessageRow) {
    this.#byId.set(row.id, row)
    const i = this.#indexOf(old)
    if (i >= 0) this.#list[i] = row
    if (old.body !== row.body || old.deleted !== row.deleted) this.#requote(row)
  }

  #requote(parent: MessageRow) {
    for (const id of this.#replies.get(parent.id) ?? []) {
      const reply = this.#byId.get(id)
      if (!reply) continue
      const quote = quoteOf(parent)
      if (sameQuote(reply.replyTo, quote)) continue
      this.#replace(reply, { ...reply, replyTo: quote })
    }
  }

  #indexOf(row: MessageRow): number {
    const list = this.#list
    let lo = 0
    let hi = list.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      const s = list[mid]!.seq
      if (s === row.seq) return list[mid]!.id === row.id ? mid : list.findIndex((r) => r.id === row.id)
      if (s < row.seq) lo = mid + 1
      else hi = mid - 1
    }
    return -1
  }

  #apply(e: Change): boolean {
    const row = this.#byId.get(e.msg)
    if (!row) {
      if (this.#olderPending && e.type !== 'react') this.#olderPending.push(e)
      // A change to a message older than what is loaded: its page will show it as it stands.
      if (e.type === 'preview') {
        if (this.#earlyPreviews.size >= MAX_EARLY_PREVIEWS) this.#earlyPreviews.delete(this.#earlyPreviews.keys().next().value!)
        this.#earlyPreviews.set(e.msg, e.preview)
      }
      return false
    }
    let next: MessageRow
    switch (e.type) {
      case 'edit': {
        if (row.deleted) return false
        const { data: _old, ...rest } = row
        next = { ...rest, body: e.body, edited_at: e.ts, ...(e.data === undefined ? {} : { data: e.data }) }
        break
      }
      case 'delete': {
        if (row.deleted) return false
        const { data: _d, attachments: _a, preview: _p, ...rest } = row
        next = { ...rest, body: '', deleted: true, reactions: NO_REACTIONS }
        break
      }
      case 'react': {
        if (row.deleted) return false
        const reactions = this.#react(row.reactions, e)
        if (reactions === row.reactions) return false
        next = { ...row, reactions }
        break
      }
      case 'preview':
        if (row.deleted || row.preview === e.preview) return false
        next = { ...row, preview: e.preview }
        break
    }
    this.#replace(row, next)
    return true
  }

  #react(list: readonly Reaction[], e: ReactEvent): readonly Reaction[] {
    const mine = e.user.id === this.me()
    const i = list.findIndex((r) => r.reaction === e.reaction)
    if (e.op === 'add') {
      if (i < 0) return [...list, { reaction: e.reaction, count: 1, me: mine }]
      const r = list[i]!
      return list.map((x, j) => (j === i ? { reaction: r.reaction, count: r.count + 1, me: r.me || mine } : x))
    }
    if (i < 0) return list
    const r = list[i]!
    if (r.count <= 1) return list.filter((_, j) => j !== i)
    return list.map((x, j) => (j === i ? { reaction: r.reaction, count: r.count - 1, me: mine ? false : r.me } : x))
  }

  #publish() {
    this.rows.set(this.#list.slice())
  }
}
