/**
 * Message lifecycle and moderation on the demo page in a real browser (Debian's Chromium driven
 * by playwright-core): edit, react, reply seen live by the other user; a moderator (role set
 * through the API) deletes someone else's message for everyone, for good, and mutes a user.
 * Then the admin page: a role, a ban seen by the banned user's page, and the audit log.
 * No Chromium at /usr/bin/chromium: with CI=true that is a failure, else the suite is skipped
 * with a printed reason (as in browser.test.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { haveChromium, launchChromium, openDemo, requireChromium } from '../helpers/browser'
import type { Browser, Page } from 'playwright-core'
import { ROOT, startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { freshDatabase } from '../helpers/postgres'
import { needService } from '../helpers/services'

const ARTIFACTS = join(ROOT, 'test', 'artifacts')
/** Waits only: the machine may be busy; nothing here is a timing assertion. */
const SLOW = { timeout: 15_000 }
const API_KEY = 'browser-lifecycle-key-0123456789'

requireChromium('browser lifecycle tests')

describe.skipIf(!haveChromium)('message lifecycle on the demo page in Chromium', () => {
  let server: RunningServer
  let browser: Browser
  const pageErrors: string[] = []

  const open = (name: string): Promise<Page> =>
    openDemo(browser, server.url, name, pageErrors, { viewport: { width: 1000, height: 700 }, wait: SLOW })
  const log = (page: Page) => page.locator('.room-log:not([hidden])')
  /** The message by `from` whose body (or tombstone) has `text`. */
  const msg = (page: Page, from: string, text: string) =>
    log(page).locator(`.msg[data-from="${from}"]`, { has: page.locator('.body', { hasText: text }) })
  const bodies = (page: Page) => log(page).locator('.msg .body').allTextContents()

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true })
    server = await startServer({ env: { API_KEY, SHUTDOWN_GRACE_S: '1' } })
    browser = await launchChromium()
  }, 30_000)

  afterAll(async () => {
    await browser?.close().catch(() => {})
    await server?.stop()
  })

  test('Alice edits and reacts, Bob sees both live and replies; a moderator deletes her message for everyone, and it stays deleted after a reload', async () => {
    const role = await fetch(`${server.url}/api/rooms/general/roles/mo`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ role: 'moderator' }),
    })
    expect(role.status).toBe(200)
    const alice = await open('Alice')
    const bob = await open('Bob')
    await alice.fill('#text', 'helo wrld')
    await alice.press('#text', 'Enter')
    await msg(bob, 'alice', 'helo wrld').waitFor(SLOW)

    // Alice edits her message: Bob sees the new text and "(edited)".
    await msg(alice, 'alice', 'helo wrld').locator('button.edit').click()
    await alice.fill('.msg .edit-form input', 'hello world')
    // A reaction that comes in meanwhile leaves her edit open, with what she typed.
    await msg(bob, 'alice', 'helo wrld').locator('.actions button.react[data-reaction="😂"]').click()
    await log(alice).locator('.reactions button[data-reaction="😂"]', { hasText: '😂 1' }).waitFor(SLOW)
    expect(await alice.inputValue('.msg .edit-form input')).toBe('hello world')
    await alice.press('.msg .edit-form input', 'Enter')
    const onBob = msg(bob, 'alice', 'hello world')
    await onBob.locator('.edited', { hasText: '(edited)' }).waitFor(SLOW)
    expect(await bodies(bob)).toEqual(['hello world'])

    // She reacts: Bob sees the count; her own reaction is highlighted on her page only.
    await msg(alice, 'alice', 'hello world').locator('.actions button.react[data-reaction="👍"]').click()
    const bobsCount = onBob.locator('.reactions button[data-reaction="👍"]')
    await bobsCount.filter({ hasText: '👍 1' }).waitFor(SLOW)
    expect(await bobsCount.getAttribute('aria-pressed')).toBe('false')
    const alicesCount = msg(alice, 'alice', 'hello world').locator('.reactions button[data-reaction="👍"]')
    await alicesCount.filter({ hasText: '👍 1' }).waitFor(SLOW)
    expect(await alicesCount.getAttribute('aria-pressed')).toBe('true')
    // Bob adds his by clicking the count: 2 on both pages.
    await bobsCount.click()
    await alicesCount.filter({ hasText: '👍 2' }).waitFor(SLOW)
    await bobsCount.filter({ hasText: '👍 2' }).waitFor(SLOW)
    expect(await bobsCount.getAttribute('aria-pressed')).toBe('true')

    // Bob replies: the reply quotes her message. He cannot edit or delete hers, nor moderate.
    expect(await onBob.locator('button.edit, button.delete, button.mute, button.ban').count()).toBe(0)
    await onBob.locator('button.reply').click()
    await bob.locator('#replying', { hasText: 'Replying to Alice: hello world' }).waitFor(SLOW)
    await bob.fill('#text', 'nice one')
    await bob.press('#text', 'Enter')
    const reply = msg(alice, 'bob', 'nice one')
    await reply.locator('.quote', { hasText: 'Alice: hello world' }).waitFor(SLOW)
    await alice.screenshot({ path: join(ARTIFACTS, 'lifecycle-alice.png') })

    // The moderator's page learns its role and offers delete, mute and ban on others' messages.
    const mo = await open('Mo')
    const onMo = msg(mo, 'alice', 'hello world')
    await onMo.locator('button.delete').waitFor(SLOW)
    expect(await onMo.locator('button.mute').count()).toBe(1)
    expect(await onMo.locator('button.ban').count()).toBe(1)
    expect(await onMo.locator('button.edit').count()).toBe(0) // not his to edit
    // History shows the current state: edited, two reactions (none of them Mo's).
    expect(await onMo.locator('.edited').count()).toBe(1)
    expect(await onMo.locator('.reactions button[data-reaction="👍"]').textContent()).toBe('👍 2')
    expect(await onMo.locator('.reactions button[data-reaction="👍"]').getAttribute('aria-pressed')).toBe('false')
    await mo.screenshot({ path: join(ARTIFACTS, 'lifecycle-moderator.png') })

    await onMo.locator('button.delete').click()
    for (const page of [alice, bob, mo]) {
      await msg(page, 'alice', 'message deleted').waitFor(SLOW)
      expect(await log(page).locator('.msg.deleted').count()).toBe(1)
      expect(await bodies(page)).toEqual(['message deleted', 'nice one'])
      expect(await log(page).locator('.msg', { hasText: 'hello world' }).count()).toBe(0)
      expect(await log(page).locator('.msg.deleted .reactions, .msg.deleted .actions').count()).toBe(0)
    }
    // The reply's quote follows.
    await reply.locator('.quote', { hasText: 'Alice: message deleted' }).waitFor(SLOW)

    // Stays gone after a reload.
    await bob.reload(SLOW)
    await bob.locator('#status[data-state="open"]').waitFor(SLOW)
    await msg(bob, 'bob', 'nice one').waitFor(SLOW)
    expect(await bodies(bob)).toEqual(['message deleted', 'nice one'])
    expect(await log(bob).locator('.msg', { hasText: 'hello world' }).count()).toBe(0)
    await bob.screenshot({ path: join(ARTIFACTS, 'lifecycle-bob-after-delete.png') })

    // The moderator mutes Bob: everyone sees it; Bob's next message is refused with the reason.
    await msg(mo, 'bob', 'nice one').locator('button.mute').click()
    await log(bob).locator('.event[data-action="mute"]', { hasText: 'Mo muted you until' }).waitFor(SLOW)
    await log(alice).locator('.event[data-action="mute"]', { hasText: 'Mo muted Bob until' }).waitFor(SLOW)
    await bob.fill('#text', 'am I muted?')
    await bob.press('#text', 'Enter')
    await log(bob).locator('.divider', { hasText: 'not sent: room: muted in general until' }).waitFor(SLOW)
    expect(await bodies(alice)).toEqual(['message deleted', 'nice one'])
    expect(pageErrors).toEqual([])
  }, 120_000)
})

const pgTest = await needService('PostgreSQL', 5432)

describe.skipIf(!haveChromium)('moderation and the audit log on the admin page in Chromium', () => {
  let server: RunningServer
  let browser: Browser
  let db: Awaited<ReturnType<typeof freshDatabase>> | undefined
  const pageErrors: string[] = []

  beforeAll(async () => {
    if (pgTest !== test) return
    mkdirSync(ARTIFACTS, { recursive: true })
    db = await freshDatabase('adminmod')
    server = await startServer({ env: { API_KEY, POSTGRES_DSN: db.dsn, SHUTDOWN_GRACE_S: '1' } })
    browser = await launchChromium()
  }, 30_000)

  afterAll(async () => {
    await browser?.close().catch(() => {})
    await server?.stop()
    await db?.drop()
  })

  pgTest(
    'set a role, ban a user (their page sees it), unban, and read it all back in the audit log',
    async () => {
      const ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 } })
      const tom = await ctx.newPage()
      tom.on('pageerror', (e) => pageErrors.push(`tom: ${e.message}`))
      await tom.goto(`${server.url}/?name=Tom`, SLOW)
      await tom.locator('#status[data-state="open"]').waitFor(SLOW)

      const admin = await (await browser.newContext({ viewport: { width: 1280, height: 1200 } })).newPage()
      admin.on('pageerror', (e) => pageErrors.push(`admin: ${e.message}`))
      await admin.goto(`${server.url}/admin`, SLOW)
      await admin.fill('#key', API_KEY)
      await admin.click('#key-form button')
      await admin.locator('#main:not([hidden])').waitFor(SLOW)

      await admin.fill('#role-room', 'general')
      await admin.fill('#role-user', 'mo')
      await admin.selectOption('#role-role', 'moderator')
      await admin.click('#role-form button')
      await admin.locator('#role-result', { hasText: 'mo is moderator of general' }).waitFor(SLOW)

      await admin.fill('#moderate-room', 'general')
      await admin.fill('#moderate-user', 'tom')
      await admin.selectOption('#moderate-action', 'ban')
      await admin.fill('#moderate-reason', 'spam <b>links</b>')
      await admin.click('#moderate-form button')
      await admin.locator('#moderate-result', { hasText: 'ban tom in general: event seq' }).waitFor(SLOW)
      await tom.locator('.divider', { hasText: 'you were banned from this room' }).waitFor(SLOW)
      await admin.selectOption('#moderate-action', 'unban')
      await admin.click('#moderate-form button')
      await admin.locator('#moderate-result', { hasText: 'unban tom in general' }).waitFor(SLOW)

      // The audit rows are written in the background: show until they are there.
      await admin.fill('#audit-room', 'general')
      const rows = admin.locator('#audit tbody tr')
      for (let i = 0; i < 50 && (await rows.filter({ hasText: 'moderation' }).count()) < 2; i++) {
        await admin.click('#audit-form button[type="submit"]')
        await admin.waitForTimeout(200)
      }
      const moderation = await rows.filter({ hasText: 'moderation' }).allTextContents()
      expect(moderation.length).toBe(2)
      expect(moderation[0]).toContain('action: unban')
      expect(moderation[1]).toContain('action: ban')
      expect(moderation[1]).toContain('reason: spam <b>links</b>') // text, not HTML
      expect(await rows.filter({ hasText: 'role' }).filter({ hasText: 'role: moderator' }).count()).toBe(1)
      expect(await admin.locator('#audit b').count()).toBe(0)
      await admin.screenshot({ path: join(ARTIFACTS, 'admin-moderation.png'), fullPage: true })
      expect(pageErrors).toEqual([])
    },
    60_000,
  )
})
