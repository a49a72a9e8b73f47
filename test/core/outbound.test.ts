import { afterAll, describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { loadConfig } from '../../src/config'
import { NOTHING_ALLOWED, checkTarget, formatAddress, nonPublic, parseAddress, parseAllowList } from '../../src/core/outbound'
import { OutboundRefused, checkOutbound, outboundFetch } from '../../src/core/outbound-fetch'

/**
 * The outbound rule (PROTOCOL-v4, issue 32): what an address is, what a user-given URL may be,
 * and the fetch that connects only to the address it checked. Real loopback listeners record
 * whether a request arrived.
 */

const why = (ip: string) => nonPublic(parseAddress(ip)!)

describe('address classification', () => {
  test('every non-public IPv4 range is named; public addresses pass', () => {
    const cases: [string, string | undefined][] = [
      ['127.0.0.1', 'loopback'],
      ['127.255.255.254', 'loopback'],
      ['0.0.0.0', 'unspecified'],
      ['10.0.0.1', 'private'],
      ['172.16.0.1', 'private'],
      ['172.31.255.255', 'private'],
      ['192.168.1.1', 'private'],
      ['169.254.169.254', 'link-local'],
      ['100.64.0.1', 'shared'],
      ['100.127.255.255', 'shared'],
      ['224.0.0.1', 'multicast'],
      ['239.255.255.250', 'multicast'],
      ['240.0.0.1', 'reserved'],
      ['255.255.255.255', 'reserved'],
      ['192.0.2.1', 'documentation'],
      ['198.51.100.7', 'documentation'],
      ['203.0.113.9', 'documentation'],
      ['198.18.0.1', 'benchmarking'],
      ['198.19.255.255', 'benchmarking'],
      ['192.0.0.8', 'reserved'],
      ['8.8.8.8', undefined],
      ['1.1.1.1', undefined],
      ['172.32.0.1', undefined],
      ['100.128.0.1', undefined],
      ['198.20.0.1', undefined],
      ['11.0.0.1', undefined],
    ]
    for (const [ip, expected] of cases) {
      const got = why(ip)
      if (expected === undefined) expect([ip, got]).toEqual([ip, undefined])
      else expect([ip, got]).toEqual([ip, expect.stringContaining(expected)])
    }
  })

  test('IPv6: loopback, unspecified, ULA, link-local, multicast, and IPv4 inside IPv6 judged by the IPv4 address', () => {
    const cases: [string, string | undefined][] = [
      ['::1', 'loopback'],
      ['::', 'unspecified'],
      ['0:0:0:0:0:0:0:1', 'loopback'],
      ['fc00::1', 'private'],
      ['fd12:3456::1', 'private'],
      ['fe80::1', 'link-local'],
      ['fec0::1', 'private'],
      ['ff02::1', 'multicast'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['::ffff:7f00:1', 'loopback'],
      ['::ffff:169.254.169.254', 'link-local'],
      ['::ffff:10.0.0.1', 'private'],
      ['::127.0.0.1', 'reserved'],
      ['64:ff9b::127.0.0.1', 'loopback'],
      ['64:ff9b::a00:1', 'private'],
      ['64:ff9b:1::1', 'private'],
      ['2002:7f00:1::', 'loopback'],
      ['2002:a9fe:a9fe::1', 'link-local'],
      ['2001:db8::1', 'documentation'],
      ['2001::1', 'Teredo'],
      ['2001:2::1', 'benchmarking'],
      ['100::1', 'reserved'],
      ['4000::1', 'reserved'],
      ['2606:4700:4700::1111', undefined],
      ['2a00:1450:4001:80b::200e', undefined],
      ['::ffff:8.8.8.8', undefined],
      ['64:ff9b::808:808', undefined],
      ['2002:808:808::1', undefined],
    ]
    for (const [ip, expected] of cases) {
      const got = why(ip)
      if (expected === undefined) expect([ip, got]).toEqual([ip, undefined])
      else expect([ip, got]).toEqual([ip, expect.stringContaining(expected)])
    }
  })

  test('addresses print back in their usual form', () => {
    for (const ip of ['127.0.0.1', '::1', '::', '2001:db8::1', 'fe80::1:2', '1:2:3:4:5:6:7:8', '::ffff:7f00:1'])
      expect(formatAddress(parseAddress(ip)!)).toBe(ip)
    expect(formatAddress(parseAddress('[0:0:0:0:0:0:0:1]')!)).toBe('::1')
  })
})

describe('URLs users give', () => {
  // Every form of the security review (issue 32), as the server would have requested it.
  const FORMS = [
    'http://127.0.0.1:8080/push',
    'http://localhost:8080/',
    'http://127.1:8080/',
    'http://2130706433:8080/',
    'http://0x7f.1:8080/',
    'http://017700000001/',
    'http://[::1]:8080/',
    'http://[::ffff:127.0.0.1]/',
    'http://127.0.0.1:6379/',
    'http://127.0.0.1:8080/admin/shutdown?confirm=yes',
    'https://169.254.169.254/latest/meta-data/',
    'https://10.0.0.1/',
    'https://127.0.0.2/',
    'https://100.64.0.1/',
    'https://[::ffff:a9fe:a9fe]/',
    'https://0.0.0.0/',
    'https://0/',
    'ftp://example.com/',
    'https://user:pw@example.com/',
    'not a url',
  ]

  test('each form of the review is refused before any resolution, with a reason', () => {
    for (const url of FORMS.filter((u) => !u.includes('localhost'))) {
      const t = checkTarget(url, NOTHING_ALLOWED)
      expect([url, t.ok]).toEqual([url, false])
      if (!t.ok) expect(t.reason.length).toBeGreaterThan(5)
    }
    // WHATWG URL normalises each spelling of loopback to the address it is.
    for (const url of [
      'http://127.1:8080/',
      'http://2130706433:8080/',
      'http://0x7f.1:8080/',
      'http://017700000001/',
      'https://127.0.0.1./',
    ])
      expect([url, checkTarget(url, NOTHING_ALLOWED)]).toEqual([
        url,
        { ok: false, reason: '127.0.0.1 is a loopback address: not allowed (only public addresses, or OUTBOUND_ALLOW)' },
      ])
    expect(checkTarget('http://[::ffff:127.0.0.1]/', NOTHING_ALLOWED)).toEqual({
      ok: false,
      reason: expect.stringContaining('::ffff:7f00:1 is a loopback (an IPv4 address inside IPv6) address'),
    })
    expect(checkTarget('https://[::1]/', NOTHING_ALLOWED)).toEqual({
      ok: false,
      reason: expect.stringContaining('::1 is a loopback address'),
    })
    // A name passes this first step over https, and is judged by what it resolves to.
    expect(checkTarget('https://push.example.com/x', NOTHING_ALLOWED).ok).toBe(true)
    expect(checkTarget('http://push.example.com/x', NOTHING_ALLOWED)).toEqual({ ok: false, reason: expect.stringContaining('https://') })
  })

  test('names that resolve to loopback are refused: localhost, and the names of /etc/hosts', async () => {
    const names = ['localhost', 'LOCALHOST.']
    try {
      for (const line of readFileSync('/etc/hosts', 'utf8').split('\n')) {
        const [addr, ...hosts] = line.replace(/#.*/, '').trim().split(/\s+/)
        if (addr && /^(127\.|::1$)/.test(addr)) names.push(...hosts.filter((h) => /^[a-z0-9.-]+$/i.test(h)).slice(0, 3))
      }
    } catch {}
    for (const name of [...new Set(names)].slice(0, 8)) {
      const err = await checkOutbound(`https://${name}/x`, { allow: NOTHING_ALLOWED, timeoutMs: 5000 }).catch((e) => e)
      expect([name, err instanceof OutboundRefused]).toEqual([name, true])
      expect(err.message).toMatch(/loopback|does not resolve/)
    }
  })

  test('a name is refused when ANY of its addresses is not public', async () => {
    const resolve = async () => ['8.8.8.8', '10.1.2.3']
    const err = await checkOutbound('https://mixed.example/x', { allow: NOTHING_ALLOWED, timeoutMs: 5000, resolve }).catch((e) => e)
    expect(err).toBeInstanceOf(OutboundRefused)
    expect(err.message).toBe(
      'mixed.example resolves to 10.1.2.3, a private address: not allowed (only public addresses, or OUTBOUND_ALLOW)',
    )
    const ok = await checkOutbound('https://public.example/x', {
      allow: NOTHING_ALLOWED,
      timeoutMs: 5000,
      resolve: async () => ['8.8.8.8', '2606:4700::1'],
    })
    expect(formatAddress(ok.address)).toBe('8.8.8.8')
  })

  test('OUTBOUND_ALLOW: host names and CIDRs (v4, v6); a bad entry stops startup naming the variable', async () => {
    const allow = parseAllowList('127.0.0.1, 10.0.0.0/8,fd00::/8, Push.Internal.')
    expect([...allow.hosts]).toEqual(['push.internal'])
    expect(checkTarget('http://127.0.0.1:9/x', allow).ok).toBe(true)
    expect(checkTarget('http://10.2.3.4/x', allow).ok).toBe(true)
    expect(checkTarget('https://[fd00::5]/x', allow).ok).toBe(true)
    expect(checkTarget('http://127.0.0.2/x', allow).ok).toBe(false)
    expect(checkTarget('https://169.254.169.254/', allow).ok).toBe(false)
    // An allowed name is allowed whatever it resolves to; a listed range covers what names resolve to.
    expect((await checkOutbound('http://push.internal/x', { allow, timeoutMs: 1000, resolve: async () => ['192.168.1.9'] })).name).toBe(
      'push.internal',
    )
    expect((await checkOutbound('http://localhost:9/x', { allow, timeoutMs: 1000 })).name).toBe('localhost')
    // Plain http to a public address is not allowed by an allow list that does not hold it.
    expect(
      await checkOutbound('http://public.example/x', { allow, timeoutMs: 1000, resolve: async () => ['8.8.8.8'] }).catch((e) => e.message),
    ).toContain('https://')
    for (const bad of ['10.0.0.0/33', '300.1.1.1', 'fd00::/129', 'a b', 'http://x', '10.0.0.0/8/1', '1.2.3']) {
      expect(() => parseAllowList(bad)).toThrow('is neither a host name nor an address or CIDR')
      let lines: string[] = []
      try {
        loadConfig({ OUTBOUND_ALLOW: bad })
      } catch (err) {
        lines = (err as { lines: string[] }).lines
      }
      expect(lines.length).toBe(1)
      expect(lines[0]).toStartWith(`OUTBOUND_ALLOW: ${JSON.stringify(bad)} is neither`)
    }
    expect(loadConfig({}).OUTBOUND_ALLOW).toEqual({ hosts: new Set(), ranges: [] })
  })
})

describe('the pinned fetch', () => {
  const hits: { where: string; host: string | null; path: string }[] = []
  const listen = (hostname: string, answer: (req: Request) => Response) =>
    Bun.serve({
      hostname,
      port: 0,
      fetch(req) {
        hits.push({ where: hostname, host: req.headers.get('host'), path: new URL(req.url).pathname })
        return answer(req)
      },
    })
  const second = listen('127.0.0.2', () => new Response('stolen'))
  const first = listen('127.0.0.1', (req) => {
    const p = new URL(req.url).pathname
    if (p === '/redirect') return new Response(null, { status: 307, headers: { location: `http://127.0.0.2:${second.port}/steal` } })
    if (p === '/secret') return new Response('INTERNAL-SECRET-TOKEN=abc', { status: 400 })
    return new Response('ok', { status: 201 })
  })
  afterAll(() => {
    first.stop(true)
    second.stop(true)
  })
  const allow = parseAllowList('127.0.0.1')

  test('connects to the address it checked: one resolution per request, the name kept in Host (DNS rebinding cannot win)', async () => {
    hits.length = 0
    // A rebinding DNS: the first answer passes the check, every later one points elsewhere.
    let calls = 0
    const resolve = async () => (calls++ === 0 ? ['127.0.0.1'] : ['127.0.0.2'])
    const res = await outboundFetch(
      `http://rebind.example:${first.port}/push`,
      { method: 'POST', body: 'x' },
      { allow, timeoutMs: 5000, resolve },
    )
    expect(res.status).toBe(201)
    expect(calls).toBe(1)
    expect(hits).toEqual([{ where: '127.0.0.1', host: `rebind.example:${first.port}`, path: '/push' }])
  })

  test('a redirect is not followed by default; when followed, each hop is checked again', async () => {
    hits.length = 0
    const res = await outboundFetch(`http://127.0.0.1:${first.port}/redirect`, { method: 'POST', body: 'x' }, { allow, timeoutMs: 5000 })
    expect(res.status).toBe(307)
    const err = await outboundFetch(
      `http://127.0.0.1:${first.port}/redirect`,
      { method: 'GET' },
      { allow, timeoutMs: 5000, redirects: 5 },
    ).catch((e) => e)
    expect(err).toBeInstanceOf(OutboundRefused)
    expect(err.message).toContain('127.0.0.2 is a loopback address')
    expect(hits.map((h) => h.where)).toEqual(['127.0.0.1', '127.0.0.1'])
  })

  test('a refused URL is never connected to', async () => {
    hits.length = 0
    for (const url of [`http://127.0.0.2:${second.port}/x`, `http://localhost:${second.port}/x`, `https://127.0.0.2:${second.port}/x`]) {
      const err = await outboundFetch(url, { method: 'POST', body: 'x' }, { allow: NOTHING_ALLOWED, timeoutMs: 5000 }).catch((e) => e)
      expect([url, err instanceof OutboundRefused]).toEqual([url, true])
    }
    expect(hits).toEqual([])
  })
})
