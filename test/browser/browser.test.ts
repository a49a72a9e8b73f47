/**
 * The demo page in a real browser: Debian's Chromium driven by playwright-core.
 * No Chromium at /usr/bin/chromium: with CI=true that is a failure, else the suite is skipped
 * with a printed reason.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { haveChromium, launchChromium, openDemo, requireChromium } from '../helpers/browser'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { ROOT, startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

const ARTIFACTS = join(ROOT, 'test', 'artifacts')
const WAIT = { timeout: 8000 }

requireChromium('browser tests')

describe.skipIf(!haveChromium)('demo page in Chromium', () => {
  let server: RunningServer
  let port: number
  let browser: Browser
  const contexts: BrowserContext[] = []
  const dialogs: string[] = []
  const pageErrors: string[] = []
  let alice: Page
  let bob: Page

  async function open(name: string): Promise<Page> {
    const ctx = await browser.newContext({ viewport: { width: 1000, height: 640 } })
    contexts.push(ctx)
    const page = await ctx.newPage()
    page.on('dialog', (d) => {
      dialogs.push(`${name}: ${d.type()} ${d.message()}`)
      void d.dismiss().catch(() => {})
    })
    page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`))
    await page.goto(`http://127.0.0.1:${port}/?name=${encodeURIComponent(name)}`, WAIT)
    await page.locator('#status[data-state="open"]').waitFor(WAIT)
    return page
  }

  const bodies = (page: Page) => page.locator('.room-log:not([hidden]) .msg .body').allTextContents()
  const message = (page: Page, text: string) => page.locator('.room-log:not([hidden]) .msg .body').filter({ hasText: text })

  async function say(page: Page, text: string) {
    await page.fill('#text', text)
    await page.press('#text', 'Enter')
  }

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true })
    server = await startServer({ env: { SHUTDOWN_GRACE_S: '1' } })
    port = server.port
    browser = await launchChromium()
  }, 30_000)

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => {})
    await browser?.close().catch(() => {})
    await server?.stop()
  })

  test("two users chat: each sees the other's messages, presence and typing", async () => {
    alice = await open('Alice')
    bob = await open('Bob')
    await alice.locator('#users li[data-user="bob"]').waitFor(WAIT)
    await bob.locator('#users li[data-user="alice"]').waitFor(WAIT)
    expect(await alice.locator('#users li').allTextContents()).toEqual(['Alice', 'Bob'])

    await bob.fill('#text', 'Hel')
    await bob.locator('#text').pressSequentially('lo', { delay: 20 })
    await alice.locator('#typing', { hasText: 'Bob is typing…' }).waitFor(WAIT)
    await bob.press('#text', 'Enter')
    await message(alice, 'Hello').waitFor(WAIT)
    await say(alice, 'Hi Bob, how are you?')
    await message(bob, 'Hi Bob, how are you?').waitFor(WAIT)
    expect(await bodies(bob)).toEqual(['Hello', 'Hi Bob, how are you?'])
    expect(await alice.locator('.msg.mine .body').allTextContents()).toEqual(['Hi Bob, how are you?'])
    expect(await alice.locator('#rooms li[aria-current="true"]').textContent()).toBe('# general')
  })

  test('a reloaded page gets its history back', async () => {
    await alice.reload(WAIT)
    await alice.locator('#status[data-state="open"]').waitFor(WAIT)
    await message(alice, 'Hi Bob, how are you?').waitFor(WAIT)
    expect(await bodies(alice)).toEqual(['Hello', 'Hi Bob, how are you?'])
    await alice.locator('#users li[data-user="bob"]').waitFor(WAIT)
  })

  test('a body with HTML is shown as text and runs nothing', async () => {
    const evil = '<img src=x onerror=alert(1)>'
    const evil2 = '<script>alert(2)</script><b>bold?</b>'
    await say(bob, evil)
    await say(bob, evil2)
    await message(alice, 'bold?').waitFor(WAIT)
    const shown = await bodies(alice)
    expect(shown.slice(-2)).toEqual([evil, evil2])
    expect(await alice.locator('#messages img, #messages script, #messages b').count()).toBe(0)
    expect(await bob.locator('#messages img, #messages script, #messages b').count()).toBe(0)
    await alice.waitForTimeout(500) // an onerror would have fired by now
    expect(dialogs).toEqual([])
  })

  test('the page survives a server restart: it reconnects and chat goes on', async () => {
    await server.stop('SIGTERM')
    await alice.locator('#status[data-state="reconnecting"]').waitFor(WAIT)
    server = await startServer({ env: { PORT: String(port), SHUTDOWN_GRACE_S: '1' } })
    await alice.locator('#status[data-state="open"]').waitFor({ timeout: 15_000 })
    await bob.locator('#status[data-state="open"]').waitFor({ timeout: 15_000 })
    // The memory broker forgot the room: the page marks the new conversation.
    await alice.locator('.room-log:not([hidden]) .divider').waitFor(WAIT)
    await alice.locator('#users li[data-user="bob"]').waitFor(WAIT)
    await say(bob, 'back after the restart')
    await message(alice, 'back after the restart').waitFor(WAIT)
    // The old messages stay on the page above the divider, the new one below it.
    const all = await alice.locator('.room-log:not([hidden]) > li').allTextContents()
    expect(all.at(-1)).toContain('back after the restart')
    expect(all.findIndex((t) => t.includes('server restarted'))).toBeLessThan(all.length - 1)
    await bob.fill('#text', 'typing after restart')
    await alice.screenshot({ path: join(ARTIFACTS, 'demo-alice.png') })
    await bob.screenshot({ path: join(ARTIFACTS, 'demo-bob.png') })
    expect(pageErrors).toEqual([])
    expect(dialogs).toEqual([])
  }, 30_000)
})

describe.skipIf(!haveChromium)('conversations on the demo page in Chromium', () => {
  let server: RunningServer
  let browser: Browser
  const pageErrors: string[] = []
  /** Waits only: the machine may be busy; nothing here is a timing assertion. */
  const SLOW = { timeout: 15_000 }

  const open = (name: string): Promise<Page> =>
    openDemo(browser, server.url, name, pageErrors, { viewport: { width: 1000, height: 640 }, wait: SLOW })
  const shown = (page: Page) => page.locator('.room-log:not([hidden]) .msg .body').allTextContents()

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true })
    server = await startServer({ env: { SHUTDOWN_GRACE_S: '1' } })
    browser = await launchChromium()
  }, 30_000)

  afterAll(async () => {
    await browser?.close().catch(() => {})
    await server?.stop()
  })

  test('Bob is offline, Alice writes to him; Bob sees the conversation with 1 unread, opens it, and Alice sees it seen', async () => {
    // Bob has been here before: Alice finds him in "online" and opens a conversation with him.
    const bobBefore = await open('Bob')
    const alice = await open('Alice')
    await alice.locator('#users li[data-user="bob"]').click()
    await alice.locator('#rooms li[data-kind="direct"][aria-current="true"]', { hasText: '@ Bob' }).waitFor(SLOW)
    await bobBefore.context().close() // Bob goes offline
    await alice.locator('#users li[data-user="bob"]').waitFor({ state: 'detached', ...SLOW })

    await alice.fill('#text', 'Hi Bob, are you there?')
    await alice.press('#text', 'Enter')
    await alice.locator('.room-log:not([hidden]) .msg.mine .body', { hasText: 'Hi Bob, are you there?' }).waitFor(SLOW)
    const aliceEntry = alice.locator('#rooms li[data-kind="direct"]')
    expect(await aliceEntry.count()).toBe(1) // the draft became the conversation
    expect(await aliceEntry.getAttribute('data-room')).toMatch(/^dm:[0-9a-f]{40}$/)
    expect(await aliceEntry.getAttribute('aria-current')).toBe('true')
    expect(await aliceEntry.textContent()).toBe('@ Bob')

    // Bob comes back: the conversation is there, with 1 unread, named after Alice; general is open.
    const bob = await open('Bob')
    const bobEntry = bob.locator('#rooms li[data-kind="direct"]')
    await bobEntry.locator('.unread', { hasText: '1' }).waitFor(SLOW)
    await bobEntry.locator('.name', { hasText: '@ Alice' }).waitFor(SLOW) // named once the conversation list is in
    expect(await bobEntry.getAttribute('data-room')).toBe(await aliceEntry.getAttribute('data-room'))
    expect(await bob.locator('#rooms li[aria-current="true"]').textContent()).toBe('# general')
    expect(await bob.title()).toBe('(1) chat-server')
    expect(await alice.locator('.msg .seen').count()).toBe(0)
    await bob.screenshot({ path: join(ARTIFACTS, 'conversations-bob-unread.png') })

    // He opens it: the message is there, the badge goes, and Alice's page shows it seen.
    await bobEntry.click()
    await bob.locator('.room-log:not([hidden]) .msg .body', { hasText: 'Hi Bob, are you there?' }).waitFor(SLOW)
    const seen = alice.locator('.room-log:not([hidden]) .msg.mine .seen')
    await seen.waitFor(SLOW)
    expect(await seen.textContent()).toBe('Seen by Bob')
    expect(await bobEntry.locator('.unread').count()).toBe(0)
    await bob.waitForFunction(() => document.title === 'chat-server', undefined, SLOW)
    await alice.screenshot({ path: join(ARTIFACTS, 'conversations-alice-seen.png') })

    // Bob answers (HTML stays text): Alice reads it in the open conversation and Bob sees that.
    const reply = '<b>Yes</b> I am back'
    await bob.fill('#text', reply)
    await bob.press('#text', 'Enter')
    await alice.locator('.room-log:not([hidden]) .msg .body', { hasText: 'I am back' }).waitFor(SLOW)
    expect(await shown(alice)).toEqual(['Hi Bob, are you there?', reply])
    expect(await alice.locator('#messages b').count()).toBe(0)
    await seen.waitFor({ state: 'detached', ...SLOW }) // "seen" is for the last message only
    await bob.locator('.room-log:not([hidden]) .msg.mine .seen', { hasText: 'Seen by Alice' }).waitFor(SLOW)
    expect(await shown(bob)).toEqual(['Hi Bob, are you there?', reply])
    await bob.screenshot({ path: join(ARTIFACTS, 'conversations-bob-reply-seen.png') })
    expect(pageErrors).toEqual([])
  }, 90_000)
})

describe('demo page switch', () => {
  test('ENABLE_DEMO=false answers 404 at /; on by default, with a CSP', async () => {
    const off = await startServer({ env: { ENABLE_DEMO: 'false' } })
    const on = await startServer()
    try {
      expect((await fetch(`${off.url}/`)).status).toBe(404)
      expect((await fetch(`${off.url}/demo/app.js`)).status).toBe(404)
      const page = await fetch(`${on.url}/`)
      expect(page.status).toBe(200)
      expect(page.headers.get('content-type')).toContain('text/html')
      expect(page.headers.get('content-security-policy')).toContain("script-src 'self'")
      expect(await page.text()).toContain('/demo/app.js')
      const js = await fetch(`${on.url}/demo/app.js`)
      expect(js.headers.get('content-type')).toContain('javascript')
      expect(await js.text()).toContain('reconnecting')
    } finally {
      await Promise.all([off.stop(), on.stop()])
    }
  })

  test('the compiled binary serves the page with no files beside it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chat-server-bin-'))
    const out = join(dir, 'chat-server')
    const build = Bun.spawnSync([process.execPath, 'build', '--compile', join(ROOT, 'src/main.ts'), '--outfile', out], {
      cwd: ROOT,
      stdout: 'pipe',
      stderr: 'pipe',
    })
    expect(build.exitCode, build.stderr.toString()).toBe(0)
    const bin = await startServer({ command: [out] }) // runs in another empty directory
    try {
      const page = await fetch(`${bin.url}/`)
      expect(page.status).toBe(200)
      expect(await page.text()).toContain('<div id="messages"')
      const js = await fetch(`${bin.url}/demo/app.js`)
      expect(js.status).toBe(200)
      expect(await js.text()).toContain('reconnecting')
      expect((await fetch(`${bin.url}/demo/style.css`)).status).toBe(200)
    } finally {
      await bin.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
