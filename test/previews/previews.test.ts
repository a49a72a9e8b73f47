// Link previews (PROTOCOL-v4): a chat's first URL fetched off the chat path under the outbound
// rule, its preview a `preview` event of the room's log and a field of the message in history.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Server } from 'bun'
import { ChatClient } from '../../client/src/index'
import type { PreviewEvent } from '../../client/src/index'
import { firstUrl } from '../../src/core/link-preview'
import { decodeEntities } from '../../src/core/html-meta'
import { connect } from '../helpers/client'
import type { Frame, TestClient } from '../helpers/client'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

const PAGE = `<!doctype html><html><head>
<title>Plain title</title>
<meta property="og:title" content="Caf&eacute; &amp; &quot;Friends&quot;">
<meta property="og:description" content="A page &#x2014; about things">
<meta property="og:image" content="/img/cover.png">
<meta property="og:site_name" content="Example">
</head><body>hello</body></html>`

/** The pages the server under test fetches: every request counted by path. */
let pages: Server<unknown>
const hits = new Map<string, number>()
let releaseSlow: () => void = () => {}
let slowResponded = false
let dripCancelled = false

function startPages() {
  return Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname
      hits.set(path, (hits.get(path) ?? 0) + 1)
      const html = (body: string | ReadableStream) => new Response(body, { headers: { 'content-type': 'text/html; charset=utf-8' } })
      if (path.startsWith('/page')) return html(PAGE)
      if (path === '/titled')
        return html('<html><head><title>Only &lt;title&gt;</title><meta name="description" content="desc"></head></html>')
      if (path === '/json') return Response.json({ title: 'not html' })
      if (path === '/hop') return new Response(null, { status: 302, headers: { location: '/page-after-hop' } })
      if (path === '/to-private')
        return new Response(null, { status: 302, headers: { location: 'http://169.254.169.254/latest/meta-data/' } })
      if (path === '/loop') return new Response(null, { status: 302, headers: { location: '/loop' } })
      if (path === '/slow') {
        // Answers when the test says so (after the chat's ack), or after 3 s.
        await new Promise<void>((resolve) => {
          releaseSlow = resolve
          setTimeout(resolve, 3000)
        })
        slowResponded = true
        return html('<title>Slow page</title>')
      }
      if (path === '/drip') {
        // Headers at once, then a byte every 200 ms for ever: only the timeout ends it.
        let timer: ReturnType<typeof setInterval> | undefined
        const body = new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode('<html><head><title>never ends'))
            timer = setInterval(() => {
              try {
                c.enqueue(new TextEncoder().encode(' '))
              } catch {
                clearInterval(timer)
              }
            }, 200)
          },
          cancel() {
            clearInterval(timer)
            dripCancelled = true
          },
        })
        return html(body)
      }
      if (path === '/big') {
        // The title is in the first MiB; an og:title after it would win if it were read.
        const pad = `<!-- ${'x'.repeat(1024 * 1024 + 4096)} -->`
        return html(`<html><head><title>Early title</title>${pad}<meta property="og:title" content="Late title"></head></html>`)
      }
      return new Response('not found', { status: 404 })
    },
  })
}

async function previewsMetric(s: RunningServer, result: string): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text()
  const m = new RegExp(`^chat_link_previews_total\\{result="${result}"\\} (\\d+)`, 'm').exec(text)
  return m ? Number(m[1]) : 0
}

let n = 0
const user = (s: RunningServer) => connect(s.ws, { user: `p${n++}-${process.pid}` })

describe('first URL of a body', () => {
  test('the first http(s) URL, without the punctuation around it', () => {
    expect(firstUrl('see (https://example.com/a_(b)) and http://x.org')).toBe('https://example.com/a_(b)')
    expect(firstUrl('at https://example.com/a.')).toBe('https://example.com/a')
    expect(firstUrl('"http://example.com/q?x=1",')).toBe('http://example.com/q?x=1')
    expect(firstUrl('ftp://example.com and no link')).toBeUndefined()
    expect(firstUrl('no link at all')).toBeUndefined()
  })

  test('character references are decoded; unknown names stay', () => {
    expect(decodeEntities('&lt;a&gt; &amp;amp; &#233;&#xE9; &eacute; &bogus; &#0;')).toBe('<a> &amp; éé é &bogus; \ufffd')
  })
})

describe('previews on a server', () => {
  let allowed: RunningServer
  let strict: RunningServer
  let a: TestClient
  let b: TestClient
  const base = () => `http://127.0.0.1:${pages.port}`

  beforeAll(async () => {
    pages = startPages()
    ;[allowed, strict] = await Promise.all([
      startServer({ env: { LINK_PREVIEWS: 'true', OUTBOUND_ALLOW: '127.0.0.1', LINK_PREVIEW_TIMEOUT_MS: '5000' } }),
      startServer({ env: { LINK_PREVIEWS: 'true' } }),
    ])
    ;[a, b] = await Promise.all([user(allowed), user(allowed)])
  })
  afterAll(async () => {
    a?.close()
    b?.close()
    await Promise.all([allowed?.stop(), strict?.stop()])
    pages?.stop(true)
  })

  /** Sends a chat, waits for its `preview` event at the other client; returns both. */
  async function withPreview(body: string): Promise<{ ack: Frame; preview: Frame }> {
    const ack = await a.request({ type: 'chat', body })
    expect(ack.type).toBe('ack')
    const preview = await b.next((f) => f.type === 'preview' && f.msg === ack.msg, 8000)
    return { ack, preview }
  }

  /** Sends a chat whose link gets no preview: waits until the node counted `result`, then checks no event came. */
  async function withoutPreview(s: RunningServer, c: TestClient, body: string, result: string) {
    const before = await previewsMetric(s, result)
    const ack = await c.request({ type: 'chat', body })
    expect(ack.type).toBe('ack')
    await until(async () => (await previewsMetric(s, result)) > before, `a preview counted ${result}`, 8000)
    // The count follows the end of the attempt: nothing was appended for this message.
    const page = await c.request({ type: 'history', room: 'general', limit: 50 })
    expect(page.messages.filter((f: Frame) => f.type === 'preview' && f.msg === ack.msg)).toEqual([])
    expect(c.frames.filter((f) => f.type === 'preview' && f.msg === ack.msg)).toEqual([])
  }

  test('a loopback page allowed by OUTBOUND_ALLOW: a preview event (og: tags, entities, absolute image); history carries it', async () => {
    const url = `${base()}/page?one`
    const { ack, preview } = await withPreview(`look at ${url}!`)
    const expected = {
      url,
      title: 'Café & "Friends"',
      description: 'A page — about things',
      image: `${base()}/img/cover.png`,
      site_name: 'Example',
    }
    expect(preview).toMatchObject({ type: 'preview', room: 'general', msg: ack.msg, preview: expected })
    expect(preview.seq).toBeGreaterThan(ack.seq)
    expect(preview.by).toMatchObject({ id: 'server', system: true })
    const page = await b.request({ type: 'history', room: 'general', limit: 50 })
    expect(page.messages.find((f: Frame) => f.id === ack.msg).preview).toEqual(expected)
  })

  test('<title> and meta description when there are no og: tags', async () => {
    const { preview } = await withPreview(`${base()}/titled`)
    expect(preview.preview).toEqual({ url: `${base()}/titled`, title: 'Only <title>', description: 'desc' })
  })

  test('cache: a second message with the same URL gets its own preview event without a second fetch', async () => {
    const url = `${base()}/page?cached`
    const before = hits.get('/page') ?? 0
    const first = await withPreview(url)
    expect(hits.get('/page')).toBe(before + 1)
    const second = await withPreview(`again ${url}`)
    expect(second.preview.msg).toBe(second.ack.msg)
    expect(second.preview.seq).toBeGreaterThan(first.preview.seq)
    expect(second.preview.preview).toEqual(first.preview.preview)
    await withPreview(`third ${url}`)
    expect(hits.get('/page')).toBe(before + 1)
  })

  test('a redirect is followed and its target checked again', async () => {
    const { preview } = await withPreview(`${base()}/hop`)
    expect(preview.preview).toMatchObject({ url: `${base()}/hop`, title: 'Café & "Friends"' })
    expect(hits.get('/page-after-hop')).toBe(1)
  })

  test('a redirect to a private (link-local metadata) address is refused', async () => {
    await withoutPreview(allowed, a, `${base()}/to-private`, 'refused')
    expect(hits.get('/to-private')).toBe(1)
  })

  test('more than 5 redirects: no preview', async () => {
    await withoutPreview(allowed, a, `${base()}/loop`, 'none')
    expect(hits.get('/loop')).toBe(6)
  })

  test('a page that is not html is ignored', async () => {
    await withoutPreview(allowed, a, `${base()}/json`, 'none')
  })

  test('past 1 MiB the page is cut: what comes after is not read', async () => {
    const { preview } = await withPreview(`${base()}/big`)
    expect(preview.preview.title).toBe('Early title')
  })

  test("a slow page does not delay the chat's ack: the ack comes before the page answers", async () => {
    slowResponded = false
    const ack = await a.request({ type: 'chat', body: `${base()}/slow` })
    expect(ack.type).toBe('ack')
    expect(slowResponded).toBe(false)
    await until(() => hits.get('/slow') === 1, 'the page requested')
    releaseSlow()
    const preview = await b.next((f) => f.type === 'preview' && f.msg === ack.msg, 8000)
    expect(slowResponded).toBe(true)
    expect(preview.preview.title).toBe('Slow page')
  })

  test("the typed client emits `preview`, and its history shows the message's preview", async () => {
    const c = new ChatClient({ url: allowed.ws, user: `tc-${process.pid}`, reconnect: { initialMs: 50, maxMs: 300 }, pingIntervalMs: 0 })
    try {
      await until(() => c.state === 'open', 'client open')
      const got: PreviewEvent[] = []
      c.on('preview', (e) => got.push(e))
      const ack = await c.send('general', `typed ${base()}/page?typed`)
      await until(() => got.some((e) => e.msg === ack.msg), 'the preview event', 8000)
      expect(got.find((e) => e.msg === ack.msg)!.preview.title).toBe('Café & "Friends"')
      const page = await c.history('general', { limit: 20 })
      expect(page.messages.find((x) => x.id === ack.msg)?.preview?.site_name).toBe('Example')
    } finally {
      c.close()
    }
  })

  test('a page that trickles its body for ever is cut at LINK_PREVIEW_TIMEOUT_MS: no preview, the connection closed', async () => {
    await withoutPreview(allowed, a, `${base()}/drip`, 'failed')
    await until(() => dripCancelled, 'the body stream cancelled by the client', 3000)
  })

  test('without OUTBOUND_ALLOW a loopback URL gets no preview, and nothing reaches the listener', async () => {
    const c = await user(strict)
    const before = hits.get('/page-strict') ?? 0
    await withoutPreview(strict, c, `${base()}/page-strict`, 'refused')
    await withoutPreview(strict, c, `http://localhost:${pages.port}/page-strict`, 'refused')
    expect(hits.get('/page-strict') ?? 0).toBe(before)
    c.close()
  })
})
