import type { Sql } from 'postgres'
import { THREAD_PARTICIPANTS, freshEpoch, pollStateOf, reactionMap } from '../core/room-log'
import type { LinkPreview, MessageState, Origin, Page } from '../core/room-log'
import { MESSAGE_TYPES, frameOf } from './rows'
import type { Row } from './rows'
import type { Store } from './types'

/** The reads of a room's log: where it continues, its events by seq, unread counts, message state. */
export type MessageReads = Pick<Store, 'origin' | 'range' | 'page' | 'unread' | 'last' | 'messages' | 'stored'>

/** A room's log read back from `messages` (and its state from `pins`, `reactions`), by seq. */
export function messageReads(sql: Sql): MessageReads {
  const COLUMNS = () => sql`seq, type, id, user_id, user_name, body, data, data is null as no_data, extra, created_at`

  return {
    async origin(room): Promise<Origin> {
      const created =
        await sql`insert into rooms (room, epoch) values (${room}, ${freshEpoch()}) on conflict (room) do nothing returning room`
      const [r] = await sql<{ epoch: string; seq: string; slow_mode_s: number }[]>`
        select epoch, slow_mode_s, coalesce((select max(seq) from messages where room = ${room}), 0) as seq from rooms where room = ${room}`
      const pins = created.length
        ? []
        : await sql<{ msg_id: string; msg_seq: string; by_id: string; by_name: string; pinned_at: Date }[]>`
        select msg_id, msg_seq, by_id, by_name, pinned_at from pins where room = ${room} and present order by pinned_at, seq`
      return {
        epoch: r!.epoch,
        seq: Number(r!.seq),
        known: created.length === 0,
        pins: pins.map((p) => ({
          msg: p.msg_id,
          seq: Number(p.msg_seq),
          by: { id: p.by_id, name: p.by_name },
          ts: p.pinned_at.toISOString(),
        })),
        settings: { slow_mode_s: r!.slow_mode_s },
      }
    },
    async range(room, after, upTo) {
      if (upTo <= after) return []
      const rows = await sql<Row[]>`
        select ${COLUMNS()} from messages
        where room = ${room} and seq > ${after} and seq <= ${upTo} order by seq`
      return rows.map((r) => frameOf(room, r))
    },
    async page(room, before, limit): Promise<Page> {
      const rows = await sql<Row[]>`
        select ${COLUMNS()} from messages
        where room = ${room} ${before === undefined ? sql`` : sql`and seq < ${before}`}
        order by seq desc limit ${limit + 1}`
      const more = rows.length > limit
      return {
        frames: rows
          .slice(0, limit)
          .reverse()
          .map((r) => frameOf(room, r)),
        more,
      }
    },
    async unread(room, after, below, user, cap) {
      if (below <= after + 1 || cap <= 0) return 0
      const [r] = await sql<{ n: string }[]>`
        select count(*) as n from (select 1 from messages where room = ${room} and seq > ${after} and seq < ${below}
          and type in ${sql(MESSAGE_TYPES)} and user_id <> ${user} limit ${cap}) x`
      return Number(r!.n)
    },
    async last(room, below) {
      const [r] = await sql<Row[]>`
        select ${COLUMNS()} from messages where room = ${room} and seq < ${below} and type in ${sql(MESSAGE_TYPES)}
        order by seq desc limit 1`
      return r ? frameOf(room, r) : undefined
    },
    async messages(room, ids) {
      const out = new Map<string, MessageState>()
      if (!ids.length) return out
      const rows = await sql<
        {
          id: string
          seq: string
          user_id: string
          body: string | null
          data: unknown
          cur_body: string | null
          cur_data: unknown
          edited_at: Date | null
          deleted_at: Date | null
          preview: LinkPreview | null
          extra: { poll?: Parameters<typeof pollStateOf>[0] } | null
          poll_closed_seq: string | null
        }[]
      >`
        select id, seq, user_id, body, data, cur_body, cur_data, edited_at, deleted_at, preview, extra, poll_closed_seq from messages
        where room = ${room} and id in ${sql(ids)} and type in ${sql(MESSAGE_TYPES)}`
      for (const r of rows) {
        const edited = r.edited_at !== null && r.deleted_at === null
        out.set(r.id, {
          seq: Number(r.seq),
          author: r.user_id,
          deleted: r.deleted_at !== null || undefined,
          edited_at: edited ? r.edited_at!.toISOString() : undefined,
          body: r.deleted_at ? undefined : edited ? (r.cur_body ?? undefined) : (r.body ?? undefined),
          data: r.deleted_at ? undefined : edited ? (r.cur_data ?? undefined) : (r.data ?? undefined),
          reactions: reactionMap(),
          ...(r.preview && !r.deleted_at ? { preview: r.preview } : {}),
        })
        if (r.extra?.poll) {
          const poll = pollStateOf(r.extra.poll)
          if (r.poll_closed_seq !== null) poll.closed = true
          out.get(r.id)!.poll = poll
        }
      }
      if (out.size) {
        const reactions = await sql<{ msg_id: string; reaction: string; user_id: string }[]>`
          select msg_id, reaction, user_id from reactions where room = ${room} and msg_id in ${sql([...out.keys()])} and present order by seq`
        for (const r of reactions) (out.get(r.msg_id)!.reactions[r.reaction] ??= []).push(r.user_id)
        const polls = [...out].filter(([, m]) => m.poll).map(([id]) => id)
        if (polls.length) {
          const votes = await sql<{ msg_id: string; user_id: string; options: number[] }[]>`
            select msg_id, user_id, options from poll_votes where room = ${room} and msg_id in ${sql(polls)} and cardinality(options) > 0`
          for (const v of votes) {
            const p = out.get(v.msg_id)!.poll!
            p.votes[v.user_id] = v.options.map(Number)
            for (const o of v.options) if (o < p.tallies.length) p.tallies[o]!++
          }
        }
        // Their threads, from the replies archived (messages_thread): the same summary the sequencer keeps.
        type Reply = { reply_to: string; user_id: string; user_name: string; seq: string; n: string; last: Date }
        const replies = await sql<Reply[]>`
          select distinct on (reply_to, user_id) reply_to, user_id, user_name, seq,
            count(*) over (partition by reply_to) as n, max(created_at) over (partition by reply_to) as last
          from messages where room = ${room} and reply_to in ${sql([...out.keys()])} and type in ${sql(MESSAGE_TYPES)}
          order by reply_to, user_id, seq desc`
        const byParent = new Map<string, Reply[]>()
        for (const r of replies) byParent.set(r.reply_to, [...(byParent.get(r.reply_to) ?? []), r])
        for (const [id, rs] of byParent) {
          rs.sort((a, b) => Number(b.seq) - Number(a.seq))
          out.get(id)!.thread = {
            count: Number(rs[0]!.n),
            last_ts: rs[0]!.last.toISOString(),
            participants: rs.slice(0, THREAD_PARTICIPANTS).map((r) => ({ id: r.user_id, name: r.user_name })),
          }
        }
      }
      return out
    },
    async stored(room, from, to) {
      const rows = await sql<{ seq: string }[]>`select seq from messages where room = ${room} and seq between ${from} and ${to}`
      return new Set(rows.map((r) => Number(r.seq)))
    },
  }
}
