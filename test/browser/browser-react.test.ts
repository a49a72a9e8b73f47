/**
 * @chat-server/react in a real browser (Debian's Chromium via playwright-core): the package's
 * example app (client/react/example), bundled here by Bun.build and served by the test, used by
 * two people in one room. Messages appear in order on both pages; one's typing shows on the
 * other's; the unread badge of a room the other does not look at counts up, then clears when
 * they open it; replies quote their message as edited; a new message renders one row, not the list (React.memo on stable rows); a
 * dropped connection resumes with nothing lost and nothing twice.
 * No Chromium at /usr/bin/chromium: with CI=true that is a failure, else the suite is skipped.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Server } from 'bun'
import type { Browser, Page } from 'playwright-core'
import { haveChromium, launchChromium, requireChromium } from '../helpers/browser'
import { startProxy } from '../helpers/proxy'
import type { Proxy } from '../helpers/proxy'
import { ROOT, startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

const EXAMPLE = join(ROOT, 'client', 'react', 'example')
const ARTIFACTS = join(ROOT, 'test', 'artifacts')
/** Waits only: the machine may be busy; nothing here is a timing assertion. */
const SLOW = { timeout: 15_000 }

requireChromium('React package browser tests')

/** The example app, bundled as a browser would get it, and its page. */
async function serveExample(): Promise<Server<undefined>> {
  const built = await Bun.build({
    entrypoints: [join(EXAMPLE, 'main.tsx')],
    target: 'browser',
    format: 'esm',
    define: { 'process.env.NODE_ENV': JSON.stringify('development') },
  })
  if (!built.success) throw new AggregateError(built.logs, 'bundling client/react/example failed')
  const js = await built.outputs[0]!.text()
  const html = readFileSync(join(EXAMPLE, 'index.html'), 'utf8')
  return Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    fetch: (req) =>
      new URL(req.url).pathname === '/main.js'
        ? new Response(js, { headers: { 'content-type': 'text/javascript; charset=utf-8' } })
        : new Response(html, { headers: { 'content-type': 'text/html; charset=utf-8' } }),
  })
}

describe.skipIf(!haveChromium)('@chat-server/react example app in Chromium', () => {
  let server: RunningServer
  let proxy: Proxy
  let site: Server<undefined>
  let browser: Browser
  const errors: string[] = []
  /** While the proxy blocks: the client's SSE fallback's requests fail then, and Chromium logs each. */
  let outage = false

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true })
    ;[server, site, browser] = await Promise.all([startServer({ env: { RATE_LIMIT_PER_SEC: '0' } }), serveExample(), launchChromium()])
    proxy = await startProxy(server.port)
  }, 60_000)

  afterAll(async () => {
    await browser?.close().catch(() => {})
    proxy?.close()
    site?.stop(true)
    await server?.stop()
  })

  /** The example as `user`, on `ws` (the server, or the proxy in front of it), once its room is live. */
  async function open(user: string, name: string, ws: string): Promise<Page> {
    const page = await (await browser.newContext({ viewport: { width: 900, height: 600 } })).newPage()
    page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`))
    page.on('console', (m) => {
      // A refused reconnect while the proxy blocks is expected (the WebSocket's, and the SSE
      // fallback's requests: `Failed to load resource: net::ERR_…`); anything else React or the app logs is not.
      const refused = m.text().includes('WebSocket connection') || (outage && m.text().startsWith('Failed to load resource: net::ERR_'))
      if (m.type() === 'error' && !refused) errors.push(`${name} console: ${m.text()}`)
    })
    const q = new URLSearchParams({ ws, user, name, rooms: 'team,random' })
    await page.goto(`${site.url}?${q}`, SLOW)
    await page.locator('#status[data-state="open"]').waitFor(SLOW)
    await page.locator('.room[data-room="team"][data-status="ready"]').waitFor(SLOW)
    return page
  }
  const bodies = (page: Page) => page.locator('.room .msg .body').allTextContents()
  const say = async (page: Page, text: string) => {
    await page.fill('#text', text)
    await page.press('#text', 'Enter')
  }
  /** Waits until the page's room shows exactly these bodies, in this order. */
  const shows = async (page: Page, expected: string[]) => {
    const end = Date.now() + SLOW.timeout
    let got: string[] = []
    while (Date.now() < end) {
      got = await bodies(page)
      if (got.length >= expected.length) break
      await Bun.sleep(50)
    }
    expect(got).toEqual(expected)
  }
  const unreadOf = (page: Page, room: string) => page.locator(`button.conversation[data-room="${room}"] .unread`)

  test('two users: order, typing, unread badges, one row rendered per new message, and a dropped connection resumed with nothing lost', async () => {
    const alice = await open('alice', 'Alice', server.ws)
    const bob = await open('bob', 'Bob', proxy.ws)

    // Messages appear in order on both pages, each once.
    for (const text of ['one', 'two', 'three']) await say(alice, text)
    await shows(alice, ['one', 'two', 'three'])
    await shows(bob, ['one', 'two', 'three'])
    const seqs = await bob.locator('.room .msg').evaluateAll((els) => els.map((e) => Number((e as HTMLElement).dataset.seq)))
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b))

    // A new message renders its own row only: the rows already there keep their render count.
    const renders = () => bob.locator('.room .msg').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.renders))
    const before = await renders()
    await say(alice, 'four')
    await shows(bob, ['one', 'two', 'three', 'four'])
    expect((await renders()).slice(0, 3)).toEqual(before)

    // A reaction re-renders the row it is on, on both pages.
    await bob.locator('.room .msg', { hasText: 'two' }).locator('button.react').click()
    await alice
      .locator('.room .msg', { hasText: 'two' })
      .locator('.reactions button[data-reaction="👍"]', { hasText: '👍 1' })
      .waitFor(SLOW)
    const afterReact = await renders()
    expect(afterReact[0]).toBe(before[0])
    expect(afterReact[2]).toBe(before[2])

    // Bob types: Alice sees it; his message ends it.
    await bob.fill('#text', 'I am wri')
    await alice.locator('.typing', { hasText: 'Bob is typing…' }).waitFor(SLOW)
    await bob.press('#text', 'Enter')
    await shows(alice, ['one', 'two', 'three', 'four', 'I am wri'])
    expect(await alice.locator('.typing').textContent()).toBe('')

    // Bob looks at another room: what Alice writes in team counts on his badge, and clears when he opens it.
    await bob.locator('button.conversation[data-room="random"]').click()
    await bob.locator('.room[data-room="random"][data-status="ready"]').waitFor(SLOW)
    await say(alice, 'five')
    await unreadOf(bob, 'team').filter({ hasText: /^1$/ }).waitFor(SLOW)
    await say(alice, 'six')
    await unreadOf(bob, 'team').filter({ hasText: /^2$/ }).waitFor(SLOW)
    expect(await bob.locator('.badge.total').textContent()).toBe('2')
    expect(await unreadOf(alice, 'team').count()).toBe(0) // her own messages are not unread for her
    await bob.screenshot({ path: join(ARTIFACTS, 'react-unread.png') })
    await bob.locator('button.conversation[data-room="team"]').click()
    await shows(bob, ['one', 'two', 'three', 'four', 'I am wri', 'five', 'six'])
    await unreadOf(bob, 'team').waitFor({ state: 'detached', ...SLOW })
    expect(await bob.locator('.badge.total').count()).toBe(0)

    // Bob's connection drops and stays down while Alice writes; back, his page has everything, in order, once.
    outage = true
    proxy.block()
    proxy.drop()
    await bob.locator('#status:not([data-state="open"])').waitFor(SLOW)
    await say(alice, 'while you were away')
    await say(alice, 'and another')
    await shows(alice, ['one', 'two', 'three', 'four', 'I am wri', 'five', 'six', 'while you were away', 'and another'])
    proxy.unblock()
    await bob.locator('#status[data-state="open"]').waitFor(SLOW)
    outage = false
    await shows(bob, ['one', 'two', 'three', 'four', 'I am wri', 'five', 'six', 'while you were away', 'and another'])
    expect(await bob.locator('.room[data-room="team"]').getAttribute('data-status')).toBe('ready')
    // He was looking at the room: what came while away is read too.
    await unreadOf(bob, 'team').waitFor({ state: 'detached', ...SLOW })
    await bob.screenshot({ path: join(ARTIFACTS, 'react-after-reconnect.png') })

    // Bob replies to "one"; Alice edits "one" and deletes "three": both pages show the reply's quote follow.
    await bob.locator('.room .msg', { hasText: 'one' }).first().locator('button.reply').click()
    await bob.locator('.replying', { hasText: 'Replying to Alice: one' }).waitFor(SLOW)
    await say(bob, 'count me in')
    const reply = (page: Page) => page.locator('.room .msg', { hasText: 'count me in' })
    await reply(alice).locator('.quote', { hasText: 'Alice: one' }).waitFor(SLOW)
    const one = alice.locator('.room .msg', { has: alice.locator('.body', { hasText: /^one$/ }) })
    await one.locator('button.edit').click()
    await alice.fill('.msg .edit-form input', 'one (at noon)')
    await alice.press('.msg .edit-form input', 'Enter')
    await alice.locator('.room .msg', { hasText: 'three' }).locator('button.delete').click()
    for (const page of [alice, bob]) {
      await reply(page).locator('.quote', { hasText: 'Alice: one (at noon)' }).waitFor(SLOW)
      await page.locator('.room .msg.deleted .body', { hasText: 'message deleted' }).waitFor(SLOW)
      await page.locator('.room .msg .edited').first().waitFor(SLOW)
      await shows(page, [
        'one (at noon)',
        'two',
        'message deleted',
        'four',
        'I am wri',
        'five',
        'six',
        'while you were away',
        'and another',
        'count me in',
      ])
    }
    await alice.screenshot({ path: join(ARTIFACTS, 'react-lifecycle.png') })
    expect(errors).toEqual([])
  }, 120_000)
})
