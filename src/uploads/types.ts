/** A file a user uploaded, as its metadata is kept (the bytes are in the Storage under `id`). */
export interface Upload {
  id: string
  /** The uploader's user id: only the uploader may attach it. */
  owner: string
  name: string
  /** The type sniffed from the content, never the one the client declared. */
  type: string
  size: number
  width?: number
  height?: number
  /** Epoch ms it was received (orphans are reaped by age). */
  created: number
}

/** Where a message carries an upload: its room and message id. */
export interface Ref {
  room: string
  msg: string
}

/**
 * Upload metadata and where each upload was sent, one engine per deployment like the
 * memberships (memory, Redis, PostgreSQL). An upload with no message referring to it is an
 * orphan; orphans older than the TTL are reaped, each by exactly one node.
 */
export interface UploadIndex {
  readonly kind: 'memory' | 'redis' | 'postgres'
  put(u: Upload): Promise<void>
  get(id: string): Promise<Upload | undefined>
  /** The rooms where it was sent (distinct). */
  rooms(id: string): Promise<string[]>
  /** Records that message `ref` carries these uploads; answers the first id that no longer exists (nothing recorded then for it). */
  link(ids: string[], ref: Ref): Promise<string | undefined>
  /** Forgets message `ref`; answers the ids it carried that no message refers to any more (orphans again). */
  unlink(ref: Ref): Promise<string[]>
  /** Removes the metadata of an upload no message refers to; true when this call removed it (its bytes are the caller's to delete). */
  reap(id: string): Promise<boolean>
  /**
   * Up to `limit` orphans received before `before` (epoch ms), their metadata removed: each is
   * handed to one caller only, whose job is to delete its bytes.
   */
  claimOrphans(before: number, limit: number): Promise<string[]>
  close?(): Promise<void>
}

/** The bytes of uploads: local disk or S3-compatible storage. */
export interface Storage {
  readonly kind: 'disk' | 's3'
  /** Writes the object from the chunks, streaming; throws (leaving nothing behind) when they throw. */
  put(key: string, chunks: AsyncIterable<Uint8Array>): Promise<void>
  /** The object's bytes as a stream, or undefined when it is not there. */
  get(key: string): Promise<ReadableStream<Uint8Array> | undefined>
  delete(key: string): Promise<void>
}
