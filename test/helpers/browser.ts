import { test } from 'bun:test'
import { existsSync } from 'node:fs'
import { chromium } from 'playwright-core'

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
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  })
