/**
 * Search latency over a million stored messages (docs/search.md).
 *
 *   ./node_modules/.bin/bun bench/search.ts [--rows=1000000] [--runs=40]
 *
 * Fills a fresh database (dropped afterwards) with INSERT … SELECT generate_series: ROWS
 * messages over 1 000 rooms, one user a member of 50 of them; then starts the server on it and
 * times GET /api/search for a few kinds of query, printing p50/p99 and each query's plan
 * (EXPLAIN ANALYZE of the same SQL as src/store/search.ts).
 */
import postgres from 'postgres'
import { startServer } from '../test/helpers/server'
import { migrate } from '../src/store/migrate'

const arg = (name: string, def: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def)
const ROWS = arg('rows', 1_000_000)
const RUNS = arg('runs', 40)
const ROOMS = 1000
const USER = 'bench-user'
const API_KEY = 'search-bench-key-0123456789abcdef'
const ADMIN = 'postgres://postgres@127.0.0.1:5432/test'
const name = `chat_search_bench_${process.pid}`
const admin = postgres(ADMIN, { max: 1, onnotice: () => {} })
await admin.unsafe(`create database ${name}`)
const dsn = `postgres://postgres@127.0.0.1:5432/${name}`
const sql = postgres(dsn, { max: 2, onnotice: () => {} })
let server: Awaited<ReturnType<typeof startServer>> | undefined
try {
  await migrate(sql)
  const t0 = performance.now()
  // Building the search indexes once after the fill is several times faster than updating them
  // per row; they are made again below with the migration's own definitions.
  const indexes = await sql<
    { indexname: string; indexdef: string }[]
  >`select indexname, indexdef from pg_indexes where tablename = 'messages' and indexname like 'messages_search_%'`
  for (const i of indexes) await sql.unsafe(`drop index ${i.indexname}`)
  // Words: a few hundred common ones cycling, plus planted ones at known rates: `hello` in 1 of
  // 10, a URL in 1 of 40, `unbelievable` in 1 of 100, `xylophone` in 1 of 100 000, Cyrillic in
  // 1 of 20 (placed so that part of them fall in the user's rooms).
  const CHUNK = 100_000
  for (let from = 0; from < ROWS; from += CHUNK) {
    const to = Math.min(ROWS, from + CHUNK) - 1
    await sql.unsafe(`
      insert into messages (room, seq, type, id, user_id, user_name, body, created_at)
      select 'r' || (i % ${ROOMS}), i / ${ROOMS} + 1, 'chat', 'm' || i, 'u' || (i % 997), 'U' || (i % 997),
        concat_ws(' ',
          'w' || (i * 7 % 200), 'w' || (i * 13 % 211), 'word' || (i % 5000),
          case when i % 10 = 0 then 'hello' end,
          case when i % 40 = 0 then 'see https://example.com/docs/page' || (i % 1000) || '?id=' || i end,
          case when i % 100 = 40 then 'an unbelievable result' end,
          case when i % 100000 = 20 then 'xylophone' end,
          case when i % 20 = 0 then 'привет мир' end,
          'lorem ipsum dolor ' || md5(i::text)),
        now() - (${ROWS} - i) * interval '1 second'
      from generate_series(${from}, ${to}) i`)
    process.stdout.write(`\rfilled ${to + 1} rows`)
  }
  const filled = (performance.now() - t0) / 1000
  await sql`set maintenance_work_mem = '256MB'`
  for (const i of indexes) await sql.unsafe(i.indexdef)
  console.log(
    `\nrows in ${filled.toFixed(1)} s; indexes (${indexes.map((i) => i.indexname).join(', ')}) in ${((performance.now() - t0) / 1000 - filled).toFixed(1)} s`,
  )
  await sql`insert into rooms (room, epoch) select 'r' || r, 'bench' from generate_series(0, ${ROOMS - 1}) r`
  await sql`insert into memberships (room, user_id) select 'r' || (r * 20), ${USER} from generate_series(0, 49) r`
  await sql`insert into users (id, name) values (${USER}, 'Bench')`
  await sql`analyze messages`
  await sql`analyze memberships`
  const fill = (performance.now() - t0) / 1000
  const [size] = await sql<{ s: string }[]>`select pg_size_pretty(pg_total_relation_size('messages')) as s`
  console.log(`\nfilled ${ROWS} messages in ${fill.toFixed(1)} s (messages table with indexes: ${size!.s})`)

  server = await startServer({ env: { POSTGRES_DSN: dsn, API_KEY, RATE_LIMIT_PER_SEC: '0' }, timeoutMs: 60_000 })
  const kinds: [string, string][] = [
    ['common word', 'hello'],
    ['rare word', 'xylophone'],
    ['partial word', 'believ'],
    ['URL fragment', 'example.com/docs/page40'],
    ['Cyrillic word', 'мир'],
    ['no match', 'qqqzzz'],
  ]
  console.log(`\n${'query'.padEnd(16)} ${'q'.padEnd(26)} ${'results'.padStart(7)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)}`)
  for (const [kind, q] of kinds) {
    const times: number[] = []
    let results = 0
    for (let i = 0; i < RUNS + 3; i++) {
      const t = performance.now()
      const r = await fetch(`${server.url}/api/search?user=${USER}&q=${encodeURIComponent(q)}&limit=20`, {
        headers: { authorization: `Bearer ${API_KEY}` },
      })
      const body = (await r.json()) as { results: unknown[] }
      if (r.status !== 200) throw new Error(`search ${q}: ${r.status} ${JSON.stringify(body)}`)
      if (i >= 3) times.push(performance.now() - t) // the first ones warm the cache
      results = body.results.length
    }
    times.sort((a, b) => a - b)
    const pct = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!
    console.log(
      `${kind.padEnd(16)} ${q.padEnd(26)} ${String(results).padStart(7)} ${pct(0.5).toFixed(1).padStart(8)} ${pct(0.99).toFixed(1).padStart(8)}`,
    )
  }

  // The plans: the same SQL as src/store/search.ts, as the server runs it.
  for (const [kind, q] of kinds.slice(0, 4)) {
    const [t] = await sql<
      { tsq: string }[]
    >`select coalesce(string_agg(quote_literal(l) || ':*', ' & '), '') as tsq from unnest(tsvector_to_array(to_tsvector('simple', ${q}))) l`
    const plan = await sql.unsafe(
      `explain (analyze, costs off, timing on, summary on)
       select p.*, coalesce((select json_agg(json_build_array(r.reaction, r.user_id) order by r.seq) from reactions r
         where r.room = p.room and r.msg_id = p.id and r.present), '[]') as reactions
       from (select m.room, m.seq, m.id, m.body, m.created_at, m.cur_body, m.edited_at from messages m
         where m.search_body is not null and m.room in (select room from memberships where user_id = $1)
           and (m.search_tsv @@ to_tsquery('simple', $2) or m.search_body ilike $3)
         order by m.created_at desc, m.room desc, m.seq desc limit 21) p
       order by p.created_at desc, p.room desc, p.seq desc`,
      [USER, t!.tsq, `%${q}%`],
    )
    console.log(`\nplan, ${kind} (${q}):\n${plan.map((r) => `  ${r['QUERY PLAN']}`).join('\n')}`)
  }
} finally {
  await server?.stop('SIGKILL')
  await sql.end({ timeout: 1 })
  await admin.unsafe(`drop database if exists ${name} with (force)`)
  await admin.end({ timeout: 1 })
  console.log(`\ndropped database ${name}`)
}
