import type { Sql } from 'postgres'

/** The SQL names of one outbox: its table, where undeliverable rows go, its trigger and channel. */
export interface OutboxNames {
  table: string
  failed: string
  notify: string
  lane: string
  /** The LISTEN/NOTIFY channel: the table's name. */
  channel: string
}

/** The names beside an outbox table (the name is checked by config: OUTBOX_TABLE_PATTERN, no quoting needed). */
export function outboxNames(table: string): OutboxNames {
  return { table, failed: `${table}_failed`, notify: `${table}_notify`, lane: `${table}_lane`, channel: table }
}

/**
 * A row's lane: the rows that must be delivered one after the other, in `id` order. A chat's is
 * its room; a dm's is the pair of users (one direct room, whichever of the two writes). Lanes are
 * what nodes lock (outbox/batch.ts), so two nodes never deliver rows of one room at once.
 */
export const LANE_SQL = `(case when to_user is null then 'r ' || coalesce(room, '')
  else 'd ' || least(coalesce(from_user, 'server'), to_user) || ' ' || greatest(coalesce(from_user, 'server'), to_user) end)`

/**
 * Creates what is missing: the table (the columns of the contract), its `_failed` twin, the
 * index of lanes and the trigger that NOTIFYs on insert (once per statement: at commit, and not
 * at all on rollback). Nodes starting together take turns on a transaction-level advisory lock
 * (`create ... if not exists` is not safe against itself).
 */
export async function ensureOutbox(sql: Sql, n: OutboxNames): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext(${`outbox schema ${n.table}`}))`
    await tx.unsafe(`create table if not exists ${n.table} (
      id bigserial primary key,
      room text,
      to_user text,
      body text,
      data jsonb,
      from_user text default 'server',
      idempotency_key text unique,
      created_at timestamptz default now()
    )`)
    await tx.unsafe(`create table if not exists ${n.failed} (
      id bigint not null,
      room text,
      to_user text,
      body text,
      data jsonb,
      from_user text,
      idempotency_key text,
      created_at timestamptz,
      error text not null,
      failed_at timestamptz not null default now()
    )`)
    await tx.unsafe(`create index if not exists ${n.lane} on ${n.table} (${LANE_SQL}, id)`)
    await tx.unsafe(`create or replace function ${n.notify}() returns trigger language plpgsql as $$
      begin perform pg_notify('${n.channel}', ''); return null; end $$`)
    // CREATE OR REPLACE TRIGGER needs PostgreSQL 14; this works on older ones too.
    await tx.unsafe(`do $$ begin
      if not exists (select 1 from pg_trigger where tgname = '${n.notify}' and tgrelid = '${n.table}'::regclass) then
        create trigger ${n.notify} after insert on ${n.table} for each statement execute function ${n.notify}();
      end if; end $$`)
  })
}
