import { isIP } from 'node:net'

/**
 * Who is really connecting. The peer address of the TCP connection, unless that peer is a
 * trusted proxy (`TRUST_PROXY`): then `X-Forwarded-For` is read from the right, skipping
 * addresses that are themselves trusted proxies, and the first other address is the client.
 * Anything left of it was written by the client and is never believed.
 */

interface Range {
  v6: boolean
  base: bigint
  mask: bigint
}

/** IPv4-mapped IPv6 (`::ffff:1.2.3.4`, as Bun reports IPv4 peers on dual-stack sockets) → IPv4. */
function unmap(addr: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr)
  return m ? m[1]! : addr
}

function toBig(addr: string): { v6: boolean; n: bigint } | undefined {
  const a = unmap(addr.trim())
  const kind = isIP(a)
  if (kind === 4) return { v6: false, n: a.split('.').reduce((n, p) => (n << 8n) | BigInt(Number(p)), 0n) }
  if (kind !== 6) return undefined
  // Expand `::` and an embedded dotted quad into eight 16-bit groups.
  let text = a
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (quad) {
    const v4 = toBig(quad[1]!)!.n
    text = `${text.slice(0, -quad[1]!.length)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`
  }
  const [head, tail] = text.split('::') as [string, string | undefined]
  const h = head ? head.split(':') : []
  const t = tail ? tail.split(':') : []
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t]
  return { v6: true, n: groups.reduce((n, g) => (n << 16n) | BigInt(parseInt(g, 16)), 0n) }
}

/** Parses one address or CIDR; undefined when it is neither. */
export function parseRange(text: string): Range | undefined {
  const [addr, bits, extra] = text.trim().split('/')
  if (extra !== undefined || !addr) return undefined
  const ip = toBig(addr)
  if (!ip) return undefined
  const width = ip.v6 ? 128 : 32
  const prefix = bits === undefined ? width : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN
  if (!(prefix >= 0 && prefix <= width)) return undefined
  const mask = prefix === 0 ? 0n : ((1n << BigInt(prefix)) - 1n) << BigInt(width - prefix)
  return { v6: ip.v6, base: ip.n & mask, mask }
}

/** A matcher for a TRUST_PROXY list (already validated by the config). */
export function trustedProxies(list: string[] | undefined): (addr: string) => boolean {
  const ranges = (list ?? []).map((r) => parseRange(r)!).filter(Boolean)
  if (ranges.length === 0) return () => false
  return (addr) => {
    const ip = toBig(addr)
    return !!ip && ranges.some((r) => r.v6 === ip.v6 && (ip.n & r.mask) === r.base)
  }
}

/** The client's address for limits, logs and sessions. */
export function clientAddress(peer: string | undefined, forwardedFor: string | undefined, trusted: (addr: string) => boolean): string {
  const direct = unmap(peer ?? 'unknown')
  if (!forwardedFor || !trusted(direct)) return direct
  const hops = forwardedFor.split(',').map((h) => unmap(h.trim()))
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!
    if (!isIP(hop)) return direct // a garbled header: keep what we know for sure
    if (!trusted(hop)) return hop
  }
  return hops[0] && isIP(hops[0]) ? hops[0] : direct
}

/**
 * What MAX_CONNECTIONS_PER_IP counts by: the address for IPv4, the /64 network for IPv6 (one
 * subscriber usually holds a whole /64, so counting single IPv6 addresses would limit nothing).
 */
export function limitKey(addr: string): string {
  const a = unmap(addr)
  // IPv4 (the common case) is its own key: no BigInt to make at every connect (seen at 4 % of a
  // reconnect storm's profile).
  if (!a.includes(':')) return a
  const ip = toBig(a)
  if (!ip?.v6) return a
  const net = ip.n >> 64n
  const groups = [48n, 32n, 16n, 0n].map((s) => ((net >> s) & 0xffffn).toString(16))
  return `${groups.join(':')}::/64`
}
