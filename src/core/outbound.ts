import ipaddr from 'ipaddr.js'

/**
 * The outbound rule (PROTOCOL-v4): a request to an address a user gave (a Web Push endpoint,
 * later a link preview) goes only over https to public addresses, unless the destination is
 * in `OUTBOUND_ALLOW`. This module is the pure part: what an address is, what the allow list
 * holds, what a URL may be before anything is resolved. `outbound-fetch.ts` resolves, checks
 * every address and connects to the checked one. Parsing, ranges and the table of special
 * ranges are ipaddr.js's (the library express's proxy-addr uses); this file only says which
 * of its range names are public (one: 'unicast') and why the others are not.
 */

/** An IP address (never unmapped: ::ffff:a.b.c.d stays IPv6, and is judged by its IPv4 address). */
export type Address = ipaddr.IPv4 | ipaddr.IPv6

/** An address and a prefix length, as ipaddr.parseCIDR gives it. */
export type Range = [Address, number]

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
  // Only the dotted quad: ipaddr also reads 1.2.3 or 0x7f.1, which WHATWG URL has normalised already.
  if (ipaddr.IPv4.isValidFourPartDecimal(a)) return ipaddr.IPv4.parse(a)
  if (a.includes('%') || !ipaddr.IPv6.isValid(a)) return undefined // a zone id (fe80::1%eth0) is a link-local address anyway
  // ipaddr reads `::1.2.3.4` (IPv4-compatible, ::102:304) as the mapped ::ffff:1.2.3.4, another address: `0::` keeps it itself.
  return ipaddr.IPv6.parse(a.replace(/^::(?=[\d.]+$)/, '0::'))
}

/** One address or CIDR (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`); undefined when it is neither. */
export function parseRange(text: string): Range | undefined {
  const [addr = '', bits, extra] = text.trim().split('/')
  const ip = parseAddress(addr)
  if (!ip || extra !== undefined) return undefined
  if (bits === undefined) return [ip, ip.kind() === 'ipv6' ? 128 : 32]
  try {
    return ipaddr.parseCIDR(`${ip.toString()}/${bits}`)
  } catch {
    return undefined
  }
}

export const inRange = (a: Address, r: Range) => a.kind() === r[0].kind() && a.match(r)

const cidr = (text: string) => ipaddr.parseCIDR(text)

/** Why each of ipaddr's special ranges (2.5.0) is not public; a name missing here is refused too. */
const V4_WHY: Record<string, string> = {
  unspecified: 'unspecified ("this network")',
  broadcast: 'reserved (and broadcast)',
  multicast: 'multicast',
  linkLocal: 'link-local (cloud metadata lives here)',
  loopback: 'loopback',
  carrierGradeNat: 'shared (carrier-grade NAT)',
  private: 'private',
  reserved: 'reserved',
  as112: 'reserved (AS112 DNS)',
  amt: 'reserved (AMT)',
}
const V6_WHY: Record<string, string> = {
  unspecified: 'unspecified',
  linkLocal: 'link-local',
  multicast: 'multicast',
  loopback: 'loopback',
  uniqueLocal: 'private (unique local)',
  deprecatedSiteLocal: 'private (site-local)',
  discard: 'reserved (discard)',
  rfc6145: 'reserved (IPv4-translated)',
  teredo: 'reserved (Teredo)',
  benchmarking: 'benchmarking',
  amt: 'reserved (AMT)',
  as112v6: 'reserved (AS112 DNS)',
  deprecatedOrchid: 'reserved (ORCHID)',
  orchid2: 'reserved (ORCHIDv2)',
  droneRemoteIdProtocolEntityTags: 'reserved (drone remote ID)',
  segmentRouting: 'reserved (SRv6)',
  reserved: 'reserved',
}
/**
 * Refused whatever ipaddr names them, checked first: ipaddr 2.5.0 files them all under 'reserved'
 * (refused anyway), but older versions called some 'unicast', and the names make clearer reasons.
 */
const NOT_PUBLIC = Object.fromEntries(
  Object.entries({
    documentation: ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24', '2001:db8::/32', '3fff::/20'],
    benchmarking: ['198.18.0.0/15'],
    'reserved (IETF protocol assignments)': ['192.0.0.0/24'],
    'reserved (6to4 relay)': ['192.88.99.0/24'],
    'reserved (and broadcast)': ['240.0.0.0/4'],
  }).map(([why, cidrs]) => [why, cidrs.map(cidr)]),
)
/**
 * What ipaddr calls 'unicast' but is not public: IPv6 outside 2000::/3 (global unicast), and
 * ::/96 (IPv4-compatible, deprecated: refused rather than judged by its IPv4 address).
 */
const GLOBAL = cidr('2000::/3')
const COMPATIBLE = cidr('::/96')
/** Of ipaddr's 'rfc6052', only the well-known NAT64 prefix embeds an IPv4 address; 64:ff9b:1::/48 is a local one. */
const NAT64 = cidr('64:ff9b::/96')

/** Why an address is not public (`loopback`, `private`, ...), or undefined when it is a public one. */
export function nonPublic(a: Address): string | undefined {
  const listed = ipaddr.subnetMatch(a, NOT_PUBLIC, '')
  if (listed) return listed
  const name = a.range()
  if (a instanceof ipaddr.IPv4) return name === 'unicast' ? undefined : (V4_WHY[name] ?? `reserved (${name})`)
  // An IPv6 form of an IPv4 address goes where that address goes.
  if (name === 'ipv4Mapped') return embedded(a.toIPv4Address())
  if (name === 'rfc6052') return a.match(NAT64) ? embedded(v4At(a, 12)) : 'private (local NAT64)'
  if (name === '6to4') return embedded(v4At(a, 2))
  if (name !== 'unicast') return V6_WHY[name] ?? `reserved (${name})`
  if (a.match(COMPATIBLE)) return 'reserved (IPv4-compatible)'
  if (!a.match(GLOBAL)) return 'reserved (outside global unicast)'
  return undefined
}
const v4At = (a: ipaddr.IPv6, byte: number) => ipaddr.fromByteArray(a.toByteArray().slice(byte, byte + 4))
const embedded = (a: Address) => {
  const why = nonPublic(a)
  return why ? `${why} (an IPv4 address inside IPv6)` : undefined
}

/** An address as text (IPv6 compressed as RFC 5952 says, no brackets), for messages and for the URL that connects to it. */
export const formatAddress = (a: Address) => a.toString()

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
  | {
      ok: true
      url: URL /** The host name (lowercase, no dot) when the URL names one. */
      name?: string /** The address when the URL holds one. */
      address?: Address
    }
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
  if (url.protocol === 'http:' && !allow.hosts.has(name) && allow.ranges.length === 0)
    return { ok: false, reason: 'must be an https:// URL (plain http only to hosts in OUTBOUND_ALLOW)' }
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
    if (why)
      return `${name ? `${url.hostname} resolves to ${formatAddress(a)}, ` : `${formatAddress(a)} is `}a ${why} address: not allowed (only public addresses, or OUTBOUND_ALLOW)`
  }
  if (url.protocol === 'http:' && !addresses.every((a) => allowsAddress(allow, a)))
    return 'must be an https:// URL (plain http only to hosts in OUTBOUND_ALLOW)'
  return undefined
}
