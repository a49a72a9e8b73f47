/**
 * pusher-js's browser build in Chromium (Debian's, driven by playwright-core), on a page of
 * another origin, with only one HTTP fallback enabled: its XHRs (preflighted, as they carry
 * JSON) reach chat-server, a private channel is signed by the page's backend, an event of the
 * server SDK arrives and a client event reaches a /ws user of the room.
 * No Chromium: with CI=true that is a failure, else skipped.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import PusherServer from 'pusher'
import type { Browser } from 'playwright-core'
import { haveChromium, launchChromium, requireChromium } from '../helpers/browser'
import { connect } from '../helpers/client'
import { APP, CLOSED_PORT, pusherEnv, sdk } from '../helpers/pusher'
import { ROOT, startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

requireChromium('pusher-js HTTP fallback browser tests')

describe.skipIf(!haveChromium)('pusher-js in Chromium over HTTP fallbacks, from another origin', () => {
  let s: RunningServer
  let browser: Browser
  let page: ReturnType<typeof Bun.serve>
  const signer = new PusherServer({ appId: APP.appId, key: APP.key, secret: APP.secret, host: '127.0.0.1' })

  beforeAll(async () => {
    s = await startServer({ env: { ...pusherEnv, RATE_LIMIT_PER_SEC: '0' }, timeoutMs: 40_000 })
    // The app's page and its auth endpoint, on an origin of their own.
    page = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      async fetch(req) {
        const url = new URL(req.url)
        if (url.pathname === '/pusher.js') return new Response(Bun.file(join(ROOT, 'node_modules/pusher-js/dist/web/pusher.js')))
        if (url.pathname === '/auth') {
          const form = new URLSearchParams(await req.text())
          return Response.json(signer.authorizeChannel(form.get('socket_id')!, form.get('channel_name')!))
        }
        return new Response('<!doctype html><script src="/pusher.js"></script>', { headers: { 'content-type': 'text/html' } })
      },
    })
    browser = await launchChromium()
  }, 60_000)
  afterAll(async () => {
    await browser?.close()
    page?.stop(true)
    await s?.stop('SIGKILL')
  })

  for (const transport of ['xhr_streaming', 'xhr_polling'] as const)
    test(`${transport}: connects, a signed private channel, an SDK event, a client event to a /ws user`, async () => {
      const ctx = await browser.newContext()
      const tab = await ctx.newPage()
      const errors: string[] = []
      tab.on('pageerror', (e) => errors.push(e.message))
      await tab.goto(`http://127.0.0.1:${page.port}/`)
      const channel = `private-browser-${transport}-${process.pid}`
      await tab.evaluate(
        ({ key, port, closed, transport, channel }) => {
          const w = window as any
          w.got = []
          const p = new w.Pusher(key, {
            wsHost: '127.0.0.1',
            wsPort: closed,
            httpHost: '127.0.0.1',
            httpPort: port,
            forceTLS: false,
            enabledTransports: [transport],
            disableStats: true,
            cluster: 'mt1',
            channelAuthorization: { endpoint: '/auth', transport: 'ajax' },
          })
          p.connection.bind('connected', () => {
            w.transport = p.connection.connection.transport.name
          })
          w.ch = p.subscribe(channel)
          w.ch.bind('pusher:subscription_succeeded', () => {
            w.subscribed = true
          })
          w.ch.bind('news', (d: unknown) => w.got.push(d))
        },
        { key: APP.key, port: s.port, closed: CLOSED_PORT, transport, channel },
      )
      await tab.waitForFunction(() => (window as any).subscribed === true, undefined, { timeout: 15_000 })
      expect(await tab.evaluate(() => (window as any).transport)).toBe(transport)
      await sdk(s).trigger(channel, 'news', { n: 1 })
      await tab.waitForFunction(() => (window as any).got.length > 0, undefined, { timeout: 10_000 })
      expect(await tab.evaluate(() => (window as any).got)).toEqual([{ n: 1 }])
      const chat = await connect(s.ws, { user: 'carol', name: 'Carol' })
      expect((await chat.request({ type: 'join', room: channel })).type).toBe('joined')
      await tab.evaluate(() => (window as any).ch.trigger('client-wave', { from: 'browser' }))
      expect(await chat.next((f) => f.type === 'pusher' && f.event === 'client-wave')).toMatchObject({ data: { from: 'browser' } })
      chat.close()
      expect(errors).toEqual([])
      await ctx.close()
    }, 40_000)
})
