import { pageMeta } from './html-meta'
import { outboundFetch } from './outbound-fetch'
import type { OutboundOptions } from './outbound-fetch'
import type { LinkPreview } from './room-log'

/**
 * One link's preview (PROTOCOL-v4 "Link previews"): the page fetched under the outbound rule
 * (outbound-fetch.ts: public addresses only unless OUTBOUND_ALLOW, each address checked and
 * connected to as checked, each of at most MAX_REDIRECTS redirects checked again), `text/html`
 * only, at most MAX_BYTES read, the whole within the timeout; then its meta tags (html-meta.ts).
 */

export const MAX_BYTES = 1024 * 1024
export const MAX_REDIRECTS = 5

/** Why a link has no preview, for the metric: not html, no title, a refusal status, too many redirects. */
export class NoPreview extends Error {}

/**
 * The first http(s) URL of a text, without the punctuation that ends a sentence around it
 * (`(see https://x.org/a).` gives `https://x.org/a`); undefined when there is none.
 */
export function firstUrl(text: string): string | undefined {
  if (!text.includes('://')) return undefined
  const m = /\bhttps?:\/\/[^\s<>"'`]+/i.exec(text)
  if (!m) return undefined
  let url = m[0]
  for (;;) {
    const last = url.at(-1)!
    if ('.,;:!?\'"'.includes(last)) url = url.slice(0, -1)
    // A closing bracket the URL did not open closes the sentence's.
    else if (last === ')' && (url.match(/\(/g)?.length ?? 0) < (url.match(/\)/g)?.length ?? 0)) url = url.slice(0, -1)
    else if (last === ']' && !url.includes('[')) url = url.slice(0, -1)
    else break
  }
  try {
    return new URL(url).href
  } catch {
    return undefined
  }
}

/** Reads at most `max` bytes of a body, then stops reading (the rest is never downloaded). */
async function readAtMost(res: Response, max: number): Promise<Uint8Array> {
  const reader = res.body?.getReader()
  if (!reader) return new Uint8Array()
  const chunks: Uint8Array[] = []
  let size = 0
  while (size < max) {
    const { done, value } = await reader.read()
    if (done) break
    chunks.push(value.byteLength > max - size ? value.subarray(0, max - size) : value)
    size += Math.min(value.byteLength, max - size)
  }
  await reader.cancel().catch(() => {})
  const out = new Uint8Array(size)
  let at = 0
  for (const c of chunks) {
    out.set(c, at)
    at += c.byteLength
  }
  return out
}

/** The body as text in the charset its Content-Type names (UTF-8 when none or unknown). */
function decode(bytes: Uint8Array, contentType: string): string {
  const label = /charset\s*=\s*"?([\w.:-]+)/i.exec(contentType)?.[1]
  try {
    return new TextDecoder(label ?? 'utf-8').decode(bytes)
  } catch {
    return new TextDecoder().decode(bytes)
  }
}

/**
 * Fetches `url` and returns its preview. Throws OutboundRefused (outbound-fetch.ts) when the
 * rule refuses a hop, NoPreview when the page has none, and fetch's errors (timeout, network).
 */
export async function fetchPreview(url: string, opts: Omit<OutboundOptions, 'redirects'>): Promise<LinkPreview> {
  const res = await outboundFetch(
    url,
    { headers: { accept: 'text/html', 'user-agent': 'chat-server link preview' } },
    { ...opts, redirects: MAX_REDIRECTS },
  )
  if (res.status >= 300 && res.status <= 399) {
    await res.body?.cancel().catch(() => {})
    throw new NoPreview(`more than ${MAX_REDIRECTS} redirects`)
  }
  const type = res.headers.get('content-type') ?? ''
  if (!res.ok || type.split(';')[0]!.trim().toLowerCase() !== 'text/html') {
    await res.body?.cancel().catch(() => {})
    throw new NoPreview(res.ok ? `not html (${type.slice(0, 60) || 'no content-type'})` : `status ${res.status}`)
  }
  const html = decode(await readAtMost(res, MAX_BYTES), type)
  // Relative images against the link itself: the pinned fetch's res.url names an address, not the host.
  const meta = await pageMeta(html, url)
  if (!meta.title) throw new NoPreview('the page has no title')
  return {
    url,
    title: meta.title,
    ...(meta.description ? { description: meta.description } : {}),
    ...(meta.image ? { image: meta.image } : {}),
    ...(meta.site_name ? { site_name: meta.site_name } : {}),
  }
}
