/**
 * Attachments on the demo page in Debian's Chromium: Alice pastes an image and drops another,
 * Bob sees them inline (loaded, through his own credentials); a text file sent with the
 * button shows as a link. No Chromium: with CI=true a failure, else skipped with a reason.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { haveChromium, launchChromium, openDemo, requireChromium } from '../helpers/browser'
import { startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

const WAIT = { timeout: 15_000 }
const PNG_B64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='

requireChromium('attachment browser tests')

describe.skipIf(!haveChromium)('attachments on the demo page in Chromium', () => {
  let server: RunningServer
  let browser: Browser
  let alice: Page
  let bob: Page
  const errors: string[] = []

  beforeAll(async () => {
    server = await startServer({ env: { SHUTDOWN_GRACE_S: '1', UPLOAD_DIR: mkdtempSync(join(tmpdir(), 'uploads-browser-')) } })
    browser = await launchChromium()
    alice = await openDemo(browser, server.url, 'Alice', errors)
    bob = await openDemo(browser, server.url, 'Bob', errors)
  }, 60_000)
  afterAll(async () => {
    await browser?.close().catch(() => {})
    await server?.stop()
  })

  /** Bob's images that were drawn (their bytes loaded and decoded). */
  const loadedImages = (page: Page) =>
    page.evaluate(() =>
      [...document.querySelectorAll<HTMLImageElement>('.room-log:not([hidden]) img.attachment-image')]
        .filter((i) => i.complete && i.naturalWidth > 0)
        .map((i) => i.alt),
    )

  test('an image Alice pastes is shown inline to Bob', async () => {
    await alice.evaluate((b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))
      const dt = new DataTransfer()
      dt.items.add(new File([bytes], 'pasted.png', { type: 'image/png' }))
      document.getElementById('text')!.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }))
    }, PNG_B64)
    await bob.locator('.room-log:not([hidden]) img.attachment-image[alt="pasted.png"]').waitFor(WAIT)
    await bob.waitForFunction(
      () =>
        [...document.querySelectorAll<HTMLImageElement>('img.attachment-image')].some((i) => i.alt === 'pasted.png' && i.naturalWidth > 0),
      undefined,
      WAIT,
    )
    expect(await loadedImages(bob)).toContain('pasted.png')
  })

  test('an image Alice drops is shown inline to Bob', async () => {
    await alice.evaluate((b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))
      const dt = new DataTransfer()
      dt.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }))
      document.getElementById('messages')!.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }))
    }, PNG_B64)
    await bob.waitForFunction(
      () =>
        [...document.querySelectorAll<HTMLImageElement>('img.attachment-image')].some((i) => i.alt === 'dropped.png' && i.naturalWidth > 0),
      undefined,
      WAIT,
    )
    expect(await loadedImages(bob)).toEqual(['pasted.png', 'dropped.png'])
  })

  test('a text file sent with the button shows as a link that Bob can fetch', async () => {
    await alice.locator('#file').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('meeting notes\n') })
    const link = bob.locator('.room-log:not([hidden]) a.attachment', { hasText: 'notes.txt' })
    await link.waitFor(WAIT)
    await bob.waitForFunction(
      () =>
        [...document.querySelectorAll<HTMLAnchorElement>('a.attachment')].some(
          (a) => a.textContent?.startsWith('notes.txt') && a.href.includes('/api/uploads/'),
        ),
      undefined,
      WAIT,
    )
    const href = await link.getAttribute('href')
    const fetched = await bob.evaluate(async (u) => {
      const r = await fetch(u!)
      return { status: r.status, text: await r.text(), disposition: r.headers.get('content-disposition') }
    }, href)
    expect(fetched).toMatchObject({ status: 200, text: 'meeting notes\n' })
    expect(fetched.disposition).toStartWith('attachment;')
    expect(await bob.locator('.room-log:not([hidden]) img.attachment-image').count()).toBe(2)
    expect(errors).toEqual([])
  })
})
