/**
 * Polls and slow mode on the demo page in a real browser (Debian's Chromium driven by
 * playwright-core): Alice posts a poll with `/poll`, Bob votes and both see the bars move live;
 * a vote moved moves them again; a slow-mode room shows Bob's countdown. No Chromium at
 * /usr/bin/chromium: with CI=true that is a failure, else the suite is skipped with a printed reason.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { haveChromium, launchChromium, openDemo, requireChromium } from '../helpers/browser'
import type { Browser, Page } from 'playwright-core'
import { startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

/** Waits only: the machine may be busy; nothing here is a timing assertion. */
const SLOW = { timeout: 15_000 }
const API_KEY = 'browser-polls-key-0123456789abcdef'

requireChromium('browser poll tests')

describe.skipIf(!haveChromium)('polls on the demo page in Chromium', () => {
  let server: RunningServer
  let browser: Browser
  const pageErrors: string[] = []

  const open = (name: string): Promise<Page> =>
    openDemo(browser, server.url, name, pageErrors, { viewport: { width: 1000, height: 700 }, wait: SLOW })
  const poll = (page: Page) => page.locator('.room-log:not([hidden]) .poll').last()
  /** Each option's text, vote count and bar width (%), as drawn. */
  const bars = (page: Page) =>
    poll(page)
      .locator('.option')
      .evaluateAll((bs) =>
        bs.map((b) => [
          b.querySelector('.text')!.textContent,
          Number(b.querySelector('.votes')!.textContent),
          Number.parseInt((b.querySelector('.bar') as HTMLElement).style.width, 10),
        ]),
      )
  const barsAre = async (page: Page, want: unknown) => {
    const until = Date.now() + SLOW.timeout
    while (JSON.stringify(await bars(page)) !== JSON.stringify(want) && Date.now() < until) await page.waitForTimeout(50)
    expect(await bars(page)).toEqual(want as never)
  }

  beforeAll(async () => {
    server = await startServer({ env: { API_KEY, SHUTDOWN_GRACE_S: '1' } })
    browser = await launchChromium()
  }, 30_000)

  afterAll(async () => {
    await browser?.close().catch(() => {})
    await server?.stop()
  })

  test('a poll: the bars follow the votes live on both pages; a moved vote moves them; the author closes it', async () => {
    const alice = await open('Alice')
    const bob = await open('Bob')
    await alice.fill('#text', '/poll Lunch? | pizza | sushi')
    await alice.press('#text', 'Enter')
    await poll(bob).waitFor(SLOW)
    await barsAre(bob, [
      ['pizza', 0, 0],
      ['sushi', 0, 0],
    ])
    await poll(bob).locator('.option', { hasText: 'sushi' }).click()
    await barsAre(alice, [
      ['pizza', 0, 0],
      ['sushi', 1, 100],
    ])
    await poll(alice).locator('.option', { hasText: 'pizza' }).click()
    await barsAre(bob, [
      ['pizza', 1, 50],
      ['sushi', 1, 50],
    ])
    // Bob moves his vote: the replaced vote leaves sushi.
    await poll(bob).locator('.option', { hasText: 'pizza' }).click()
    await barsAre(alice, [
      ['pizza', 2, 100],
      ['sushi', 0, 0],
    ])
    expect(await poll(bob).locator('.option[aria-pressed="true"] .text').allTextContents()).toEqual(['pizza'])
    await poll(alice).locator('button.close-poll').click()
    await poll(bob).locator('.poll-foot', { hasText: 'closed' }).waitFor(SLOW)
    expect(await poll(bob).locator('.option:disabled').count()).toBe(2)
    // After a reload the page shows the poll as it stands, with Bob's own vote.
    await bob.reload()
    await poll(bob).waitFor(SLOW)
    await barsAre(bob, [
      ['pizza', 2, 100],
      ['sushi', 0, 0],
    ])
    expect(await poll(bob).locator('.option[aria-pressed="true"] .text').allTextContents()).toEqual(['pizza'])
    expect(pageErrors).toEqual([])
  }, 60_000)

  test('slow mode: after a message, a member sees the countdown and a too-early message is refused', async () => {
    const bob = await open('Bobby')
    const put = await fetch(`${server.url}/api/rooms/general/settings`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ slow_mode_s: 60 }),
    })
    expect(put.status).toBe(200)
    await bob.locator('.divider', { hasText: 'slow mode: one message every 60 s' }).first().waitFor(SLOW)
    await bob.fill('#text', 'first')
    await bob.press('#text', 'Enter')
    await bob.locator('#send-form .slow-mode', { hasText: /slow mode: \d+ s/ }).waitFor(SLOW)
    await bob.fill('#text', 'second')
    await bob.press('#text', 'Enter')
    const refused = bob.locator('.divider', { hasText: 'not sent' }).last()
    await refused.waitFor(SLOW)
    expect(await refused.textContent()).toContain('slow mode')
    // The message was not shown as sent.
    expect(await bob.locator('.room-log:not([hidden]) .msg .body', { hasText: 'second' }).count()).toBe(0)
  }, 60_000)
})
