// The transactional outbox on one node (memory engine): docs/outbox.md, PROTOCOL-v4 "Integration".
import { describe, expect } from 'bun:test'
import { needService } from '../helpers/services'
import { runServerOnce, until } from '../helpers/server'
import { testNodes } from '../helpers/nodes'
import { bodies, outboxDb } from './shared'

const it = await needService('PostgreSQL', 5432)
const t = testNodes('outbox-one-node-key-0123456789')
const db = outboxDb('one')
const { sql } = db

/** A node on its own outbox table (polling slowly unless told: deliveries then come from LISTEN). */
async function nodeOn(table: string, env: Record<string, string> = {}) {
  const s = await t.node({ OUTBOX_DSN: db.dsn, OUTBOX_TABLE: table, OUTBOX_POLL_MS: '60000', ...env })
  await db.ready(table)
  return s
}

describe('outbox: one node', () => {
  it('rows committed in one transaction reach a member in id order, woken by LISTEN; rolled-back rows never do', async () => {
    const table = db.table()
    const s = await nodeOn(table)
    const room = t.uid('orders')
    const alice = await t.as(s, 'alice')
    await alice.request({ type: 'join', room })
    await sql.begin(async (tx) => {
      for (let i = 0; i < 20; i++) await tx.unsafe(`insert into ${table} (room, body, data) values ($1, $2, $3)`, [room, `m${i}`, { i }])
    })
    await sql
      .begin(async (tx) => {
        await tx.unsafe(`insert into ${table} (room, body) values ($1, 'rolled back')`, [room])
        throw new Error('the application changed its mind')
      })
      .catch(() => {})
    // The poll is a minute away: only the trigger's NOTIFY can have woken the node.
    await until(() => bodies(alice, room).length >= 20, '20 chats', 10_000)
    const got = alice.frames.filter((f) => f.type === 'chat' && f.room === room)
    expect(got.map((f) => f.body)).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`))
    expect(got.map((f) => f.data)).toEqual(Array.from({ length: 20 }, (_, i) => ({ i })))
    expect(got[0]!.from).toEqual({ id: 'server', name: 'server', system: true })
    // seq strictly increasing: appended one after the other, in id order.
    expect(got.every((f, i) => i === 0 || f.seq > got[i - 1]!.seq)).toBe(true)
    await until(async () => (await db.count(table)) === 0, 'the delivered rows deleted')
    await Bun.sleep(300)
    expect(bodies(alice, room)).not.toContain('rolled back')
    expect(await db.count(`${table}_failed`)).toBe(0)
  })

  it('a row with to_user is a dm (from the server, or from from_user)', async () => {
    const table = db.table()
    const s = await nodeOn(table)
    const bob = t.uid('bob')
    const b = await t.as(s, bob)
    await sql.unsafe(`insert into ${table} (to_user, body) values ($1, 'your order shipped')`, [bob])
    const first = await b.next({ type: 'dm', body: 'your order shipped' }, 10_000)
    expect(first.from).toEqual({ id: 'server', name: 'server', system: true })
    expect(first.to).toBe(bob)
    const carol = t.uid('carol')
    await sql.unsafe(`insert into ${table} (to_user, from_user, body) values ($1, $2, 'hi from carol')`, [bob, carol])
    const second = await b.next({ type: 'dm', body: 'hi from carol' }, 10_000)
    expect(second.from.id).toBe(carol)
    expect(second.room).not.toBe(first.room)
    // The conversation is bob's: listed with the server's message in it.
    const list = await b.request({ type: 'rooms' })
    expect(JSON.stringify(list)).toContain(first.room)
    // The server is not made a member of the rooms it writes to (it would pass MAX_MEMBERSHIPS).
    const members = (await (await t.api(s, 'GET', `/rooms/${first.room}/members`)).json()) as unknown
    expect(JSON.stringify(members)).toContain(`"${bob}"`)
    expect(JSON.stringify(members)).not.toContain('"server"')
    // A refusal of the append path is for good: bob blocks carol, her next row moves aside.
    await b.request({ type: 'block', user: carol })
    await sql.unsafe(`insert into ${table} (to_user, from_user, body) values ($1, $2, 'blocked')`, [bob, carol])
    await until(async () => (await db.count(`${table}_failed`)) === 1, 'the refused dm moved aside', 10_000)
    const [failed] = await sql.unsafe(`select error from ${table}_failed`)
    expect(failed!.error).toBe(`to: ${bob} does not accept direct messages from ${carol}`)
    expect(b.frames.some((f) => f.body === 'blocked')).toBe(false)
  })

  it('an idempotency_key delivered once is not delivered again, even from a later row', async () => {
    const table = db.table()
    const s = await nodeOn(table, { OUTBOX_POLL_MS: '100' })
    const room = t.uid('keys')
    const alice = await t.as(s, 'alice')
    await alice.request({ type: 'join', room })
    await sql.unsafe(`insert into ${table} (room, body, idempotency_key) values ($1, 'first', 'order-17')`, [room])
    await alice.next({ type: 'chat', body: 'first' }, 10_000)
    await until(async () => (await db.count(table)) === 0, 'the first row deleted')
    // The application retries its write (the first row is gone: the unique key does not stop it).
    await sql.unsafe(`insert into ${table} (room, body, idempotency_key) values ($1, 'again', 'order-17')`, [room])
    await sql.unsafe(`insert into ${table} (room, body, idempotency_key) values ($1, 'next', 'order-18')`, [room])
    await alice.next({ type: 'chat', body: 'next' }, 10_000)
    await until(async () => (await db.count(table)) === 0, 'both rows gone')
    expect(bodies(alice, room)).toEqual(['first', 'next'])
    expect(await db.count(`${table}_failed`)).toBe(0)
    const metrics = await (await fetch(`${s.url}/metrics`)).text()
    expect(metrics).toContain('chat_outbox_rows_total{result="delivered"} 2')
    expect(metrics).toContain('chat_outbox_rows_total{result="duplicate"} 1')
  })

  it('rows that can never be delivered move to _failed with their error; later rows of the room still arrive', async () => {
    const table = db.table()
    const s = await nodeOn(table, { MAX_BODY_CHARS: '50' })
    const room = t.uid('mixed')
    const alice = await t.as(s, 'alice')
    await alice.request({ type: 'join', room })
    await sql.begin(async (tx) => {
      const add = (cols: string, vals: unknown[]) =>
        tx.unsafe(`insert into ${table} (${cols}) values (${vals.map((_, i) => `$${i + 1}`).join(', ')})`, vals as never[])
      await add('room, body', [room, 'before'])
      await add('room, body', [room, 'x'.repeat(51)])
      await add('room, body', ['not a room!', 'hello'])
      await add('room', [room])
      await add('room, to_user, body', [room, 'bob', 'which one?'])
      await add('body', ['nowhere'])
      await add('to_user, body', ['server', 'to myself'])
      await add('room, body', [room, 'after'])
    })
    await until(() => bodies(alice, room).includes('after'), 'the row after the bad ones', 10_000)
    expect(bodies(alice, room)).toEqual(['before', 'after'])
    // The bad rows of other lanes (another room, no room, a dm pair) may come in a later batch.
    await until(async () => (await db.count(table)) === 0, 'every row taken')
    const failed = await sql.unsafe(`select room, body, error, failed_at from ${table}_failed order by id`)
    expect(failed.map((f) => f.error)).toEqual([
      'body: must be at most 50 characters',
      'room: must be 1..64 of A-Z a-z 0-9 _ . : -',
      'body: required',
      'room: must be empty when to_user is set (a dm goes to the direct room of the pair)',
      'room: required (or to_user, for a dm)',
      "to_user: server is the server's own user, which no connection can be",
    ])
    expect(failed.every((f) => f.failed_at instanceof Date)).toBe(true)
    expect(await (await fetch(`${s.url}/metrics`)).text()).toContain('chat_outbox_rows_total{result="failed"} 6')
    expect(await db.count(table)).toBe(0)
  })

  it('the poll delivers what no notification announced (a row already waiting at start)', async () => {
    const table = db.table()
    // Made by a first node, which stops before the row is written.
    const first = await nodeOn(table)
    await first.stop('SIGTERM')
    const room = t.uid('waiting')
    await sql.unsafe(`insert into ${table} (room, body) values ($1, 'waited')`, [room])
    const s = await t.node({ OUTBOX_DSN: db.dsn, OUTBOX_TABLE: table, OUTBOX_POLL_MS: '100' })
    const alice = await t.as(s, 'alice')
    await alice.request({ type: 'join', room })
    await until(async () => (await db.count(table)) === 0, 'the waiting row delivered', 10_000)
    const page = (await (await t.api(s, 'GET', `/rooms/${room}/messages`)).json()) as { messages: { body: string }[] }
    expect(page.messages.map((m) => m.body)).toEqual(['waited'])
  })
})

describe('outbox: configuration', () => {
  it('a bad OUTBOX_TABLE, OUTBOX_DSN or OUTBOX_POLL_MS stops startup naming the variable', async () => {
    const bad = await runServerOnce({ OUTBOX_DSN: 'mysql://db/app', OUTBOX_TABLE: 'chat_outbox; drop table users', OUTBOX_POLL_MS: '5' })
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain('config error: OUTBOX_DSN: expected a URL starting with postgres:// or postgresql://')
    expect(bad.stderr).toContain('config error: OUTBOX_TABLE: expected a lowercase SQL name')
    expect(bad.stderr).toContain('config error: OUTBOX_POLL_MS: expected milliseconds from 10 to 3600000')
  })

  it('an outbox database that does not answer stops startup naming OUTBOX_DSN', async () => {
    const r = await runServerOnce({ OUTBOX_DSN: 'postgres://postgres@127.0.0.1:1/none' })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('startup error: OUTBOX_DSN:')
  })
})
