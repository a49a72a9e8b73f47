import { afterAll, beforeAll, describe, expect, test as bunTest } from 'bun:test'
import { SignJWT } from 'jose'
import { connect } from '../helpers/client'
import { existsSync, mkdtempSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { testNodes } from '../helpers/nodes'
import { freshDatabase } from '../helpers/postgres'
import { needService } from '../helpers/services'
import { onRedisAndCluster } from '../helpers/redis-suites'
import { s3Receiver } from '../helpers/s3-receiver'
import { until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import type { TestClient } from '../helpers/client'

/** Attachments: uploads streamed in and checked, carried by chat and dm, read back by members only. */

const API_KEY = 'uploads-test-key-0123456789'
const { tag, uid, node, as } = testNodes(API_KEY)

/** A real 1x1 PNG (browsers draw it), and a PNG header claiming 640x480. */
export const PNG_1x1 = Uint8Array.from(
  atob('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='),
  (c) => c.charCodeAt(0),
)
const pngHeader = (w: number, h: number) => {
  const b = new Uint8Array(new ArrayBuffer(64))
  b.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52])
  new DataView(b.buffer).setUint32(16, w)
  new DataView(b.buffer).setUint32(20, h)
  return b
}
const PDF = new TextEncoder().encode('%PDF-1.4\n%\u00e2\u00e3\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n')

async function upload(s: RunningServer, user: string | undefined, bytes: Uint8Array<ArrayBuffer> | string, name: string, type?: string) {
  const form = new FormData()
  form.append('file', new Blob([bytes], type ? { type } : {}), name)
  const q = user ? `?user=${encodeURIComponent(user)}` : ''
  const res = await fetch(`${s.url}/api/uploads${q}`, { method: 'POST', body: form })
  return { status: res.status, body: (await res.json()) as any }
}
const get = (s: RunningServer, url: string, user?: string) =>
  fetch(`${s.url}${url}${user ? `${url.includes('?') ? '&' : '?'}user=${encodeURIComponent(user)}` : ''}`)

async function inRoom(c: TestClient, room: string) {
  expect(await c.request({ type: 'join', room })).toMatchObject({ type: 'joined', room })
}

/** The behaviour every engine and storage must show; `at(i)` is the node of the i-th participant. */
function uploadSuite(
  name: string,
  nodes: () => RunningServer[],
  test: typeof bunTest,
  opts: { orphanTtl?: boolean; stored?: () => number } = {},
) {
  const at = (i: number) => nodes()[i % nodes().length]!
  describe(name, () => {
    test('an upload sent in a room is delivered with its metadata and a member downloads it', async () => {
      const room = uid('r')
      const [ua, ub] = [uid('a'), uid('b')]
      const up = await upload(at(0), ua, PNG_1x1, 'dot.png', 'image/png')
      expect(up.status).toBe(201)
      const file = up.body.upload
      expect(file).toEqual({
        id: expect.any(String),
        name: 'dot.png',
        type: 'image/png',
        size: PNG_1x1.length,
        url: `/api/uploads/${file.id}`,
        width: 1,
        height: 1,
      })
      const a = await as(at(0), ua)
      const b = await as(at(1), ub)
      await inRoom(a, room)
      await inRoom(b, room)
      const ack = await a.request({ type: 'chat', room, body: 'look', attachments: [file.id] })
      expect(ack).toMatchObject({ type: 'ack' })
      const got = await b.next({ type: 'chat', room })
      expect(got.attachments).toEqual([file])
      const res = await get(at(2), file.url, ub)
      expect(res.status).toBe(200)
      expect(new Uint8Array(await res.arrayBuffer())).toEqual(PNG_1x1)
      expect(res.headers.get('content-type')).toBe('image/png')
      expect(res.headers.get('x-content-type-options')).toBe('nosniff')
      expect(res.headers.get('content-disposition')).toStartWith('inline; filename="dot.png"')
      expect(res.headers.get('content-security-policy')).toContain('sandbox')
      // History carries them too.
      const h = await b.request({ type: 'history', room })
      expect(h.messages.at(-1).attachments).toEqual([file])
      a.close()
      b.close()
    })

    test('a non-member of the room and an anonymous caller get 403; the uploader may read its own upload', async () => {
      const room = uid('r')
      const [ua, uc] = [uid('a'), uid('c')]
      const file = (await upload(at(0), ua, PDF, 'doc.pdf', 'application/pdf')).body.upload
      expect(file.type).toBe('application/pdf')
      expect((await get(at(1), file.url, ua)).status).toBe(200)
      const a = await as(at(0), ua)
      const c = await as(at(1), uc)
      await inRoom(a, room)
      await inRoom(c, uid('other'))
      expect(await a.request({ type: 'chat', room, body: 'doc', attachments: [file.id] })).toMatchObject({ type: 'ack' })
      const other = await get(at(1), file.url, uc)
      expect(other.status).toBe(403)
      expect(await other.json()).toMatchObject({ error: 'forbidden' })
      expect((await get(at(2), file.url)).status).toBe(403)
      // A pdf is a download, never shown on this origin.
      const mine = await get(at(2), file.url, ua)
      expect(mine.headers.get('content-disposition')).toStartWith('attachment;')
      expect(mine.headers.get('x-content-type-options')).toBe('nosniff')
      a.close()
      c.close()
    })

    test("attachments: more than 10, an unknown id, and someone else's upload are bad requests naming them", async () => {
      const room = uid('r')
      const [ua, ub] = [uid('a'), uid('b')]
      const a = await as(at(0), ua)
      await inRoom(a, room)
      const ids = Array.from({ length: 11 }, (_, i) => `x${i}`)
      const many = await a.request({ type: 'chat', room, body: 'x', attachments: ids })
      expect(many).toMatchObject({ type: 'error', code: 'bad_request', message: 'attachments: must be at most 10 upload ids' })
      const unknown = await a.request({ type: 'chat', room, body: 'x', attachments: ['no-such-upload'] })
      expect(unknown).toMatchObject({ type: 'error', code: 'bad_request', message: 'attachments: no upload no-such-upload' })
      const theirs = (await upload(at(1), ub, PNG_1x1, 'b.png')).body.upload
      const stolen = await a.request({ type: 'chat', room, body: 'x', attachments: [theirs.id] })
      expect(stolen).toMatchObject({ type: 'error', code: 'bad_request', message: `attachments: upload ${theirs.id} is not yours` })
      const dm = await a.request({ type: 'dm', to: ub, body: 'x', attachments: [theirs.id] })
      expect(dm).toMatchObject({ type: 'error', code: 'bad_request', message: `attachments: upload ${theirs.id} is not yours` })
      a.close()
    })

    test('415 for a type outside UPLOAD_TYPES and for a Content-Type the content contradicts', async () => {
      const u = uid('a')
      const zip = new Uint8Array([0x50, 0x4b, 0x03, 0x04, 1, 2, 3, 4, 5, 6])
      const z = await upload(at(0), u, zip, 'a.zip', 'application/zip')
      expect(z).toMatchObject({ status: 415, body: { error: 'unsupported_type' } })
      const lying = await upload(at(0), u, PDF, 'fake.png', 'image/png')
      expect(lying).toMatchObject({
        status: 415,
        body: { error: 'unsupported_type', reason: 'file: declared image/png but the content is application/pdf' },
      })
      const html = await upload(at(0), u, '<!doctype html><script>alert(1)</script>', 'x.txt', 'text/plain')
      expect(html).toMatchObject({ status: 415, body: { error: 'unsupported_type' } })
      const svg = await upload(at(0), u, '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', 'x.svg', 'image/svg+xml')
      expect(svg).toMatchObject({ status: 415, body: { error: 'unsupported_type' } })
      const text = await upload(at(0), u, 'just some notes\nline two\n', 'notes.txt')
      expect(text).toMatchObject({ status: 201, body: { upload: { type: 'text/plain', name: 'notes.txt' } } })
      const sized = await upload(at(0), u, pngHeader(640, 480), 'big.png', 'application/octet-stream')
      expect(sized.body.upload).toMatchObject({ type: 'image/png', width: 640, height: 480 })
    })

    test('a dm carries attachments and its recipient downloads them', async () => {
      const [ua, ub] = [uid('a'), uid('b')]
      const file = (await upload(at(0), ua, 'hello file', 'hello.txt', 'text/plain')).body.upload
      const a = await as(at(0), ua)
      const b = await as(at(1), ub)
      expect(await a.request({ type: 'dm', to: ub, body: 'for you', attachments: [file.id] })).toMatchObject({ type: 'ack' })
      const got = await b.next({ type: 'dm' })
      expect(got.attachments).toEqual([file])
      const res = await get(at(2), file.url, ub)
      expect(res.status).toBe(200)
      expect(await res.text()).toBe('hello file')
      expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8')
      expect(res.headers.get('content-disposition')).toStartWith('attachment;')
      a.close()
      b.close()
    })

    test("a deleted message's attachments are removed with it", async () => {
      const room = uid('r')
      const ua = uid('a')
      const before = opts.stored?.()
      const file = (await upload(at(0), ua, PNG_1x1, 'gone.png')).body.upload
      if (before !== undefined) expect(opts.stored!()).toBe(before + 1)
      const a = await as(at(0), ua)
      await inRoom(a, room)
      const ack = await a.request({ type: 'chat', room, body: 'soon gone', attachments: [file.id] })
      expect((await get(at(1), file.url, ua)).status).toBe(200)
      expect(await a.request({ type: 'delete', room, msg: ack.msg })).toMatchObject({ type: 'ack' })
      const res = await get(at(1), file.url, ua)
      expect(res.status).toBe(404)
      if (before !== undefined) expect(opts.stored!()).toBe(before)
      const h = await a.request({ type: 'history', room })
      const shown = h.messages.find((m: any) => m.id === ack.msg)
      expect(shown).toMatchObject({ deleted: true })
      expect(shown.attachments).toBeUndefined()
      a.close()
    })

    test('a signed link reads the upload without another credential, until tampered with', async () => {
      const ua = uid('a')
      const file = (await upload(at(0), ua, PNG_1x1, 's.png')).body.upload
      const link = await fetch(`${at(1).url}${file.url}/link?user=${ua}`, { method: 'POST' })
      expect(link.status).toBe(200)
      const { url, expires } = (await link.json()) as { url: string; expires: string }
      expect(Date.parse(expires)).toBeGreaterThan(Date.now())
      expect((await fetch(`${at(2).url}${url}`)).status).toBe(200)
      expect((await fetch(`${at(2).url}${url.replace(`as=${ua}`, 'as=someone-else')}`)).status).toBe(403)
    })

    if (opts.orphanTtl)
      test('an upload sent nowhere is removed after UPLOAD_ORPHAN_TTL_S; a sent one stays', async () => {
        const room = uid('r')
        const ua = uid('a')
        const orphan = (await upload(at(0), ua, PNG_1x1, 'orphan.png')).body.upload
        const kept = (await upload(at(0), ua, PNG_1x1, 'kept.png')).body.upload
        const a = await as(at(1), ua)
        await inRoom(a, room)
        expect(await a.request({ type: 'chat', room, body: 'keep', attachments: [kept.id] })).toMatchObject({ type: 'ack' })
        await until(async () => (await get(at(2), orphan.url, ua)).status === 404, 'the orphan to be reaped', 10_000)
        await Bun.sleep(1500)
        expect((await get(at(2), kept.url, ua)).status).toBe(200)
        a.close()
      })
  })
}

/** Files in a directory, but not the partial ones in flight. */
const filesIn = (dir: string) => (existsSync(dir) ? readdirSync(dir).length : 0)

describe('one node, memory engine, disk storage', () => {
  const dir = mkdtempSync(join(tmpdir(), 'uploads-disk-'))
  let s: RunningServer
  beforeAll(async () => {
    s = await node({ UPLOAD_DIR: dir, UPLOAD_ORPHAN_TTL_S: '1' })
  }, 20_000)
  uploadSuite('memory + disk', () => [s], bunTest, { orphanTtl: true, stored: () => filesIn(dir) })

  bunTest('an upload by the API key names its user; without ?user= it is a bad request; anonymous users cannot upload', async () => {
    const form = () => {
      const f = new FormData()
      f.append('file', new Blob([PNG_1x1]), 'k.png')
      return f
    }
    const ok = await fetch(`${s.url}/api/uploads?user=keyed`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}` },
      body: form(),
    })
    expect(ok.status).toBe(201)
    const missing = await fetch(`${s.url}/api/uploads`, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}` }, body: form() })
    expect(missing.status).toBe(400)
    const anon = await fetch(`${s.url}/api/uploads`, { method: 'POST', body: form() })
    expect(anon.status).toBe(401)
    const notMultipart = await fetch(`${s.url}/api/uploads?user=x`, { method: 'POST', body: 'hello' })
    expect(notMultipart.status).toBe(400)
    expect(await notMultipart.json()).toMatchObject({ error: 'bad_request' })
  })
})

/** A multipart body built by hand: `partHeaders` are the file part's headers besides its Content-Disposition. */
async function rawUpload(s: RunningServer, user: string, bytes: Uint8Array | string, name: string, partHeaders: string[]) {
  const boundary = `----raw${tag}`
  const head = [`--${boundary}`, `Content-Disposition: form-data; name="file"; filename="${name}"`, ...partHeaders, '', ''].join('\r\n')
  const body = Buffer.concat([Buffer.from(head), Buffer.from(bytes), Buffer.from(`\r\n--${boundary}--\r\n`)])
  const res = await fetch(`${s.url}/api/uploads?user=${encodeURIComponent(user)}`, {
    method: 'POST',
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    body,
  })
  return { status: res.status, body: (await res.json()) as any }
}

describe('upload types (PROTOCOL-v4) and download names', () => {
  let s: RunningServer
  beforeAll(async () => {
    s = await node({ UPLOAD_DIR: mkdtempSync(join(tmpdir(), 'uploads-notype-')) })
  }, 20_000)

  bunTest('is sniffed like application/octet-stream; a declared text/plain is still checked against the content', async () => {
    const u = uid('a')
    expect(await rawUpload(s, u, PNG_1x1, 'dot.png', [])).toMatchObject({
      status: 201,
      body: { upload: { type: 'image/png', name: 'dot.png', width: 1, height: 1 } },
    })
    expect(await rawUpload(s, u, PDF, 'doc.pdf', [])).toMatchObject({ status: 201, body: { upload: { type: 'application/pdf' } } })
    expect(await rawUpload(s, u, 'plain notes\n', 'notes.txt', [])).toMatchObject({ status: 201, body: { upload: { type: 'text/plain' } } })
    // An empty header says nothing either.
    expect(await rawUpload(s, u, PNG_1x1, 'dot.png', ['Content-Type: '])).toMatchObject({
      status: 201,
      body: { upload: { type: 'image/png' } },
    })
    // What is declared is still compared with the content, and what is sniffed with UPLOAD_TYPES.
    expect(await rawUpload(s, u, PNG_1x1, 'dot.png', ['Content-Type: text/plain'])).toMatchObject({
      status: 415,
      body: { error: 'unsupported_type', reason: 'file: declared text/plain but the content is image/png' },
    })
    expect(await rawUpload(s, u, '<!doctype html><script>alert(1)</script>', 'x.txt', [])).toMatchObject({
      status: 415,
      body: { error: 'unsupported_type', reason: expect.stringContaining('text/html is not an allowed type') },
    })
  })

  bunTest(
    'a download is saved under a name whose extension follows the served type (evil.html served as text/plain is evil.html.txt)',
    async () => {
      const u = uid('a')
      const evil = (await upload(s, u, 'not a page, just text\n', 'evil.html', 'text/plain')).body.upload
      // The name as uploaded stays in the metadata; only the saved name gains the extension.
      expect(evil).toMatchObject({ name: 'evil.html', type: 'text/plain' })
      const res = await get(s, evil.url, u)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8')
      expect(res.headers.get('content-disposition')).toBe(`attachment; filename="evil.html.txt"; filename*=UTF-8''evil.html.txt`)
      const kept = (await upload(s, u, PNG_1x1, 'dot.png')).body.upload
      expect((await get(s, kept.url, u)).headers.get('content-disposition')).toBe(`inline; filename="dot.png"; filename*=UTF-8''dot.png`)
      const spoof = (await upload(s, u, 'text\n', 'evil\u202Etxt.exe', 'text/plain')).body.upload
      expect(spoof.name).toBe('eviltxt.exe')
      expect((await get(s, spoof.url, u)).headers.get('content-disposition')).toBe(
        `attachment; filename="eviltxt.exe.txt"; filename*=UTF-8''eviltxt.exe.txt`,
      )
    },
  )
})

describe('with JWT auth the token authenticates the upload and the download, as on /ws', () => {
  const SECRET = 'uploads-jwt-secret-0123456789abcdef'
  const mint = (sub: string) =>
    new SignJWT({ sub, name: sub }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode(SECRET))
  let s: RunningServer
  beforeAll(async () => {
    s = await node({ JWT_SECRET: SECRET, UPLOAD_DIR: mkdtempSync(join(tmpdir(), 'uploads-jwt-')) })
  }, 20_000)

  bunTest(
    "no token is 401 for upload and download; a member's token in the header or ?token= reads it; a non-member's is 403",
    async () => {
      const form = () => {
        const f = new FormData()
        f.append('file', new Blob([PNG_1x1]), 'j.png')
        return f
      }
      expect((await fetch(`${s.url}/api/uploads`, { method: 'POST', body: form() })).status).toBe(401)
      expect((await fetch(`${s.url}/api/uploads?user=alice`, { method: 'POST', body: form() })).status).toBe(401)
      const [ta, tb, tc] = await Promise.all([mint('alice'), mint('bob'), mint('carol')])
      const up = await fetch(`${s.url}/api/uploads`, { method: 'POST', headers: { authorization: `Bearer ${ta}` }, body: form() })
      expect(up.status).toBe(201)
      const file = ((await up.json()) as any).upload
      const room = uid('r')
      const a = await connect(s.ws, { token: ta })
      const b = await connect(s.ws, { token: tb })
      await inRoom(a, room)
      await inRoom(b, room)
      expect(await a.request({ type: 'chat', room, body: 'pic', attachments: [file.id] })).toMatchObject({ type: 'ack' })
      expect((await b.next({ type: 'chat', room })).attachments).toEqual([file])
      const none = await fetch(`${s.url}${file.url}`)
      expect(none.status).toBe(401)
      expect(await none.json()).toMatchObject({ error: 'unauthorized' })
      expect((await fetch(`${s.url}${file.url}?user=bob`)).status).toBe(401)
      expect((await fetch(`${s.url}${file.url}`, { headers: { authorization: `Bearer ${tb}` } })).status).toBe(200)
      expect((await fetch(`${s.url}${file.url}?token=${tb}`)).status).toBe(200)
      expect((await fetch(`${s.url}${file.url}?token=${tc}`)).status).toBe(403)
      a.close()
      b.close()
    },
  )
})

describe('an UPLOAD_DIR that cannot be written', () => {
  bunTest(
    'the node starts and serves chat; an upload answers 503 unavailable',
    async () => {
      const s = await node({ UPLOAD_DIR: '/proc/no-such-dir/uploads' })
      const up = await upload(s, 'u1', PNG_1x1, 'x.png')
      expect(up).toMatchObject({ status: 503, body: { error: 'unavailable' } })
      const c = await as(s, 'u1')
      expect(await c.request({ type: 'chat', body: 'still chatting' })).toMatchObject({ type: 'ack' })
      c.close()
    },
    20_000,
  )
})

describe('the size limit is checked while the body streams in', () => {
  const dir = mkdtempSync(join(tmpdir(), 'uploads-limit-'))
  let s: RunningServer
  beforeAll(async () => {
    s = await node({ UPLOAD_DIR: dir, UPLOAD_MAX_BYTES: String(1024 * 1024) })
  }, 20_000)
  const rss = async (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(await Bun.file(`/proc/${pid}/status`).text())![1]) * 1024

  bunTest(
    'a 2 GiB body is cut at UPLOAD_MAX_BYTES with 413, nothing is stored, and the server never holds it',
    async () => {
      // A raw socket: it keeps sending (chunked, as a stream of unknown length) until the answer
      // arrives, and counts what it sent; a fetch client would not read the answer before its body ended.
      const boundary = `----b${tag}`
      const head = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="huge.png"\r\nContent-Type: image/png\r\n\r\n`
      const chunk = new Uint8Array(256 * 1024).fill(7)
      chunk.set(pngHeader(10, 10))
      const total = 2 * 1024 ** 3
      let sent = 0
      let answer = ''
      let closed = false
      const before = await rss(s.proc.pid)
      let peak = before
      const enc = new TextEncoder()
      const sock = await Bun.connect({
        hostname: '127.0.0.1',
        port: s.port,
        socket: {
          data(_s, d) {
            answer += new TextDecoder().decode(d)
          },
          close() {
            closed = true
          },
        },
      })
      const write = async (b: Uint8Array) => {
        let off = 0
        while (off < b.length) {
          const n = sock.write(b.subarray(off))
          off += n
          if (off < b.length) await Bun.sleep(1)
        }
      }
      await write(
        enc.encode(
          `POST /api/uploads?user=big HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nTransfer-Encoding: chunked\r\n\r\n`,
        ),
      )
      const first = enc.encode(head)
      await write(enc.encode(`${first.length.toString(16)}\r\n`))
      await write(first)
      await write(enc.encode('\r\n'))
      const size = enc.encode(`${chunk.length.toString(16)}\r\n`)
      const crlf = enc.encode('\r\n')
      while (sent < total && !answer.includes('\r\n\r\n') && !closed) {
        await write(size)
        await write(chunk)
        await write(crlf)
        sent += chunk.length
        if (sent % (16 * 1024 * 1024) === 0) peak = Math.max(peak, await rss(s.proc.pid))
      }
      await until(() => answer.includes('}'), 'the answer body', 5000).catch((e) => {
        throw new Error(`${e.message}: closed=${closed} sent=${sent} answer=${JSON.stringify(answer)}`)
      })
      sock.end()
      expect(answer).toStartWith('HTTP/1.1 413')
      expect(answer).toContain('"error":"too_large"')
      // The server answered long before the body ended, and did not keep what it had read.
      expect(sent).toBeLessThan(total / 8)
      expect(peak - before).toBeLessThan(128 * 1024 * 1024)
      expect(filesIn(dir)).toBe(0)
      // The server still serves.
      expect((await upload(s, 'small', PNG_1x1, 'ok.png')).status).toBe(201)
    },
    60_000,
  )

  bunTest('a declared Content-Length past the limit is refused before its body is read', async () => {
    const form = new FormData()
    form.append('file', new Blob([new Uint8Array(2 * 1024 * 1024)]), 'z.bin')
    const res = await fetch(`${s.url}/api/uploads?user=big`, { method: 'POST', body: form })
    expect(res.status).toBe(413)
    expect(await res.json()).toMatchObject({ error: 'too_large' })
  })
})

describe('S3-compatible storage', () => {
  const s3 = s3Receiver('AKIATESTUPLOADS')
  let s: RunningServer
  beforeAll(async () => {
    s = await node({
      S3_BUCKET: 'chat-uploads',
      S3_ENDPOINT: s3.url,
      S3_REGION: 'us-east-1',
      S3_ACCESS_KEY_ID: 'AKIATESTUPLOADS',
      S3_SECRET_ACCESS_KEY: 'secret-of-the-test-0123',
      UPLOAD_ORPHAN_TTL_S: '1',
      UPLOAD_MAX_BYTES: String(16 * 1024 * 1024),
    })
  }, 20_000)
  afterAll(() => s3.stop())
  uploadSuite('memory + S3', () => [s], bunTest, { orphanTtl: true, stored: () => s3.objects.size })
  bunTest('a file larger than one part goes up as a multipart upload and reads back whole', async () => {
    const big = new Uint8Array(new ArrayBuffer(12 * 1024 * 1024))
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff
    big.set(pngHeader(4000, 3000))
    const up = await upload(s, 'bigger', big, 'large.png', 'image/png')
    expect(up).toMatchObject({ status: 201, body: { upload: { size: big.length, width: 4000, height: 3000 } } })
    expect(s3.requests.some((r) => r.method === 'POST')).toBe(true)
    const res = await get(s, up.body.upload.url, 'bigger')
    expect(res.status).toBe(200)
    const back = new Uint8Array(await res.arrayBuffer())
    expect(back.length).toBe(big.length)
    expect(Bun.hash(back)).toBe(Bun.hash(big))
  })

  bunTest('every request to the bucket was signed with the access key', () => {
    expect(s3.requests.length).toBeGreaterThan(0)
    expect(s3.refused()).toBe(0)
  })
})

const pgTest = await needService('PostgreSQL', 5432)
describe('PostgreSQL keeps the metadata', () => {
  const dir = mkdtempSync(join(tmpdir(), 'uploads-pg-'))
  let s: RunningServer
  let db: Awaited<ReturnType<typeof freshDatabase>> | undefined
  afterAll(async () => {
    await s?.stop('SIGKILL')
    await db?.drop()
  })
  pgTest('start', async () => {
    db = await freshDatabase(`uploads_${tag}`)
    s = await node({ POSTGRES_DSN: db.dsn, UPLOAD_DIR: dir, UPLOAD_ORPHAN_TTL_S: '1' })
  })
  uploadSuite('postgres + disk', () => [s], pgTest, { orphanTtl: true, stored: () => filesIn(dir) })

  pgTest(
    'after a restart the stored message still carries its attachments and the upload is still readable',
    async () => {
      const room = uid('r')
      const [ua, ub] = [uid('a'), uid('b')]
      const file = (await upload(s, ua, PNG_1x1, 'kept.png')).body.upload
      const a = await as(s, ua)
      expect(await a.request({ type: 'join', room, member: true })).toMatchObject({ type: 'joined' })
      const b = await as(s, ub)
      expect(await b.request({ type: 'join', room, member: true })).toMatchObject({ type: 'joined' })
      expect(await a.request({ type: 'chat', room, body: 'durable', attachments: [file.id] })).toMatchObject({ type: 'ack' })
      const live = await b.next({ type: 'chat', room })
      a.close()
      b.close()
      expect(await s.stop()).toBe(0)
      s = await node({ POSTGRES_DSN: db!.dsn, UPLOAD_DIR: dir, UPLOAD_ORPHAN_TTL_S: '1' })
      const b2 = await as(s, ub)
      const h = await b2.request({ type: 'history', room })
      const again = h.messages.find((m: any) => m.id === live.id)
      expect(again).toEqual(live)
      const res = await get(s, file.url, ub)
      expect(res.status).toBe(200)
      b2.close()
    },
    30_000,
  )
})

// Three nodes share one UPLOAD_DIR (a cluster needs a shared volume or S3): an upload through
// one node is delivered and downloaded through the others.
const shared = mkdtempSync(join(tmpdir(), 'uploads-cluster-'))
const prefix = `test:uploads:${process.pid}:${tag}:`
await onRedisAndCluster({
  what: 'uploads',
  node,
  env: { UPLOAD_DIR: shared, UPLOAD_ORPHAN_TTL_S: '1' },
  prefix,
  suite: (name, nodes, test) => uploadSuite(name, nodes, test, { orphanTtl: true }),
})
