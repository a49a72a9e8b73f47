/**
 * What a page says about itself, for a link preview: Open Graph (`og:`), Twitter cards, `<title>`
 * and `<meta name=description>`. The HTML is tokenised by Bun's HTMLRewriter (lol-html: quoting,
 * comments, `<script>` contents are its job, not a regex's); it leaves character references as
 * they are, so they are decoded here (numeric ones, and the named ones pages use: Latin-1 and
 * HTML 4's punctuation; an unknown name stays as written).
 */

export interface PageMeta {
  title?: string
  description?: string
  /** An absolute http(s) URL (resolved against the page's). */
  image?: string
  site_name?: string
}

/** Latin-1's names, U+00A0 to U+00FF in order. */
const LATIN1 =
  'nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr deg plusmn sup2 sup3 acute micro para middot cedil sup1 ordm raquo frac14 frac12 frac34 iquest Agrave Aacute Acirc Atilde Auml Aring AElig Ccedil Egrave Eacute Ecirc Euml Igrave Iacute Icirc Iuml ETH Ntilde Ograve Oacute Ocirc Otilde Ouml times Oslash Ugrave Uacute Ucirc Uuml Yacute THORN szlig agrave aacute acirc atilde auml aring aelig ccedil egrave eacute ecirc euml igrave iacute icirc iuml eth ntilde ograve oacute ocirc otilde ouml divide oslash ugrave uacute ucirc uuml yacute thorn yuml'
const NAMED: Record<string, string> = Object.assign(
  Object.create(null),
  Object.fromEntries(LATIN1.split(' ').map((n, i) => [n, String.fromCharCode(0xa0 + i)])),
  {
    amp: '&',
    lt: '<',
    gt: '>',
    quot: '"',
    apos: "'",
    OElig: 'Œ',
    oelig: 'œ',
    Scaron: 'Š',
    scaron: 'š',
    Yuml: 'Ÿ',
    fnof: 'ƒ',
    circ: 'ˆ',
    tilde: '˜',
    ensp: '\u2002',
    emsp: '\u2003',
    thinsp: '\u2009',
    zwnj: '\u200c',
    zwj: '\u200d',
    lrm: '\u200e',
    rlm: '\u200f',
    ndash: '–',
    mdash: '—',
    lsquo: '‘',
    rsquo: '’',
    sbquo: '‚',
    ldquo: '“',
    rdquo: '”',
    bdquo: '„',
    dagger: '†',
    Dagger: '‡',
    bull: '•',
    hellip: '…',
    permil: '‰',
    prime: '′',
    Prime: '″',
    lsaquo: '‹',
    rsaquo: '›',
    oline: '‾',
    euro: '€',
    trade: '™',
    larr: '←',
    uarr: '↑',
    rarr: '→',
    darr: '↓',
    harr: '↔',
  },
)

/** Decodes character references (`&amp;`, `&#233;`, `&#x263A;`); invalid code points become U+FFFD. */
export function decodeEntities(s: string): string {
  if (!s.includes('&')) return s
  return s.replace(/&(?:#(\d{1,8})|#[xX]([0-9a-fA-F]{1,7})|([A-Za-z][A-Za-z0-9]{1,31}));/g, (whole, dec, hex, name) => {
    if (name) return NAMED[name] ?? whole
    const cp = dec ? Number.parseInt(dec, 10) : Number.parseInt(hex, 16)
    if (cp === 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return '\ufffd'
    return String.fromCodePoint(cp)
  })
}

/** Decoded, whitespace collapsed, control characters gone, at most `max` code points; undefined when empty. */
function clean(raw: string | undefined, max: number): string | undefined {
  if (raw === undefined) return undefined
  const s = decodeEntities(raw)
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, '')
    .replace(/\s+/g, ' ')
    .trim()
  if (!s) return undefined
  const cps = [...s]
  return cps.length > max ? `${cps.slice(0, max - 1).join('')}…` : s
}

/** An image URL as the page gives it, made absolute; only http(s). */
function absolute(raw: string | undefined, base: string): string | undefined {
  const s = clean(raw, 2048)
  if (!s) return undefined
  try {
    const u = new URL(s, base)
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : undefined
  } catch {
    return undefined
  }
}

const KEYS = new Set([
  'og:title',
  'og:description',
  'og:image',
  'og:image:url',
  'og:image:secure_url',
  'og:site_name',
  'twitter:title',
  'twitter:description',
  'twitter:image',
  'twitter:image:src',
  'description',
])

/** Reads a page's meta tags and title; `url` is where the page was found (for relative images). */
export async function pageMeta(html: string, url: string): Promise<PageMeta> {
  const found: Record<string, string> = Object.create(null)
  let title = ''
  let inTitle = false
  let titleDone = false
  await new HTMLRewriter()
    .on('meta', {
      element(e) {
        const key = (e.getAttribute('property') ?? e.getAttribute('name') ?? '').trim().toLowerCase()
        const content = e.getAttribute('content')
        // The first of each wins, as the Open Graph protocol says.
        if (content !== null && KEYS.has(key) && !(key in found)) found[key] = content
      },
    })
    .on('title', {
      element(e) {
        if (titleDone) return
        inTitle = true
        e.onEndTag(() => {
          inTitle = false
          titleDone = true
        })
      },
      text(t) {
        if (inTitle && !titleDone && title.length < 4096) title += t.text
      },
    })
    .transform(new Response(html))
    .arrayBuffer()
  return {
    title: clean(found['og:title'] ?? found['twitter:title'] ?? (title || undefined), 300),
    description: clean(found['og:description'] ?? found['twitter:description'] ?? found.description, 1000),
    image: absolute(
      found['og:image'] ?? found['og:image:url'] ?? found['og:image:secure_url'] ?? found['twitter:image'] ?? found['twitter:image:src'],
      url,
    ),
    site_name: clean(found['og:site_name'], 200),
  }
}
