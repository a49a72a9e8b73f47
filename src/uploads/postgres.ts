import type { Sql } from 'postgres'
import type { Upload, UploadIndex } from './types'

interface Row {
  id: string
  owner: string
  name: string
  type: string
  size: string
  width: number | null
  height: number | null
  created_at: Date
}

const uploadOf = (r: Row): Upload => ({
  id: r.id,
  owner: r.owner,
  name: r.name,
  type: r.type,
  size: Number(r.size),
  ...(r.width !== null ? { width: r.width } : {}),
  ...(r.height !== null ? { height: r.height } : {}),
  created: r.created_at.getTime(),
})

/** Upload metadata in PostgreSQL (migration 008): durable, and shared by every node. */
export function postgresUploads(sql: Sql): UploadIndex {
  return {
    kind: 'postgres',
    async put(u) {
      await sql`insert into uploads (id, owner, name, type, size, width, height, created_at)
        values (${u.id}, ${u.owner}, ${u.name}, ${u.type}, ${u.size}, ${u.width ?? null}, ${u.height ?? null}, ${new Date(u.created)})`
    },
    async get(id) {
      const [r] = await sql<Row[]>`select * from uploads where id = ${id}`
      return r && uploadOf(r)
    },
    async rooms(id) {
      const rows = await sql<{ room: string }[]>`select distinct room from upload_refs where upload_id = ${id}`
      return rows.map((r) => r.room)
    },
    async link(ids, ref) {
      if (!ids.length) return undefined
      // Only uploads that still exist get the reference (the reaper may have taken one).
      const rows = await sql<{ upload_id: string }[]>`
        insert into upload_refs (upload_id, room, msg)
        select id, ${ref.room}, ${ref.msg} from uploads where id = any(${ids}::text[])
        on conflict do nothing returning upload_id`
      const linked = new Set(rows.map((r) => r.upload_id))
      return ids.find((id) => !linked.has(id))
    },
    async unlink(ref) {
      const rows = await sql<
        { upload_id: string }[]
      >`delete from upload_refs where room = ${ref.room} and msg = ${ref.msg} returning upload_id`
      if (!rows.length) return []
      const free = await sql<{ id: string }[]>`
        select id from uploads u where id = any(${rows.map((r) => r.upload_id)}::text[])
        and not exists (select 1 from upload_refs r where r.upload_id = u.id)`
      return free.map((r) => r.id)
    },
    async reap(id) {
      const rows =
        await sql`delete from uploads u where id = ${id} and not exists (select 1 from upload_refs r where r.upload_id = u.id) returning id`
      return rows.length === 1
    },
    async claimOrphans(before, limit) {
      // Deleting claims: of two nodes sweeping at once, each row is returned to one of them.
      const rows = await sql<{ id: string }[]>`
        delete from uploads where id in (
          select id from uploads u where created_at < ${new Date(before)}
          and not exists (select 1 from upload_refs r where r.upload_id = u.id)
          order by created_at limit ${limit} for update skip locked)
        returning id`
      return rows.map((r) => r.id)
    },
  }
}
