import Busboy from '@fastify/busboy'
import type { BusboyFileStream, BusboyInstance } from '@fastify/busboy'
import { SNIFF_BYTES, allowedType, reconcile, sniff } from './sniff'
import type { Sniffed } from './sniff'
import type { Storage } from './types'
import { INVISIBLE } from './download-name'

/** A refused upload: its HTTP status and the contract's error code. */
export class UploadError extends Error {
  constructor(
    readonly status: number,
    readonly code: 'bad_request' | 'too_large' | 'unsupported_type',
    message: string,
  ) {
    super(message)
  }
}

/** What the multipart body may hold besides the file (boundaries, part headers, small fields). */
const OVERHEAD_BYTES = 64 * 1024

export interface Received extends Sniffed {
  name: string
  size: number
}

/**
 * Whether the part being parsed declared a `Content-Type`. Busboy reports an absent one as
 * `text/plain` (multipart's default for form fields), which would make a PNG sent without a type
 * a contradicted `text/plain` upload; the contract (PROTOCOL-v4) sniffs such a part as it does
 * `application/octet-stream`. Busboy passes no part headers on, so this listens to its
 * multipart parser's `part` event ahead of busboy (prepended): a part's `header` event reaches
 * this listener before busboy's, which emits `file` from within it.
 */
function partTypeDeclared(bb: BusboyInstance): () => boolean {
  const parser = (bb as unknown as { _parser?: { parser?: NodeJS.EventEmitter } })._parser?.parser
  if (typeof parser?.prependListener !== 'function')
    throw new Error('@fastify/busboy: its multipart parser is not where receive() expects it (pinned 3.2.6)')
  let declared = false
  parser.prependListener('part', (part: NodeJS.EventEmitter) => {
    part.prependListener('header', (header: Record<string, string[] | undefined>) => {
      declared = (header['content-type']?.[0] ?? '').trim() !== ''
    })
  })
  return () => declared
}

/** A file name as kept: no path, no control characters nor ones that reorder or hide others, at most 255 characters. */
export function cleanName(raw: string | undefined): string {
  const base = (raw ?? '').split(/[\\/]/).pop() ?? ''
  const clean = base
    .replace(/[\u0000-\u001f\u007f]/g, '')
    .replace(INVISIBLE, '')
    .trim()
    .slice(0, 255)
  return clean || 'file'
}

/**
 * Reads a multipart body (its field `file`) as it arrives and streams the file into `storage`
 * under `key`: the size limit and the type are checked on the way, so a body past the limit is
 * cut there (never read, never held whole), and a file whose first bytes are not an allowed
 * type is refused before anything is stored. Nothing stays in storage when it is refused.
 */
export async function receive(req: Request, opts: { storage: Storage; key: string; maxBytes: number; types: string[] }): Promise<Received> {
  const { storage, key, maxBytes, types } = opts
  const contentType = req.headers.get('content-type') ?? ''
  if (!/^multipart\/form-data\s*;/i.test(contentType) || !req.body)
    throw new UploadError(400, 'bad_request', 'body: expected multipart/form-data with a field `file`')
  const declaredLength = Number(req.headers.get('content-length') ?? NaN)
  const tooLarge = () => new UploadError(413, 'too_large', `file: larger than UPLOAD_MAX_BYTES (${maxBytes} bytes)`)
  if (declaredLength > maxBytes + OVERHEAD_BYTES) throw tooLarge()

  let bb: BusboyInstance
  try {
    bb = Busboy({
      headers: { 'content-type': contentType },
      limits: { files: 1, fileSize: maxBytes, fields: 16, fieldSize: 1024, parts: 32 },
    })
  } catch (err) {
    throw new UploadError(400, 'bad_request', `body: ${(err as Error).message}`)
  }
  const typeDeclared = partTypeDeclared(bb)

  /** Set once the outcome is known early (a refusal): stop reading the body. */
  let stop: UploadError | Error | undefined
  let wake: (() => void) | undefined
  const halt = (err: UploadError | Error) => {
    stop ??= err
    wake?.()
  }
  let stored: Promise<Received> | undefined
  /** The file part being stored: destroyed on a refusal, so that its reader ends too. */
  let file: BusboyFileStream | undefined

  bb.on('file', (field: string, stream: BusboyFileStream, filename: string, _enc: string, mime: string) => {
    if (field !== 'file' || stored) return void stream.resume()
    stream.on('limit', () => {
      const e = tooLarge()
      halt(e)
      stream.destroy(e)
    })
    file = stream
    stored = store(stream, filename, typeDeclared() ? mime : undefined)
    stored.catch(halt)
  })
  const parsed = new Promise<void>((resolve, reject) => {
    bb.on('finish', resolve)
    bb.on('error', (err: unknown) =>
      reject(new UploadError(400, 'bad_request', `body: ${(err as Error).message ?? 'not valid multipart'}`)),
    )
  })
  parsed.catch(halt)

  /** `mime`: the part's declared type, undefined when it declared none (then only sniffed). */
  async function store(stream: BusboyFileStream, filename: string, mime: string | undefined): Promise<Received> {
    const it = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>
    const head: Buffer[] = []
    let headBytes = 0
    let done = false
    while (headBytes < SNIFF_BYTES) {
      const r = await it.next()
      if (r.done) {
        done = true
        break
      }
      head.push(r.value)
      headBytes += r.value.length
    }
    const first = Buffer.concat(head)
    const sniffed = sniff(first.subarray(0, SNIFF_BYTES), done)
    const declared = mime || undefined
    const type = reconcile(declared, sniffed.type)
    if (!type) throw new UploadError(415, 'unsupported_type', `file: declared ${declared} but the content is ${sniffed.type}`)
    if (!allowedType(type, types))
      throw new UploadError(415, 'unsupported_type', `file: ${type} is not an allowed type (UPLOAD_TYPES: ${types.join(',')})`)
    let size = 0
    async function* chunks() {
      size += first.length
      yield first
      if (done) return
      for (;;) {
        const r = await it.next()
        if (r.done) break
        size += r.value.length
        yield r.value
      }
    }
    await storage.put(key, chunks())
    if (stream.truncated || size > maxBytes) {
      await storage.delete(key).catch(() => {})
      throw tooLarge()
    }
    return { ...sniffed, type, name: cleanName(filename), size }
  }

  // Feed the parser chunk by chunk, waiting whenever it (and so the storage) is behind.
  const reader = req.body.getReader()
  let total = 0
  try {
    while (!stop) {
      const r = await reader.read()
      if (r.done) break
      total += r.value.length
      if (total > maxBytes + OVERHEAD_BYTES) {
        halt(tooLarge())
        break
      }
      if (!bb.write(r.value))
        await new Promise<void>((resolve) => {
          wake = resolve
          bb.once('drain', resolve)
        })
      wake = undefined
    }
  } catch (err) {
    halt(new UploadError(400, 'bad_request', `body: could not be read: ${(err as Error).message}`))
  }
  if (stop) {
    reader.cancel().catch(() => {})
    // Destroying the parser does not end its file stream: that would leave store() waiting.
    file?.destroy(stop)
    bb.destroy()
    // The storage write in progress must end (and clean up) before the answer.
    await stored?.catch(() => {})
    await storage.delete(key).catch(() => {})
    throw stop
  }
  bb.end()
  await parsed
  if (!stored) throw new UploadError(400, 'bad_request', 'file: is required (a multipart field named `file`)')
  try {
    return await stored
  } catch (err) {
    await storage.delete(key).catch(() => {})
    throw err
  }
}
