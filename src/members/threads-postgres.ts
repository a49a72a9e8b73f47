import type { Sql } from 'postgres'
import { UNREAD_CAP } from '../broker/read-model'
import type { Threads } from './threads'

/** Threads in PostgreSQL (migration 010): durable, whatever the broker. */
export function postgresThreads(sql: Sql): Threads {
  return {
    kind: 'postgres',
    async replied(r) {
      await sql.begin(async (tx) => {
        await tx`insert into threads (room, msg, root_seq, count, last_at) values (${r.room}, ${r.msg}, ${r.rootSeq}, 1, ${r.ts})
          on conflict (room, msg) do update set count = threads.count + 1, last_at = greatest(threads.last_at, excluded.last_at)`
        await tx`insert into thread_replies (room, msg, seq, user_id) values (${r.room}, ${r.msg}, ${r.seq}, ${r.from}) on conflict do nothing`
        // The root's author and the replier hold it in their lists; the replier's marker follows its reply.
        await tx`insert into thread_members (user_id, room, msg, involved, read_seq)
          values (${r.rootAuthor}, ${r.room}, ${r.msg}, true, 0), (${r.from}, ${r.room}, ${r.msg}, true, ${r.seq})
          on conflict (user_id, room, msg) do update set involved = true, read_seq = greatest(thread_members.read_seq, excluded.read_seq)`
      })
    },
    async read(room, msg, user, seq) {
      const [r] = await sql<
        { read_seq: string }[]
      >`insert into thread_members (user_id, room, msg, read_seq) values (${user}, ${room}, ${msg}, ${seq})
        on conflict (user_id, room, msg) do update set read_seq = greatest(thread_members.read_seq, excluded.read_seq)
        returning read_seq`
      return Number(r!.read_seq)
    },
    async list(user, { room, before, limit }) {
      const rows = await sql<{ room: string; msg: string; root_seq: string; count: number; last_at: Date; unread: string }[]>`
        select t.room, t.msg, t.root_seq, t.count, t.last_at,
          (select count(*) from (select 1 from thread_replies r where r.room = t.room and r.msg = t.msg and r.seq > m.read_seq
             and r.user_id <> ${user} limit ${UNREAD_CAP}) x) as unread
        from thread_members m join threads t on t.room = m.room and t.msg = m.msg
        where m.user_id = ${user} and m.involved
          ${room === undefined ? sql`` : sql`and t.room = ${room}`}
          ${before === undefined ? sql`` : sql`and t.last_at < ${new Date(before)}`}
        order by t.last_at desc, t.room, t.msg limit ${limit + 1}`
      return {
        threads: rows.slice(0, limit).map((r) => ({
          room: r.room,
          msg: r.msg,
          rootSeq: Number(r.root_seq),
          count: r.count,
          last_ts: r.last_at.toISOString(),
          unread: Number(r.unread),
        })),
        more: rows.length > limit,
      }
    },
  }
}
