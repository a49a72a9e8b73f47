/**
 * The demo page where WebSockets are blocked (Debian's Chromium driven by playwright-core): a
 * proxy of the test's own sits in front of the server, answers 403 to every WebSocket upgrade
 * and forwards everything else, streams unbuffered. The page, loaded through it, connects over
 * Server-Sent Events with POST by itself, chats with a /ws user both ways, and survives a
 * restart of the server behind the proxy (Redis keeps the room's log): it reconnects, resumes,
 * and what was sent during the gap, by either side, arrives once.
 * No Chromium at /usr/bin/chromium: with CI=true that is a failure, else the suite is skipped
 * with a printed reason (as in browser.test.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { haveChromium, launchChromium, openDemo, requireChromium } from '../helpers/browser'
import { connect } from '../helpers/client'
import type { TestClient } from '../helpers/client'
import { startHttpProxy } from '../helpers/http-proxy'
import type { HttpProxy } from '../helpers/http-proxy'
import { ROOT, startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { dropRedisPrefix, needService } from '../helpers/services'

const ARTIFACTS = join(ROOT, 'test', 'artifacts')
/** Waits only: the machine may be busy; nothing here is a timing assertion. */
const SLOW = { timeout: 20_000 }

requireChromium('browser SSE tests')
const redisTest = await needService('Redis', 6379)

describe.skipIf(!haveChromium)('the demo page over SSE when WebSockets are blocked', () => {
  const prefix = `test:browser-sse:${process.pid}:`
  const env = { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix, RATE_LIMIT_PER_SEC: '0', SHUTDOWN_GRACE_S: '1' }
  let server: RunningServer
  let proxy: HttpProxy
  let browser: Browser
  const sockets: TestClient[] = []
  const pageErrors: string[] = []
  const shown = (page: Page) => page.locator('.room-log:not([hidden]) .msg .body')
  const message = (page: Page, text: string) => shown(page).filter({ hasText: text })
  const say = async (page: Page, text: string) => {
    await page.fill('#text', text)
    await page.press('#text', 'Enter')
  }
  const wsUser = async () => {
    const t = await connect(server.ws, { user: 'bob', name: 'Bob' })
    sockets.push(t)
    return t
  }

  beforeAll(async () => {
    if (redisTest !== test) return
    mkdirSync(ARTIFACTS, { recursive: true })
    server = await startServer({ env })
    proxy = startHttpProxy(server.port)
    browser = await launchChromium()
  }, 30_000)

  afterAll(async () => {
    await browser?.close().catch(() => {})
    for (const t of sockets) t.close()
    proxy?.close()
    await server?.stop()
    await dropRedisPrefix(prefix)
  })

  redisTest(
    'the page connects over SSE, chats with a /ws user both ways, and resumes after a server restart with the gap delivered once',
    async () => {
      const alice = await openDemo(browser, proxy.url, 'Alice', pageErrors, { wait: SLOW })
      const status = alice.locator('#status')
      expect(await status.getAttribute('data-transport')).toBe('sse')
      expect(await status.textContent()).toBe('connected (SSE)')
      expect(proxy.refused).toBeGreaterThan(0) // the page did try its WebSocket first
      expect(proxy.seen).toContain('GET /sse')

      let bob = await wsUser()
      await say(alice, 'hello from the page')
      expect(await bob.next({ type: 'chat', room: 'general', body: 'hello from the page' }, 15_000)).toMatchObject({
        from: { id: 'alice' },
      })
      await bob.request({ type: 'chat', room: 'general', body: 'hello from /ws' })
      await message(alice, 'hello from /ws').waitFor(SLOW)

      // The node restarts behind the proxy, on the same port; the page is kept away until bob wrote.
      const port = server.port
      await server.stop('SIGTERM')
      await alice.locator('#status[data-state="reconnecting"]').waitFor(SLOW)
      proxy.hold(true)
      await say(alice, 'sent while offline') // into the client's outbox
      server = await startServer({ env: { ...env, PORT: String(port) } })
      bob = await wsUser()
      await bob.request({ type: 'chat', room: 'general', body: 'gap one' })
      await bob.request({ type: 'chat', room: 'general', body: 'gap two' })
      proxy.hold(false)
      await alice.locator('#status[data-state="open"]').waitFor(SLOW)
      expect(await status.getAttribute('data-transport')).toBe('sse')
      await message(alice, 'gap two').waitFor(SLOW)
      await bob.next({ type: 'chat', body: 'sent while offline' }, 15_000)
      await bob.request({ type: 'chat', room: 'general', body: 'after the restart' })
      await message(alice, 'after the restart').waitFor(SLOW)
      await say(alice, 'page after the restart')
      await bob.next({ type: 'chat', body: 'page after the restart' }, 15_000)
      await message(alice, 'page after the restart').waitFor(SLOW)

      // Each once, in the room's order (the outbox went out after the re-join, so after the gap).
      expect(await shown(alice).allTextContents()).toEqual([
        'hello from the page',
        'hello from /ws',
        'gap one',
        'gap two',
        'sent while offline',
        'after the restart',
        'page after the restart',
      ])
      await until(() => bob.all('chat').length >= 2, 'bob saw the page')
      expect(bob.all('chat').filter((f) => f.body === 'sent while offline').length).toBe(1)
      // No divider: Redis kept the room's sequence, so the page resumed rather than starting over.
      expect(await alice.locator('.room-log:not([hidden]) .divider', { hasText: 'server restarted' }).count()).toBe(0)
      await alice.screenshot({ path: join(ARTIFACTS, 'demo-sse.png') })
      expect(pageErrors).toEqual([])
    },
    90_000,
  )
})
