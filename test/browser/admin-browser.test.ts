/**
 * The admin page in Chromium (Debian's, driven by playwright-core) against a cluster of two
 * server processes and Redis: both nodes show, their counts move as clients connect and chat,
 * what users typed is shown as text (never as HTML), and the page loads nothing from another
 * origin. A screenshot is kept in test/artifacts/admin-cluster.png.
 * No Chromium: with CI=true that is a failure (browser.test.ts says so), else skipped.
 */
import { afterAll, beforeAll, describe, expect } from 'bun:test'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { haveChromium, launchChromium, requireChromium } from '../helpers/browser'
import type { Browser, Page } from 'playwright-core'
import { connect } from '../helpers/client'
import type { TestClient } from '../helpers/client'
import { ROOT, startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { needService, dropRedisPrefix } from '../helpers/services'

const ARTIFACTS = join(ROOT, 'test', 'artifacts')
const WAIT = { timeout: 10_000 }
const API_KEY = 'admin-browser-key-0123456789'
const prefix = `test-admin-ui-${process.pid}-${Date.now()}:`
const EVIL_NAME = '<img src=x onerror="window.__xss=1">Mallory'
const EVIL_BODY = '<script>window.__xss=2</script><b>bold?</b>'

const test = await needService('Redis', 6379)

requireChromium('admin page browser tests')

describe.skipIf(!haveChromium)('admin page in Chromium', () => {
  let a: RunningServer
  let b: RunningServer
  let browser: Browser
  let page: Page
  const clients: TestClient[] = []
  const foreign: string[] = []
  const pageErrors: string[] = []

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true })
    const env = { API_KEY, REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix, RATE_LIMIT_PER_SEC: '0', SHUTDOWN_GRACE_S: '1' }
    ;[a, b] = await Promise.all([startServer({ env: { ...env, NODE_ID: 'node-a' } }), startServer({ env: { ...env, NODE_ID: 'node-b' } })])
    browser = await launchChromium()
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 } })
    page = await ctx.newPage()
    page.setDefaultTimeout(10_000)
    page.on('pageerror', (e) => pageErrors.push(e.message))
    page.on('request', (r) => {
      if (!r.url().startsWith(a.url) && !r.url().startsWith('data:')) foreign.push(r.url())
    })
  }, 40_000)

  afterAll(async () => {
    for (const c of clients) c.close()
    await browser?.close().catch(() => {})
    await Promise.all([a?.stop(), b?.stop()])
    await dropRedisPrefix(prefix)
  })

  const cellOf = (node: string, column: number) => page.locator(`#nodes tr[data-node="${node}"] td:nth-child(${column})`)
  const number = async (node: string, column: number) => Number(await cellOf(node, column).textContent())
  const CONNECTIONS = 3
  const MSG_IN = 5

  test('a wrong key is refused on the page; the right one shows both nodes', async () => {
    await page.goto(`${a.url}/admin`, WAIT)
    expect(await page.locator('#main').isHidden()).toBe(true)
    await page.fill('#key', 'not-the-key-at-all-000')
    await page.click('#key-form button')
    await page.locator('#status', { hasText: 'the key was refused' }).waitFor(WAIT)
    expect(await page.evaluate(() => sessionStorage.getItem('chat-admin-key'))).toBeNull()

    await page.fill('#key', API_KEY)
    await page.click('#key-form button')
    await page.locator('#nodes tr[data-node="node-b"]').waitFor(WAIT)
    await page.locator('#nodes tr[data-node="node-a"]').waitFor(WAIT)
    expect(await page.locator('#scope').textContent()).toBe('cluster of 2 nodes')
    expect(await page.evaluate(() => sessionStorage.getItem('chat-admin-key'))).toBe(API_KEY)
    expect(await number('node-a', CONNECTIONS)).toBe(0)
    expect(await number('node-b', CONNECTIONS)).toBe(0)
  }, 30_000)

  test('counts move when clients connect to both nodes and chat', async () => {
    for (let i = 0; i < 3; i++) clients.push(await connect(a.ws, { user: `alice${i}`, name: `Alice ${i}` }))
    for (let i = 0; i < 5; i++) clients.push(await connect(b.ws, { user: `bob${i}`, name: `Bob ${i}` }))
    const mallory = await connect(b.ws, { user: 'mallory', name: EVIL_NAME })
    clients.push(mallory)
    for (const c of clients) expect((await c.request({ type: 'join', room: 'town-square' })).type).toBe('joined')
    await page.waitForFunction(
      ([col]) => {
        const n = (id: string) => Number(document.querySelector(`#nodes tr[data-node="${id}"] td:nth-child(${col})`)?.textContent)
        return n('node-a') === 3 && n('node-b') === 6
      },
      [CONNECTIONS],
      WAIT,
    )
    // Chat for a few seconds on both nodes until both show a message rate.
    const end = Date.now() + 10_000
    let i = 0
    while (Date.now() < end) {
      for (let k = 0; k < 6; k++, i++) clients[i % clients.length]!.send({ type: 'chat', room: 'town-square', body: `hello ${i}` })
      await Bun.sleep(250)
      if ((await number('node-a', MSG_IN)) > 0 && (await number('node-b', MSG_IN)) > 0) break
    }
    expect(await number('node-a', MSG_IN)).toBeGreaterThan(0)
    expect(await number('node-b', MSG_IN)).toBeGreaterThan(0)
    mallory.send({ type: 'chat', room: 'town-square', body: EVIL_BODY })
    await page.locator('#rooms td', { hasText: 'town-square' }).waitFor(WAIT)
    await page.waitForFunction(
      () => [...document.querySelectorAll('#rooms tr')].some((tr) => tr.textContent === 'town-square92'),
      undefined,
      WAIT,
    )
    // The chart has data from both nodes (uPlot draws into a canvas).
    expect(await page.locator('#chart canvas').count()).toBeGreaterThan(0)
    expect(await page.locator('#chart .u-legend').textContent()).toContain('messages in/s')
  }, 40_000)

  test('looking up a room shows members and messages as text, never as HTML', async () => {
    await page.click('#rooms td:has-text("town-square")')
    await page.locator('#members li', { hasText: 'Mallory' }).waitFor(WAIT)
    const member = await page.locator('#members li', { hasText: 'Mallory' }).textContent()
    expect(member).toBe(`mallory${EVIL_NAME}`)
    await page.locator('#history li', { hasText: 'bold?' }).waitFor(WAIT)
    expect(await page.locator('#history li', { hasText: 'bold?' }).textContent()).toContain(`${EVIL_NAME}: ${EVIL_BODY}`)
    expect(await page.locator('#members img, #history img, #history script, #history b').count()).toBe(0)
    expect(await page.evaluate(() => (window as any).__xss)).toBeUndefined()
    // A room name holding HTML is refused by the API; the page shows the reason as text.
    await page.fill('#lookup-room', '<img src=y onerror="window.__xss=3">')
    await page.click('#lookup-form button')
    await page.locator('#lookup-result.error').waitFor(WAIT)
    expect(await page.locator('#lookup-result').textContent()).toBe('bad_request: room: must be 1..64 of A-Z a-z 0-9 _ . : -')
    expect(await page.locator('#lookup-result img').count()).toBe(0)
    expect(await page.evaluate(() => (window as any).__xss)).toBeUndefined()
    await page.fill('#lookup-room', 'town-square')
    await page.click('#lookup-form button')
    await page.locator('#members li', { hasText: 'Mallory' }).waitFor(WAIT)
  }, 30_000)

  test('publish from the page reaches members on both nodes', async () => {
    const onA = clients[0]!
    const onB = clients[3]!
    await page.fill('#publish-room', 'town-square')
    await page.fill('#publish-body', 'announcement from the admin page')
    await page.click('#publish-form button')
    await page.locator('#publish-result', { hasText: 'published to town-square as seq' }).waitFor(WAIT)
    for (const c of [onA, onB])
      expect(await c.next((f) => f.type === 'chat' && f.body === 'announcement from the admin page')).toMatchObject({
        from: { id: 'server' },
      })
    await page.waitForTimeout(2500) // one more poll, so the screenshot shows the latest counts
    await page.screenshot({ path: join(ARTIFACTS, 'admin-cluster.png'), fullPage: true })
    expect(pageErrors).toEqual([])
    expect(foreign).toEqual([])
  }, 30_000)

  test('disconnect a user from the page: their sockets on both nodes close, the others stay', async () => {
    const victim = await connect(a.ws, { user: 'to-disconnect' })
    const victim2 = await connect(b.ws, { user: 'to-disconnect' })
    await page.fill('#disconnect-user', 'to-disconnect')
    await page.fill('#disconnect-reason', 'from the admin page')
    await page.click('#disconnect-form button')
    await page.locator('#disconnect-result', { hasText: 'every connection of to-disconnect closed with 4000' }).waitFor(WAIT)
    for (const c of [victim, victim2]) expect(await c.closed).toEqual({ code: 4000, reason: 'from the admin page' })
    expect(clients.every((c) => c.ws.readyState === WebSocket.OPEN)).toBe(true)
  }, 30_000)

  test('/docs renders the API reference offline (everything from this server)', async () => {
    const docs = await browser.newPage()
    const outside: string[] = []
    docs.on('request', (r) => {
      if (!r.url().startsWith(a.url) && !r.url().startsWith('data:')) outside.push(r.url())
    })
    const errors: string[] = []
    docs.on('pageerror', (e) => errors.push(e.message))
    await docs.goto(`${a.url}/docs`, WAIT)
    await docs.locator('.opblock-summary-path', { hasText: '/api/publish' }).first().waitFor(WAIT)
    expect(await docs.locator('.opblock-summary-path').count()).toBeGreaterThanOrEqual(6)
    await docs.screenshot({ path: join(ARTIFACTS, 'docs.png') })
    expect(errors).toEqual([])
    expect(outside).toEqual([])
    await docs.close()
  }, 30_000)
})
