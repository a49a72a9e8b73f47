import type { Sql } from 'postgres'
import type postgres from 'postgres'
import { log } from '../log'
import type { User } from '../protocol/server-frames'
import type { AddResult, Device, Members, NotifyLevel, Role } from './types'

const TOUCH_EVERY_MS = 20
/** How long a written batch of markers still counts for reads (see `writing`). */
const WRITTEN_KEPT_MS = 2000

/**
 * Memberships in PostgreSQL: durable across restarts of every node and of Redis. A sender's
 * marker moves with each message it sends; those moves are gathered and written together
 * (one statement per few ms), so chat costs the database no write per message here.
 */
export function postgresMembers(sql: Sql, onError?: (err: unknown) => void): Members {
  /** `${room}\n${user}` -> the highest seq a sender reached, not yet written. */
  let touched = new Map<string, number>()
  /**
   * Batches being written, counted by reads until a while after their update committed: a read
   * that went to the database before the commit (another pooled connection) and answers after
   * it must not see the marker go back. Markers only rise, so counting a batch longer is harmless.
   */
  const writing = new Set<Map<string, number>>()
  let _timer: Timer | undefined

  async function flush() {
    _timer = undefined
    const batch = touched
    touched = new Map()
    writing.add(batch)
    const rooms: string[] = []
    const users: string[] = []
    const seqs: number[] = []
    for (const [k, seq] of batch) {
      const nl = k.indexOf('\n')
      rooms.push(k.slice(0, nl))
      users.push(k.slice(nl + 1))
      seqs.push(seq)
    }
    try {
      await sql`
        update memberships m set read_seq = greatest(m.read_seq, x.s)
        from unnest(${rooms}::text[], ${users}::text[], ${seqs}::bigint[]) as x(r, u, s)
        where m.room = x.r and m.user_id = x.u`
    } catch (err) {
      onError?.(err)
      log.debug('read markers not written', { count: batch.size, err })
    } finally {
      setTimeout(() => writing.delete(batch), WRITTEN_KEPT_MS).unref()
    }
  }

  /** A marker not yet written (or being written) counts as much as the stored one. */
  const pending = (room: string, user: string) => {
    const k = `${room}\n${user}`
    let seq = touched.get(k) ?? 0
    for (const batch of writing) seq = Math.max(seq, batch.get(k) ?? 0)
    return seq
  }

  return {
    kind: 'postgres',
    async of(user) {
      const rows = await sql<{ room: string; read_seq: string }[]>`select room, read_seq from memberships where user_id = ${user}`
      return rows.map((r) => ({ room: r.room, read: Math.max(Number(r.read_seq), pending(r.room, user)) }))
    },
    async get(room, user) {
      const [r] = await sql<{ read_seq: string }[]>`select read_seq from memberships where room = ${room} and user_id = ${user}`
      return r ? { room, read: Math.max(Number(r.read_seq), pending(room, user)) } : undefined
    },
    async add(room, user, read, cap): Promise<AddResult> {
      return sql.begin(async (tx) => {
        // One membership change per user at a time: the cap holds under concurrent adds.
        await tx`select pg_advisory_xact_lock(hashtext(${user.id}))`
        const [cur] = await tx<{ read_seq: string }[]>`select read_seq from memberships where room = ${room} and user_id = ${user.id}`
        if (cur) return { status: 'exists', read: Number(cur.read_seq) } as const
        if (Number.isFinite(cap)) {
          const [n] = await tx<{ n: string }[]>`select count(*) as n from memberships where user_id = ${user.id}`
          if (Number(n!.n) >= cap) return { status: 'limit' } as const
        }
        await tx`insert into users (id, name) values (${user.id}, ${user.name}) on conflict (id) do nothing`
        await tx`insert into memberships (room, user_id, read_seq) values (${room}, ${user.id}, ${read})`
        return { status: 'added', read } as const
      })
    },
    async remove(room, user) {
      const r = await sql`delete from memberships where room = ${room} and user_id = ${user}`
      return r.count > 0
    },
    async list(room, after, limit) {
      const rows = await sql<{ id: string; name: string | null; read_seq: string }[]>`
        select m.user_id as id, u.name, m.read_seq from memberships m left join users u on u.id = m.user_id
        where m.room = ${room} ${after === undefined ? sql`` : sql`and m.user_id > ${after}`}
        order by m.user_id limit ${limit + 1}`
      return {
        members: rows
          .slice(0, limit)
          .map((r) => ({ id: r.id, name: r.name ?? r.id, read: Math.max(Number(r.read_seq), pending(room, r.id)) })),
        more: rows.length > limit,
      }
    },
    async read(room, user, seq) {
      const [r] = await sql<{ read_seq: string }[]>`
        update memberships set read_seq = greatest(read_seq, ${seq}) where room = ${room} and user_id = ${user} returning read_seq`
      return r ? Math.max(Number(r.read_seq), pending(room, user)) : undefined
    },
    touch(room, user, seq) {
      const k = `${room}\n${user}`
      if ((touched.get(k) ?? 0) < seq) touched.set(k, seq)
      _timer ??= setTimeout(() => void flush(), TOUCH_EVERY_MS)
    },
    async pair(room) {
      const [r] = await sql<{ a: string; an: string | null; b: string; bn: string | null }[]>`
        select d.user_a as a, ua.name as an, d.user_b as b, ub.name as bn from direct_rooms d
        left join users ua on ua.id = d.user_a left join users ub on ub.id = d.user_b where d.room = ${room}`
      return r
        ? ([
            { id: r.a, name: r.an ?? r.a },
            { id: r.b, name: r.bn ?? r.b },
          ] as [User, User])
        : undefined
    },
    async setPair(room, [a, b]) {
      await sql`insert into users (id, name) select * from unnest(${[a.id, b.id]}::text[], ${[a.name, b.name]}::text[]) on conflict (id) do nothing`
      await sql`insert into direct_rooms (room, user_a, user_b) values (${room}, ${a.id}, ${b.id}) on conflict (room) do nothing`
    },
    async user(id) {
      const [r] = await sql<{ name: string }[]>`select name from users where id = ${id}`
      return r ? { id, name: r.name } : undefined
    },
    // The store records users as they connect (Store.userSeen).
    async seen() {},
    async standing(room, user) {
      const [r] = await sql<{ role: Role | null; muted_until: Date | null; banned: boolean }[]>`
        select role, muted_until, banned from room_standing where room = ${room} and user_id = ${user}`
      if (!r) return {}
      return {
        ...(r.role ? { role: r.role } : {}),
        ...(r.muted_until ? { mutedUntil: r.muted_until.getTime() } : {}),
        ...(r.banned ? { banned: true } : {}),
      }
    },
    async setStanding(room, user, p) {
      // Each field: null clears, undefined keeps (coalesce with a flag).
      const role = p.role === undefined ? undefined : p.role
      const muted = p.mutedUntil === undefined ? undefined : p.mutedUntil === null ? null : new Date(p.mutedUntil)
      const banned = p.banned === undefined ? undefined : p.banned === true
      await sql`
        insert into room_standing (room, user_id, role, muted_until, banned)
        values (${room}, ${user}, ${role ?? null}, ${muted ?? null}, ${banned ?? false})
        on conflict (room, user_id) do update set
          role = ${role === undefined ? sql`room_standing.role` : sql`excluded.role`},
          muted_until = ${muted === undefined ? sql`room_standing.muted_until` : sql`excluded.muted_until`},
          banned = ${banned === undefined ? sql`room_standing.banned` : sql`excluded.banned`}`
    },
    async devices(user) {
      const rows = await sql<
        { device: string; kind: Device['kind']; address: { token?: string; subscription?: Device['subscription'] }; updated_at: Date }[]
      >`
        select device, kind, address, updated_at from push_devices where user_id = ${user} order by device`
      return rows.map((r) => ({ device: r.device, kind: r.kind, ...r.address, updated: r.updated_at.toISOString() }))
    },
    async putDevice(user, d, cap) {
      const address = (d.subscription ? { subscription: d.subscription } : { token: d.token }) as unknown as postgres.JSONValue
      return sql.begin(async (tx) => {
        // One device change per user at a time: the cap holds under concurrent PUTs.
        await tx`select pg_advisory_xact_lock(hashtext(${`devices:${user}`}))`
        const [n] = await tx<{ n: string; mine: boolean }[]>`
          select count(*) as n, bool_or(device = ${d.device}) as mine from push_devices where user_id = ${user}`
        if (n!.mine) {
          await tx`update push_devices set kind = ${d.kind}, address = ${tx.json(address)}, updated_at = ${d.updated} where user_id = ${user} and device = ${d.device}`
          return 'updated' as const
        }
        if (Number(n!.n) >= cap) return 'limit' as const
        await tx`insert into push_devices (user_id, device, kind, address, updated_at) values (${user}, ${d.device}, ${d.kind}, ${tx.json(address)}, ${d.updated})`
        return 'added' as const
      })
    },
    async removeDevice(user, device) {
      return (await sql`delete from push_devices where user_id = ${user} and device = ${device}`).count > 0
    },
    async pushable(room) {
      // Both sides are indexed by user: the planner walks the smaller one (devices or the room's members).
      const rows = await sql<{ id: string }[]>`
        select distinct d.user_id as id from push_devices d join memberships m on m.user_id = d.user_id where m.room = ${room}`
      return rows.map((r) => r.id)
    },
    async notifyLevels(room, ids) {
      const out = new Map<string, NotifyLevel>()
      if (ids.length === 0) return out
      const rows = await sql<
        { user_id: string; level: NotifyLevel }[]
      >`select user_id, level from push_notify where room = ${room} and user_id = any(${ids}::text[])`
      for (const r of rows) out.set(r.user_id, r.level)
      return out
    },
    async setNotify(room, user, level) {
      if (level === 'all') await sql`delete from push_notify where room = ${room} and user_id = ${user}`
      else
        await sql`insert into push_notify (room, user_id, level) values (${room}, ${user}, ${level}) on conflict (room, user_id) do update set level = excluded.level`
    },
    async block(user, other) {
      return (await sql`insert into blocks (user_id, blocked) values (${user}, ${other}) on conflict do nothing`).count > 0
    },
    async unblock(user, other) {
      return (await sql`delete from blocks where user_id = ${user} and blocked = ${other}`).count > 0
    },
    async blocks(user) {
      return (await sql<{ blocked: string }[]>`select blocked from blocks where user_id = ${user} order by blocked`).map((r) => r.blocked)
    },
    async blocking(sender, ids) {
      if (ids.length === 0) return new Set()
      const rows = await sql<{ user_id: string }[]>`select user_id from blocks where blocked = ${sender} and user_id = any(${ids}::text[])`
      return new Set(rows.map((r) => r.user_id))
    },
  }
}
