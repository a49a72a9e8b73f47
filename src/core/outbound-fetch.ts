import { lookup } from 'node:dns/promises'
import { checkTarget, destinationRefused, formatAddress, parseAddress } from './outbound'
import type { Address, AllowList } from './outbound'

/**
 * Requests to addresses users gave, under the outbound rule (`outbound.ts`): the host is
 * resolved, every address it has is checked, and the request CONNECTS TO THE CHECKED ADDRESS:
 * fetch gets the address in the URL, the name in `Host` and as TLS `serverName` (SNI and the
 * certificate are checked against the name). A DNS answer that changes between the check and
 * the connect (DNS rebinding) therefore changes nothing: no second lookup happens.
 * Measured on Bun 1.4.5: fetch(`https://<ip>/`, {tls: {serverName}}) sends the name and refuses
 * a certificate of another name; node:https with a custom `lookup` works too, but loses
 * fetch's redirect and abort handling.
 */

/** The destination is refused by the rule (`transient`: the name did not resolve, which may pass). */
export class OutboundRefused extends Error {
  constructor(
    message: string,
    readonly transient = false,
  ) {
    super(message)
  }
}

export interface OutboundOptions {
  allow: AllowList
  /** For the whole request, every redirect and the name resolution included. */
  timeoutMs: number
  /** Redirects followed, each one checked like the first URL (link previews: 5). 0 (pushes): a 3xx is answered as it is. */
  redirects?: number
  /** Name resolution; default: the system's (node:dns lookup, every address). */
  resolve?: (name: string) => Promise<string[]>
}

export interface Checked {
  url: URL
  /** The address the request will connect to (every address of the name was checked). */
  address: Address
  name?: string
}

const systemResolve = async (name: string) => (await lookup(name, { all: true, verbatim: true })).map((r) => r.address)

const within = <T>(p: Promise<T>, signal: AbortSignal) =>
  new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason)
    const stop = () => reject(signal.reason)
    signal.addEventListener('abort', stop, { once: true })
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', stop))
  })

/** Checks a URL under the rule, resolving its host; throws OutboundRefused with the reason. */
export async function checkOutbound(text: string, opts: OutboundOptions, signal = AbortSignal.timeout(opts.timeoutMs)): Promise<Checked> {
  const t = checkTarget(text, opts.allow)
  if (!t.ok) throw new OutboundRefused(t.reason)
  if (t.address) return { url: t.url, address: t.address }
  let found: string[]
  try {
    found = await within((opts.resolve ?? systemResolve)(t.name!), signal)
  } catch (err) {
    const code = (err as { code?: string }).code ?? (err as Error).name
    throw new OutboundRefused(`${t.url.hostname.slice(0, 64)} does not resolve (${code})`, true)
  }
  const addresses = found.map(parseAddress).filter((a): a is Address => a !== undefined)
  const refused = destinationRefused(t.url, addresses, opts.allow, t.name)
  if (refused) throw new OutboundRefused(refused)
  return { url: t.url, address: addresses[0]!, name: t.name }
}

/** The fetch of one checked hop, to its address. */
function pinned(c: Checked, init: RequestInit, signal: AbortSignal): Promise<Response> {
  const target = new URL(c.url)
  const ip = formatAddress(c.address)
  target.hostname = c.address.kind() === 'ipv6' ? `[${ip}]` : ip
  const headers = new Headers(init.headers)
  headers.set('host', c.url.host)
  const tls = c.name && c.url.protocol === 'https:' ? { serverName: c.name } : undefined
  return fetch(target, { ...init, headers, redirect: 'manual', signal, ...(tls ? { tls } : {}) } as RequestInit)
}

/**
 * fetch under the outbound rule: refused (OutboundRefused) before any connection when the URL,
 * or any address of its host, is not allowed; redirects are never followed by fetch itself
 * (`opts.redirects` of them are followed here, each checked again).
 */
export async function outboundFetch(text: string, init: RequestInit, opts: OutboundOptions): Promise<Response> {
  const signal = init.signal ? AbortSignal.any([init.signal, AbortSignal.timeout(opts.timeoutMs)]) : AbortSignal.timeout(opts.timeoutMs)
  let url = text
  let request = init
  for (let hop = 0; ; hop++) {
    const res = await pinned(await checkOutbound(url, opts, signal), request, signal)
    const location = res.headers.get('location')
    if (res.status < 300 || res.status > 399 || !location || hop >= (opts.redirects ?? 0)) return res
    await res.body?.cancel().catch(() => {})
    url = new URL(location, url).href
    // A 303, and a 301/302 after a POST, continue as GET without a body (what browsers do).
    if (res.status === 303 || ((res.status === 301 || res.status === 302) && (request.method ?? 'GET') === 'POST'))
      request = { ...request, method: 'GET', body: undefined }
  }
}

/** A status line fit for a log: `status 400 Bad Request`, printable ASCII only, short; never the body. */
export const statusLine = (res: Response) =>
  `status ${res.status}${res.statusText ? ` ${res.statusText.replace(/[^\x20-\x7e]/g, '?').slice(0, 60)}` : ''}`
