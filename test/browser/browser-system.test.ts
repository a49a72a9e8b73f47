/**
 * The demo page shows the server's own messages (from.system) as such, and a person who calls
 * themselves "Server" is not shown as the server. Debian's Chromium via playwright-core, as in
 * test/browser/browser.test.ts (missing Chromium: a failure with CI=true, else skipped).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { haveChromium, launchChromium, requireChromium } from '../helpers/browser'
import type { Browser } from 'playwright-core'
import { ROOT, startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

const WAIT = { timeout: 8000 }
const API_KEY = 'browser-system-api-key-0123456789'

requireChromium('browser system-message tests')

describe.skipIf(!haveChromium)('system messages on the demo page', () => {
  let server: RunningServer
  let browser: Browser

  beforeAll(async () => {
    server = await startServer({ env: { API_KEY } })
    browser = await launchChromium()
  }, 30_000)
  afterAll(async () => {
    await browser?.close().catch(() => {})
    await server?.stop()
  })

  test("an API message is marked as the server's; a user named Server is an ordinary user", async () => {
    const page = await (await browser.newContext({ viewport: { width: 900, height: 500 } })).newPage()
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(e.message))
    await page.goto(`http://127.0.0.1:${server.port}/?name=Server`, WAIT)
    await page.locator('#status[data-state="open"]').waitFor(WAIT)
    await page.fill('#text', 'I am a person')
    await page.press('#text', 'Enter')
    await page.locator('.msg .body', { hasText: 'I am a person' }).waitFor(WAIT)
    const res = await fetch(`${server.url}/api/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ body: 'Maintenance tonight' }),
    })
    expect(res.status).toBe(200)
    const notice = page.locator('.msg', { hasText: 'Maintenance tonight' })
    await notice.waitFor(WAIT)
    expect(await notice.getAttribute('class')).toContain('system')
    expect(await notice.locator('.from').textContent()).toBe('server (system)')
    const mine = page.locator('.msg', { hasText: 'I am a person' })
    expect(await mine.getAttribute('class')).not.toContain('system')
    expect(await mine.locator('.from').textContent()).toBe('Server')
    mkdirSync(join(ROOT, 'test', 'artifacts'), { recursive: true })
    await page.screenshot({ path: join(ROOT, 'test', 'artifacts', 'demo-system-message.png') })
    expect(errors).toEqual([])
  }, 30_000)
})
