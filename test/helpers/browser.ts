import { test } from 'bun:test'
import { existsSync } from 'node:fs'
import { chromium } from 'playwright-core'
import type { Browser, Page } from 'playwright-core'

/** Debian's chromium (apt-get install chromium): the only browser the tests use; nothing is downloaded. */
export const CHROMIUM = '/usr/bin/chromium'
export const haveChromium = existsSync(CHROMIUM)

/**
 * Call at a browser test file's top: without Chromium, with CI=true a failing test (a missing
 * browser is never a silent skip in CI), else a printed reason (the file's suites skip).
 */
export function requireChromium(what: string) {
  if (haveChromium) return
  if (process.env.CI === 'true')
    test(`chromium is installed for the ${what}`, () => {
      throw new Error(`${CHROMIUM} is missing: CI must install Debian's chromium (apt-get install -y chromium)`)
    })
  else console.log(`${what} skipped: ${CHROMIUM} is missing (apt-get install -y chromium; with CI=true this fails)`)
}

/** Headless, no sandbox, nothing in the background that reaches the network. */
export const launchChromium = () =>
  chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 20_000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  })

/**
 * The demo page as `name`, in a context of its own, once its socket is open. Page errors and
 * dialogs go into `errors` (a test ends by expecting it empty); `wait` only bounds the waits.
 */
export async function openDemo(
  browser: Browser,
  url: string,
  name: string,
  errors: string[],
  o: { viewport?: { width: number; height: number }; wait?: { timeout: number } } = {},
): Promise<Page> {
  const wait = o.wait ?? { timeout: 15_000 }
  const ctx = await browser.newContext({ viewport: o.viewport ?? { width: 1000, height: 700 } })
  const page = await ctx.newPage()
  page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`))
  page.on('dialog', (d) => {
    errors.push(`${name}: dialog ${d.message()}`)
    void d.dismiss().catch(() => {})
  })
  await page.goto(`${url}/?name=${encodeURIComponent(name)}`, wait)
  await page.locator('#status[data-state="open"]').waitFor(wait)
  return page
}
