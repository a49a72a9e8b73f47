import type { Sql } from 'postgres'
import type { ScheduledMessage, ScheduledQueue } from './scheduled'

/** Scheduled messages in PostgreSQL (migration 010): a claim is `FOR UPDATE SKIP LOCKED`, so two nodes never take one row. */
export function postgresScheduled(sql: Sql): ScheduledQueue {
  type Row = { item: ScheduledMessage | string }
  // postgres.js hands jsonb back parsed or as text depending on its type setup: either reads.
  const itemOf = (r: Row): ScheduledMessage => (typeof r.item === 'string' ? JSON.parse(r.item) : r.item)
  return {
    kind: 'postgres',
    async add(m, cap) {
      // The count and the insert in one statement: two adds at once may both pass the cap by one at most.
      const rows = await sql`insert into scheduled_messages (id, user_id, send_at, due_at, item)
        select ${m.scheduled}, ${m.user.id}, ${m.send_at}, ${m.send_at}, (${JSON.stringify(m)}::text)::jsonb
        where (select count(*) from scheduled_messages where user_id = ${m.user.id}) < ${cap}
        on conflict (id) do nothing
        returning id`
      if (rows.length === 1) return 'added'
      const [kept] = await sql`select 1 from scheduled_messages where id = ${m.scheduled}`
      return kept ? 'exists' : 'limit'
    },
    async list(user, room) {
      const rows = await sql<Row[]>`select item from scheduled_messages where user_id = ${user}
        ${room === undefined ? sql`` : sql`and item ->> 'room' = ${room}`} order by send_at, id`
      return rows.map(itemOf)
    },
    async remove(user, id) {
      const rows = await sql`delete from scheduled_messages where id = ${id} and user_id = ${user} returning id`
      return rows.length === 1
    },
    async claim(now, limit, leaseMs) {
      const rows = await sql<Row[]>`update scheduled_messages set due_at = ${new Date(now + leaseMs)}
        where id in (select id from scheduled_messages where due_at <= ${new Date(now)} order by due_at limit ${limit} for update skip locked)
        returning item`
      return rows.map(itemOf)
    },
    async done(m) {
      await sql`delete from scheduled_messages where id = ${m.scheduled}`
    },
  }
}
