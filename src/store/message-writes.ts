import type { Sql } from 'postgres'
import { MESSAGE_TYPES } from './rows'
import type { StoredEvent } from './types'

/** The event types that change a message's state (applied to it and to reactions by the writer). */
const CHANGE_TYPES = new Set(['edit', 'delete', 'react', 'pinned', 'unpinned', 'preview', 'vote', 'poll_closed', 'settings'])

/**
 * A batch of a room log's events into `messages` (`ON CONFLICT DO NOTHING`: a retried batch
 * writes nothing twice), and the state changes among them applied in seq order, in the same
 * transaction.
 */
export async function insertMessages(sql: Sql, ms: StoredEvent[]) {
  if (!ms.some((m) => CHANGE_TYPES.has(m.type))) return insertEvents(sql, ms)
  // Changes are applied in seq order, in the transaction of their events.
  await sql.begin(async (tx) => {
    await insertEvents(tx as unknown as Sql, ms)
    for (const m of [...ms].sort((a, b) => a.seq - b.seq)) if (CHANGE_TYPES.has(m.type)) await applyChange(tx as unknown as Sql, m)
  })
}

/** The state change an edit, delete or reaction makes; guarded by seq, so applying it again changes nothing. */
async function applyChange(tx: Sql, m: StoredEvent) {
  const x = (m.extra ?? {}) as Record<string, unknown>
  const msg = String(x.msg)
  if (m.type === 'edit')
    await tx`update messages set cur_body = ${m.body ?? null}, cur_data = (${m.data === undefined ? null : JSON.stringify(m.data)}::text)::jsonb, edited_at = ${m.ts}, state_seq = ${m.seq}
      where room = ${m.room} and id = ${msg} and state_seq < ${m.seq}`
  else if (m.type === 'delete') {
    await tx`update messages set cur_body = null, cur_data = null, preview = null, deleted_at = ${m.ts}, state_seq = ${m.seq}
      where room = ${m.room} and id = ${msg} and state_seq < ${m.seq}`
    await tx`delete from reactions where room = ${m.room} and msg_id = ${msg}`
    // A deleted message is no longer pinned (the broker's rules say the same).
    await tx`update pins set present = false, seq = ${m.seq} where room = ${m.room} and msg_id = ${msg} and seq < ${m.seq}`
  } else if (m.type === 'preview')
    // A deleted message takes no preview (the broker refused it anyway; a batch applied again changes nothing).
    await tx`update messages set preview = (${JSON.stringify(x.preview)}::text)::jsonb
      where room = ${m.room} and id = ${msg} and type in ${tx(MESSAGE_TYPES)} and deleted_at is null`
  else if (m.type === 'pinned')
    await tx`insert into pins (room, msg_id, msg_seq, by_id, by_name, pinned_at, present, seq)
      values (${m.room}, ${msg}, coalesce((select seq from messages where room = ${m.room} and id = ${msg} and type in ${tx(MESSAGE_TYPES)} limit 1), 0), ${m.from.id}, ${m.from.name}, ${m.ts}, true, ${m.seq})
      on conflict (room, msg_id) do update set msg_seq = excluded.msg_seq, by_id = excluded.by_id, by_name = excluded.by_name, pinned_at = excluded.pinned_at, present = true, seq = excluded.seq
      where pins.seq < excluded.seq`
  else if (m.type === 'unpinned')
    await tx`update pins set present = false, seq = ${m.seq} where room = ${m.room} and msg_id = ${msg} and seq < ${m.seq}`
  else if (m.type === 'vote' && m.from.id !== '') {
    // (An anonymous vote the archive repair read back from its frame names nobody: not kept.)
    // Whole numbers by the rules: written as an array literal.
    const options = `{${(x.options as number[]).join(',')}}`
    await tx`insert into poll_votes (room, msg_id, user_id, options, seq) values (${m.room}, ${msg}, ${m.from.id}, ${options}::smallint[], ${m.seq})
      on conflict (room, msg_id, user_id) do update set options = excluded.options, seq = excluded.seq where poll_votes.seq < excluded.seq`
  } else if (m.type === 'poll_closed')
    await tx`update messages set poll_closed_seq = ${m.seq} where room = ${m.room} and id = ${msg} and type in ${tx(MESSAGE_TYPES)} and poll_closed_seq is null`
  else if (m.type === 'settings')
    await tx`update rooms set slow_mode_s = ${Number(x.slow_mode_s)}, settings_seq = ${m.seq} where room = ${m.room} and settings_seq < ${m.seq}`
  else if (m.type === 'react')
    await tx`insert into reactions (room, msg_id, reaction, user_id, present, seq)
      values (${m.room}, ${msg}, ${String(x.reaction)}, ${m.from.id}, ${x.op !== 'remove'}, ${m.seq})
      on conflict (room, msg_id, reaction, user_id) do update set present = excluded.present, seq = excluded.seq where reactions.seq < excluded.seq`
}

async function insertEvents(sql: Sql, ms: StoredEvent[]) {
  await sql`
    insert into messages (room, seq, type, id, user_id, user_name, body, data, extra, created_at)
    select r, s, y, i, u, n, b, d::jsonb, e::json, t from unnest(
      ${ms.map((m) => m.room)}::text[], ${ms.map((m) => m.seq)}::bigint[], ${ms.map((m) => m.type)}::text[], ${ms.map((m) => m.id)}::text[],
      ${ms.map((m) => m.from.id)}::text[], ${ms.map((m) => m.from.name)}::text[], ${ms.map((m) => m.body ?? null)}::text[],
      ${ms.map((m) => (m.data === undefined ? null : JSON.stringify(m.data)))}::text[],
      ${ms.map((m) => (m.extra ? JSON.stringify(m.extra) : null))}::text[], ${ms.map((m) => m.ts)}::timestamptz[]
    ) as x(r, s, y, i, u, n, b, d, e, t)
    on conflict do nothing`
}
