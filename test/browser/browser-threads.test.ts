/** The demo page's threads panel in Chromium: a thread's unread replies, read with a click. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { haveChromium, launchChromium, requireChromium } from '../helpers/browser'
import type { Browser, Page } from 'playwright-core'
import { startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

const WAIT = { timeout: 10_000 }
requireChromium('browser threads test')

describe.skipIf(!haveChromium)('demo threads panel in Chromium', () => {
  let server: RunningServer
  let browser: Browser
  const errors: string[] = []

  async function open(name: string): Promise<Page> {
    const page = await (await browser.newContext({ viewport: { width: 1000, height: 640 } })).newPage()
    page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`))
    await page.goto(`http://127.0.0.1:${server.port}/?name=${name}&user=${name}`, WAIT)
    await page.locator('#status[data-state="open"]').waitFor(WAIT)
    return page
  }

  beforeAll(async () => {
    server = await startServer({ env: { SHUTDOWN_GRACE_S: '1' } })
    browser = await launchChromium()
  }, 30_000)
  afterAll(async () => {
    await browser?.close()
    await server?.stop()
  })

  test('a reply by another user shows the thread with 1 unread; a click reads it', async () => {
    const alice = await open('alice')
    const bob = await open('bob')
    const root = await alice.evaluate(async () => (await (globalThis as any).chat.send('general', 'thread root')).msg as string)
    await bob.evaluate(async (msg) => (globalThis as any).chat.reply('general', msg, 'a reply'), root)
    const entry = alice.locator('#threads li.thread').filter({ hasText: 'thread root' })
    await entry.locator('.unread').filter({ hasText: '1' }).waitFor(WAIT)
    expect(await entry.locator('.count').textContent()).toContain('1')
    await entry.click()
    await alice.locator('#threads li.thread .unread').waitFor({ state: 'detached', timeout: 10_000 })
    expect(errors).toEqual([])
  }, 60_000)
})
