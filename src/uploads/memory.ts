import type { Ref, Upload, UploadIndex } from './types'

const refKey = (r: Ref) => `${r.room}\n${r.msg}`

/** Everything in this process: one node without Redis or PostgreSQL. */
export function memoryUploads(): UploadIndex {
  const uploads = new Map<string, Upload>()
  /** upload id -> refs (`room\nmsg`) */
  const refs = new Map<string, Set<string>>()
  /** `room\nmsg` -> upload ids */
  const byMsg = new Map<string, string[]>()
  return {
    kind: 'memory',
    async put(u) {
      uploads.set(u.id, u)
    },
    async get(id) {
      return uploads.get(id)
    },
    async rooms(id) {
      return [...new Set([...(refs.get(id) ?? [])].map((k) => k.slice(0, k.indexOf('\n'))))]
    },
    async link(ids, ref) {
      const gone = ids.find((id) => !uploads.has(id))
      if (gone) return gone
      const k = refKey(ref)
      for (const id of ids) {
        let s = refs.get(id)
        if (!s) refs.set(id, (s = new Set()))
        s.add(k)
      }
      byMsg.set(k, [...new Set([...(byMsg.get(k) ?? []), ...ids])])
      return undefined
    },
    async unlink(ref) {
      const k = refKey(ref)
      const ids = byMsg.get(k) ?? []
      byMsg.delete(k)
      const free: string[] = []
      for (const id of ids) {
        const s = refs.get(id)
        s?.delete(k)
        if (!s?.size) {
          refs.delete(id)
          free.push(id)
        }
      }
      return free
    },
    async reap(id) {
      if (refs.get(id)?.size) return false
      return uploads.delete(id)
    },
    async claimOrphans(before, limit) {
      const out: string[] = []
      for (const [id, u] of uploads) {
        if (out.length >= limit) break
        if (u.created < before && !refs.get(id)?.size) out.push(id)
      }
      for (const id of out) uploads.delete(id)
      return out
    },
  }
}
