import type { Sql } from 'postgres'
import { FrameError } from '../core/errors'
import { log } from '../log'
import { frameOf } from './rows'
import type { Row } from './rows'
import type { SearchPage, SearchQuery } from './types'
import { reactionMap } from '../core/room-log'
import type { MessageState } from '../core/room-log'

/** A result's stored state, as `Store.messages` makes it (search never returns a deleted message). */
function stateOf(
  r: Row & { cur_body: string | null; cur_data: unknown; edited_at: Date | null; reactions: [string, string][] },
): MessageState {
  const edited = r.edited_at !== null
  const reactions = reactionMap()
  for (const [reaction, user] of r.reactions) (reactions[reaction] ??= []).push(user)
  return {
    seq: Number(r.seq),
    author: r.user_id,
    edited_at: edited ? r.edited_at!.toISOString() : undefined,
    body: edited ? (r.cur_body ?? undefined) : (r.body ?? undefined),
    data: edited ? (r.cur_data ?? undefined) : r.no_data ? undefined : r.data,
    reactions,
  }
}

/** Characters that ILIKE treats as wildcards, escaped so that a query matches itself. */
const likePattern = (q: string) => `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/**
 * Scripts written without spaces between words (CJK): a run of them is one lexeme for the
 * `simple` parser, so a word inside a run is found by trigrams only, however short.
 */
const UNSPACED = /[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]/

/**
 * Full-text and substring search of the `messages` table (migration 007). A message matches
 * when every word of the query is a prefix of one of its words (`search_tsv @@ tsquery`, GIN)
 * OR the query is a substring of it, case-insensitively (`search_body ILIKE`, pg_trgm's GIN):
 * two indexed conditions the planner ORs as bitmaps. A query with no word for the parser (an
 * emoji, punctuation) is a substring only, however short. `search_body` is NULL for deleted messages
 * and events, so they never match; it holds an edited message's current body.
 */
export async function createSearch(sql: Sql) {
  const [ext] = await sql<{ trgm: boolean; indexed: boolean }[]>`
    select exists (select 1 from pg_extension where extname = 'pg_trgm') as trgm,
           exists (select 1 from pg_indexes where indexname = 'messages_search_trgm') as indexed`
  const trigrams = !!ext?.trgm && !!ext?.indexed
  if (!trigrams)
    log.warn(
      'search: pg_trgm is not available (CREATE EXTENSION pg_trgm failed or was not allowed): partial words, URLs and CJK are matched by an unindexed ILIKE over the rooms searched',
    )

  async function search(q: SearchQuery): Promise<SearchPage> {
    const scope = q.rooms ? sql`m.room = any(${q.rooms}::text[])` : sql`m.room in (select room from memberships where user_id = ${q.user})`
    // The query's own lexemes, as the documents' were made (same parser), each a prefix.
    // And whether it holds characters that are neither letters, digits nor spaces (migration 009).
    const [t] = await sql<{ tsq: string; symbols: boolean }[]>`
      select (select coalesce(string_agg(quote_literal(l) || ':*', ' & '), '') from unnest(tsvector_to_array(to_tsvector('simple', ${q.q}))) l) as tsq,
             cardinality(search_symbols(${q.q})) > 0 as symbols`
    const tsq = t!.tsq
    // Below three characters a trigram index has nothing to look up (it would read all of it),
    // so a short query is matched by its words only; but one the parser keeps no word of (an
    // emoji, `:)`) has no other way to match: it is looked for as it is, in the rooms searched.
    const substring = !tsq || [...q.q].length >= 3 || UNSPACED.test(q.q)
    let before = sql``
    if (q.before && 'ts' in q.before) before = sql`and m.created_at < ${q.before.ts}::timestamptz`
    else if (q.before) {
      const [b] = await sql<
        { room: string; seq: string }[]
      >`select m.room, m.seq from messages m where m.id = ${q.before.msg} and ${scope} limit 1`
      if (!b) throw new FrameError('bad_request', `before: no message ${q.before.msg} in your rooms`)
      before = sql`and (m.created_at, m.room, m.seq) < ((select created_at from messages where room = ${b.room} and seq = ${b.seq}), ${b.room}, ${b.seq})`
    }
    const after = q.cursor
      ? sql`and (m.created_at, m.room, m.seq) < ((select created_at from messages where room = ${q.cursor.room} and seq = ${q.cursor.seq}), ${q.cursor.room}, ${q.cursor.seq})`
      : sql``
    const matches =
      tsq && substring
        ? sql`(m.search_tsv @@ to_tsquery('simple', ${tsq}) or m.search_body ilike ${likePattern(q.q)})`
        : tsq
          ? sql`m.search_tsv @@ to_tsquery('simple', ${tsq})`
          : t!.symbols
            ? // Only what the parser drops: its symbols first (GIN), then the substring on those rows.
              sql`search_symbols(m.search_body) @> search_symbols(${q.q}) and m.search_body ilike ${likePattern(q.q)}`
            : sql`m.search_body ilike ${likePattern(q.q)}`
    // The page first, then each row's state (current body, reactions) for those rows only.
    const rows = await sql<
      (Row & { room: string; cur_body: string | null; cur_data: unknown; edited_at: Date | null; reactions: [string, string][] })[]
    >`
      select p.*, coalesce((select json_agg(json_build_array(r.reaction, r.user_id) order by r.seq) from reactions r
        where r.room = p.room and r.msg_id = p.id and r.present), '[]') as reactions
      from (select m.room, m.seq, m.type, m.id, m.user_id, m.user_name, m.body, m.data, m.data is null as no_data, m.extra, m.created_at, m.cur_body, m.cur_data, m.edited_at
      from messages m
      where m.search_body is not null and ${scope}
        ${q.room === undefined ? sql`` : sql`and m.room = ${q.room}`}
        ${q.from === undefined ? sql`` : sql`and m.user_id = ${q.from}`}
        ${before} ${after}
        and ${matches}
      order by m.created_at desc, m.room desc, m.seq desc
      limit ${q.limit + 1}) p
      order by p.created_at desc, p.room desc, p.seq desc`
    const page = rows.slice(0, q.limit)
    const last = page[page.length - 1]
    return {
      results: page.map((r) => ({ room: r.room, frame: frameOf(r.room, r), state: stateOf(r) })),
      cursor: rows.length > q.limit && last ? { room: last.room, seq: Number(last.seq) } : undefined,
    }
  }

  return { search, trigrams }
}
