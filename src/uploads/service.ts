import { timingSafeEqual } from 'node:crypto'
import { FrameError } from '../core/errors'
import { log } from '../log'
import { receive } from './receive'
import type { Ref, Storage, Upload, UploadIndex } from './types'

export { UploadError } from './receive'
export type { Upload, Ref, Storage, UploadIndex } from './types'

/** An upload as messages carry it (`attachments` of chat and dm frames). */
export interface Attachment {
  id: string
  name: string
  type: string
  size: number
  url: string
  width?: number
  height?: number
}

export const MAX_ATTACHMENTS = 10

export interface UploadSettings {
  maxBytes: number
  types: string[]
  orphanTtlMs: number
  /** HMAC key of signed download URLs. */
  urlSecret: string
  urlTtlS: number
}

/** Attachments: uploads received, checked, linked to messages and reaped (see createUploads). */
export interface Uploads {
  /** Receives one upload of `owner` from a multipart request (size, type and content checked). */
  accept(req: Request, owner: string): Promise<Upload>
  /** The attachments of a message `owner` sends: each id an upload of the sender's, else bad_request naming it. */
  attachments(ids: string[], owner: string): Promise<Attachment[]>
  /** Records that a message carries the uploads, before it is appended (undone by `unlink`). */
  link(ids: string[], ref: Ref): Promise<void>
  /** Undoes `link`; resolves with the ids no message carries any more. */
  unlink(ref: Ref): Promise<string[]>
  /** A message was deleted: its uploads go, unless another message carries them; resolves with those removed. */
  deleted(ref: Ref): Promise<string[]>
  /** Reaps orphans older than the TTL; resolves with how many. */
  sweep(now?: number): Promise<number>
  /** May `user` read the upload: its uploader, or a member of a room where it was sent. */
  mayRead(u: Upload, user: string, member: (room: string, user: string) => Promise<boolean>): Promise<boolean>
  /** A URL that reads the upload as `user` until it expires, with no other credential. */
  signedUrl(id: string, user: string, now?: number): { url: string; expires: string }
  /** The user a signed URL names, or why it is not valid. */
  verify(id: string, q: { as?: string; exp?: string; sig?: string }, now?: number): { user: string } | { reason: string }
  get(id: string): Promise<Upload | undefined>
  /** The upload's bytes, undefined when the storage no longer has them. */
  open(id: string): Promise<ReadableStream<Uint8Array> | undefined>
  settings: UploadSettings
  index: UploadIndex
  storage: Storage
}

/** The stable path of an upload: what frames and history carry (see docs/attachments.md). */
export const uploadPath = (id: string) => `/api/uploads/${id}`

export const attachmentOf = (u: Upload): Attachment => ({
  id: u.id,
  name: u.name,
  type: u.type,
  size: u.size,
  url: uploadPath(u.id),
  ...(u.width !== undefined && u.height !== undefined ? { width: u.width, height: u.height } : {}),
})

/**
 * Attachments: receiving uploads (receive.ts), the metadata engine (memory, Redis,
 * PostgreSQL), the bytes' storage (disk, S3), who may read an upload, and the reaping of
 * orphans and of a deleted message's files.
 */
export function createUploads(deps: { index: UploadIndex; storage: Storage; settings: UploadSettings }): Uploads {
  const { index, storage, settings } = deps
  const key = new TextEncoder().encode(settings.urlSecret)

  async function accept(req: Request, owner: string): Promise<Upload> {
    const id = Bun.randomUUIDv7()
    const got = await receive(req, { storage, key: id, maxBytes: settings.maxBytes, types: settings.types })
    const u: Upload = {
      id,
      owner,
      name: got.name,
      type: got.type,
      size: got.size,
      ...(got.width ? { width: got.width, height: got.height } : {}),
      created: Date.now(),
    }
    try {
      await index.put(u)
    } catch (err) {
      await storage.delete(id).catch(() => {})
      throw err
    }
    return u
  }

  /** The attachments of a message `owner` sends: each id an upload of the sender's; else bad_request naming it. */
  async function attachments(ids: string[], owner: string): Promise<Attachment[]> {
    if (ids.length > MAX_ATTACHMENTS) throw new FrameError('bad_request', `attachments: at most ${MAX_ATTACHMENTS} uploads per message`)
    if (new Set(ids).size !== ids.length) throw new FrameError('bad_request', 'attachments: an upload id is listed twice')
    const found = await Promise.all(ids.map((id) => index.get(id)))
    return found.map((u, i) => {
      if (!u) throw new FrameError('bad_request', `attachments: no upload ${ids[i]}`)
      if (u.owner !== owner) throw new FrameError('bad_request', `attachments: upload ${ids[i]} is not yours`)
      return attachmentOf(u)
    })
  }

  /** Records before the message is appended (undone by `unlink` when it is not accepted). */
  async function link(ids: string[], ref: Ref) {
    const gone = await index.link(ids, ref)
    if (gone) {
      await index.unlink(ref)
      throw new FrameError('bad_request', `attachments: no upload ${gone}`)
    }
  }

  /** Removes what no message carries any more. */
  async function removeAll(ids: string[]) {
    for (const id of ids) await storage.delete(id).catch((err) => log.warn('upload not deleted from storage', { upload: id, err }))
  }

  /** A message was deleted (the delete accepted by the room's log): its uploads go with it, unless another message carries them. */
  async function deleted(ref: Ref) {
    const free = await index.unlink(ref)
    const reaped: string[] = []
    for (const id of free) if (await index.reap(id)) reaped.push(id)
    await removeAll(reaped)
    return reaped
  }

  /** Reaps orphans older than the TTL; answers how many. */
  async function sweep(now = Date.now()): Promise<number> {
    let n = 0
    for (;;) {
      const ids = await index.claimOrphans(now - settings.orphanTtlMs, 100)
      await removeAll(ids)
      n += ids.length
      if (ids.length < 100) return n
    }
  }

  /** May `user` read the upload: its uploader, or a member of a room where it was sent (`member` asks the engines). */
  async function mayRead(u: Upload, user: string, member: (room: string, user: string) => Promise<boolean>): Promise<boolean> {
    if (u.owner === user) return true
    for (const room of await index.rooms(u.id)) if (await member(room, user)) return true
    return false
  }

  const hmac = (id: string, user: string, exp: number) =>
    new Bun.CryptoHasher('sha256', key).update(`${id}\n${user}\n${exp}`).digest('base64url')

  /** A URL that reads the upload as `user` until it expires, with no other credential (for <img src>). */
  function signedUrl(id: string, user: string, now = Date.now()) {
    const exp = Math.floor(now / 1000) + settings.urlTtlS
    return {
      url: `${uploadPath(id)}?as=${encodeURIComponent(user)}&exp=${exp}&sig=${hmac(id, user, exp)}`,
      expires: new Date(exp * 1000).toISOString(),
    }
  }

  /** The user a signed URL names, or why it is not valid. */
  function verify(id: string, q: { as?: string; exp?: string; sig?: string }, now = Date.now()): { user: string } | { reason: string } {
    const exp = Number(q.exp)
    if (!q.as || !q.sig || !Number.isInteger(exp)) return { reason: 'signed URL: as, exp and sig are all required' }
    if (exp * 1000 < now) return { reason: 'signed URL: expired' }
    const want = Buffer.from(hmac(id, q.as, exp))
    const got = Buffer.from(q.sig)
    if (want.length !== got.length || !timingSafeEqual(want, got)) return { reason: 'signed URL: bad signature' }
    return { user: q.as }
  }

  return {
    accept,
    attachments,
    link,
    unlink: (ref: Ref) => index.unlink(ref),
    deleted,
    sweep,
    mayRead,
    signedUrl,
    verify,
    get: (id: string) => index.get(id),
    open: (id: string) => storage.get(id),
    settings,
    index,
    storage,
  }
}
