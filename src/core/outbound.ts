import { isIP } from 'node:net'

/**
 * The outbound rule (PROTOCOL-v4): a request to an address a user gave (a Web Push endpoint,
 * later a link preview) goes only over https to public addresses, unless the destination is
 * in `OUTBOUND_ALLOW`. This module is the pure part: what an address is, what the allow list
 * holds, what a URL may be before anything is resolved. `outbound-fetch.ts` resolves, checks
 * every address and connects to the checked one.
 */

/** An IP address as a number: 32 bits for IPv4, 128 for IPv6 (never unmapped: the ranges below see ::ffff:* as it is). */
export interface Address {
  v6: boolean
  n: bigint
}

export interface Range {
  v6: boolean
  base: bigint
  mask: bigint
}

/** Hosts and CIDRs an operator trusts (tests, private deployments): plain http and non-public addresses are allowed there. */
export interface AllowList {
  /** Host names, lowercase, without a trailing dot. */
  hosts: ReadonlySet<string>
  ranges: readonly Range[]
}

export const NOTHING_ALLOWED: AllowList = { hosts: new Set(), ranges: [] }

/** Parses an IP address (as WHATWG URL or DNS gives them: dotted quad, or IPv6 with or without brackets). */
export function parseAddress(text: string): Address | undefined {
  const a = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text
  const kind = isIP(a)
  if (kind === 4) return { v6: false, n: a.split('.').reduce((n, p) => (n << 8n) | BigInt(Number(p)), 0n) }
  if (kind !== 6 || a.includes('%')) return undefined // a zone id (fe80::1%eth0) is a link-local address anyway
  let t = a.toLowerCase()
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(t)
  if (quad) {
    const v4 = parseAddress(quad[1]!)!.n
    t = t.slice(0, -quad[1]!.length) + `${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`
  }
  const [head, tail] = t.split('::') as [string, string | undefined]
  const h = head ? head.split(':') : []
  const tl = tail ? tail.split(':') : []
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - tl.length).fill('0'), ...tl]
  return { v6: true, n: groups.reduce((n, g) => (n << 16n) | BigInt(parseInt(g, 16)), 0n) }
}

/** One address or CIDR (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`); undefined when it is neither. */
export function parseRange(text: string): Range | undefined {
  const [addr, bits, extra] = text.trim().split('/')
  if (extra !== undefined || !addr) return undefined
  const ip = parseAddress(addr)
  if (!ip) return undefined
  const width = ip.v6 ? 128 : 32
  const prefix = bits === undefined ? width : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN
  if (!(prefix >= 0 && prefix <= width)) return undefined
  const mask = prefix === 0 ? 0n : ((1n << BigInt(prefix)) - 1n) << BigInt(width - prefix)
  return { v6: ip.v6, base: ip.n & mask, mask }
}

export const inRange = (a: Address, r: Range) => a.v6 === r.v6 && (a.n & r.mask) === r.base

const range = (cidr: string) => parseRange(cidr)!

/** Every IPv4 range that is not the public internet (RFC 6890 and its updates), with what it is. */
const V4: [Range, string][] = [
  [range('0.0.0.0/8'), 'unspecified ("this network")'],
  [range('10.0.0.0/8'), 'private'],
  [range('100.64.0.0/10'), 'shared (carrier-grade NAT)'],
  [range('127.0.0.0/8'), 'loopback'],
  [range('169.254.0.0/16'), 'link-local (cloud metadata lives here)'],
  [range('172.16.0.0/12'), 'private'],
  [range('192.0.0.0/24'), 'reserved (IETF protocol assignments)'],
  [range('192.0.2.0/24'), 'documentation'],
  [range('192.88.99.0/24'), 'reserved (6to4 relay)'],
  [range('192.168.0.0/16'), 'private'],
  [range('198.18.0.0/15'), 'benchmarking'],
  [range('198.51.100.0/24'), 'documentation'],
  [range('203.0.113.0/24'), 'documentation'],
  [range('224.0.0.0/4'), 'multicast'],
  [range('240.0.0.0/4'), 'reserved (and broadcast)'],
]

/** IPv6 is public only inside 2000::/3 (global unicast), minus these; the ranges that embed an IPv4 address are judged by it. */
const V6: [Range, string][] = [
  [range('2001::/32'), 'reserved (Teredo)'],
  [range('2001:2::/48'), 'benchmarking'],
  [range('2001:10::/28'), 'reserved (ORCHID)'],
  [range('2001:20::/28'), 'reserved (ORCHIDv2)'],
  [range('2001:db8::/32'), 'documentation'],
  [range('3fff::/20'), 'documentation'],
  [range('5f00::/16'), 'reserved (SRv6)'],
]
const V6_NAMED: [Range, string][] = [
  [range('::/128'), 'unspecified'],
  [range('::1/128'), 'loopback'],
  [range('64:ff9b:1::/48'), 'private (local NAT64)'],
  [range('100::/64'), 'reserved (discard)'],
  [range('fc00::/7'), 'private (unique local)'],
  [range('fe80::/10'), 'link-local'],
  [range('fec0::/10'), 'private (site-local)'],
  [range('ff00::/8'), 'multicast'],
]
const MAPPED = range('::ffff:0:0/96')
const COMPATIBLE = range('::/96')
const NAT64 = range('64:ff9b::/96')
const SIX_TO_FOUR = range('2002::/16')
const GLOBAL = range('2000::/3')

const v4 = (n: bigint): Address => ({ v6: false, n: n & 0xffffffffn })

/** Why an address is not public (`loopback`, `private`, ...), or undefined when it is a public one. */
export function nonPublic(a: Address): string | undefined {
  if (!a.v6) return V4.find(([r]) => inRange(a, r))?.[1]
  for (const [r, what] of V6_NAMED) if (inRange(a, r)) return what
  // An IPv6 form of an IPv4 address goes where that address goes.
  if (inRange(a, MAPPED) || inRange(a, NAT64)) return embedded(v4(a.n))
  if (inRange(a, COMPATIBLE)) return 'reserved (IPv4-compatible)'
  if (inRange(a, SIX_TO_FOUR)) return embedded(v4(a.n >> 80n))
  if (!inRange(a, GLOBAL)) return 'reserved (outside global unicast)'
  return V6.find(([r]) => inRange(a, r))?.[1]
}
const embedded = (a: Address) => {
  const why = nonPublic(a)
  return why ? `${why} (an IPv4 address inside IPv6)` : undefined
}

/** An address as text (IPv6 compressed, no brackets), for messages and for the URL that connects to it. */
export function formatAddress(a: Address): string {
  if (!a.v6) return [24n, 16n, 8n, 0n].map((s) => String((a.n >> s) & 255n)).join('.')
  const g = Array.from({ length: 8 }, (_, i) => Number((a.n >> BigInt(112 - 16 * i)) & 0xffffn))
  // The longest run of zero groups (at least two) becomes `::`.
  let best = -1
  let len = 0
  for (let i = 0; i < 8; ) {
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > len && j - i > 1) [best, len] = [i, j - i]
    i = j === i ? i + 1 : j
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':')
  return best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + len))}`
}

const HOST_NAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/

/** A host name as it is compared: lowercase, no trailing dot. */
export const hostKey = (name: string) => name.toLowerCase().replace(/\.$/, '')

/** OUTBOUND_ALLOW: a comma list of host names and CIDRs (v4, v6); throws naming the bad entry. */
export function parseAllowList(text: string | undefined): AllowList {
  const hosts = new Set<string>()
  const ranges: Range[] = []
  for (const raw of (text ?? '').split(',')) {
    const entry = raw.trim()
    if (!entry) continue
    const looksLikeAddress = /^[0-9.]+(\/\d+)?$/.test(entry) || entry.includes(':')
    const r = looksLikeAddress ? parseRange(entry) : undefined
    if (r) ranges.push(r)
    else if (!looksLikeAddress && HOST_NAME.test(hostKey(entry.toLowerCase()))) hosts.add(hostKey(entry))
    else throw new Error(`${JSON.stringify(entry)} is neither a host name nor an address or CIDR (like 127.0.0.1, 10.0.0.0/8, fd00::/8)`)
  }
  return { hosts, ranges }
}

export const allowsAddress = (allow: AllowList, a: Address) => allow.ranges.some((r) => inRange(a, r))

/** What a URL may be before its host is resolved. */
export type Target =
  | { ok: true; url: URL; /** The host name (lowercase, no dot) when the URL names one. */ name?: string; /** The address when the URL holds one. */ address?: Address }
  | { ok: false; reason: string }

/**
 * The checks that need no resolution: a URL (WHATWG: `127.1`, `2130706433`, `0x7f.1` and
 * `[::ffff:127.0.0.1]` are normalised to the addresses they are), http or https, no user or
 * password, and when the host is an address, a public one (or an allowed one). Plain http
 * needs an allowed destination: see `destinationRefused`.
 */
export function checkTarget(text: string, allow: AllowList): Target {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return { ok: false, reason: 'must be an https:// URL' }
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return { ok: false, reason: `must be an https:// URL, not ${url.protocol}` }
  if (url.username || url.password) return { ok: false, reason: 'must not carry a user or password' }
  const address = parseAddress(url.hostname)
  if (address) {
    const refused = destinationRefused(url, [address], allow, undefined)
    return refused ? { ok: false, reason: refused } : { ok: true, url, address }
  }
  const name = hostKey(url.hostname)
  if (!HOST_NAME.test(name)) return { ok: false, reason: `has a host that is not a DNS name: ${url.hostname.slice(0, 64)}` }
  if (url.protocol === 'http:' && !allow.hosts.has(name) && allow.ranges.length === 0) return { ok: false, reason: 'must be an https:// URL (plain http only to hosts in OUTBOUND_ALLOW)' }
  return { ok: true, url, name }
}

/**
 * The addresses a URL's host resolved to may be used: every one of them is public or in an
 * allowed CIDR, or the host name itself is allowed. Plain http only when the whole
 * destination is allowed (the name, or every address): a public host takes https.
 */
export function destinationRefused(url: URL, addresses: Address[], allow: AllowList, name: string | undefined): string | undefined {
  if (name && allow.hosts.has(name)) return undefined
  if (addresses.length === 0) return `${url.hostname} has no address`
  for (const a of addresses) {
    if (allowsAddress(allow, a)) continue
    const why = nonPublic(a)
    if (why) return `${name ? `${url.hostname} resolves to ${formatAddress(a)}, ` : `${formatAddress(a)} is `}a ${why} address: not allowed (only public addresses, or OUTBOUND_ALLOW)`
  }
  if (url.protocol === 'http:' && !addresses.every((a) => allowsAddress(allow, a))) return 'must be an https:// URL (plain http only to hosts in OUTBOUND_ALLOW)'
  return undefined
}
