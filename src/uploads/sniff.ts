/**
 * The type of a file from its first bytes (magic numbers), and an image's size from its
 * header where that is cheap (png, gif, webp, jpeg within the bytes sniffed). What the client
 * declared is only compared with it, never believed.
 */
export interface Sniffed {
  type: string
  width?: number
  height?: number
}

/** Bytes read before deciding: a JPEG's size header follows its EXIF block, usually within this. */
export const SNIFF_BYTES = 64 * 1024

const ascii = (b: Uint8Array, at: number, s: string) => {
  if (b.length < at + s.length) return false
  for (let i = 0; i < s.length; i++) if (b[at + i] !== s.charCodeAt(i)) return false
  return true
}
const be16 = (b: Uint8Array, i: number) => (b[i]! << 8) | b[i + 1]!
const be32 = (b: Uint8Array, i: number) => ((b[i]! << 24) >>> 0) + ((b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!)
const le16 = (b: Uint8Array, i: number) => b[i]! | (b[i + 1]! << 8)
const le24 = (b: Uint8Array, i: number) => b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16)

const sized = (type: string, width?: number, height?: number): Sniffed => (width && height ? { type, width, height } : { type })

function jpegSize(b: Uint8Array): [number, number] | undefined {
  let i = 2
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return undefined
    const marker = b[i + 1]!
    if (marker === 0xff) {
      i++
      continue
    }
    // SOF0..SOF15 carry the frame's size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) return [be16(b, i + 7), be16(b, i + 5)]
    i += 2 + be16(b, i + 2)
  }
  return undefined
}

function webpSize(b: Uint8Array): [number, number] | undefined {
  if (ascii(b, 12, 'VP8 ') && b.length >= 30) return [le16(b, 26) & 0x3fff, le16(b, 28) & 0x3fff]
  if (ascii(b, 12, 'VP8L') && b.length >= 25) {
    const bits = b[21]! | (b[22]! << 8) | (b[23]! << 16) | (b[24]! << 24)
    return [(bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1]
  }
  if (ascii(b, 12, 'VP8X') && b.length >= 30) return [le24(b, 24) + 1, le24(b, 27) + 1]
  return undefined
}

const has = (b: Uint8Array, s: string, within = 256) => Buffer.from(b.subarray(0, within)).includes(s)

/** Text: valid UTF-8 (a sequence cut at the end of the sniffed bytes aside), no NUL, few control characters. */
function isText(b: Uint8Array, complete: boolean): boolean {
  if (b.length === 0) return true
  let end = b.length
  if (!complete) {
    // Do not judge a multi-byte character cut by the sniff window.
    let k = end - 1
    while (k > end - 4 && k > 0 && (b[k]! & 0xc0) === 0x80) k--
    if (b[k]! >= 0xc0) end = k
  }
  let control = 0
  for (let i = 0; i < end; i++) {
    const c = b[i]!
    if (c === 0) return false
    if (c < 9 || (c > 13 && c < 32 && c !== 27)) control++
  }
  if (control > end / 100) return false
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(0, end))
    return true
  } catch {
    return false
  }
}

/** Markup a browser would run as a page or a script if it ever rendered it: never text/plain. */
function markup(b: Uint8Array): string | undefined {
  const head = new TextDecoder()
    .decode(b.subarray(0, 1024))
    .replace(/^\uFEFF/, '')
    .trimStart()
    .toLowerCase()
  if (head.startsWith('<svg') || (head.startsWith('<?xml') && head.includes('<svg'))) return 'image/svg+xml'
  if (/^<(!doctype html|html|head|body|script|iframe|object|embed|style|meta|title|a |div|table|img)/.test(head)) return 'text/html'
  if (head.startsWith('<?xml')) return 'application/xml'
  return undefined
}

/** `complete`: `head` is the whole file. */
export function sniff(b: Uint8Array, complete: boolean): Sniffed {
  if (ascii(b, 0, '\x89PNG\r\n\x1a\n')) return sized('image/png', be32(b, 16), be32(b, 20))
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) {
    const s = jpegSize(b)
    return sized('image/jpeg', s?.[0], s?.[1])
  }
  if (ascii(b, 0, 'GIF87a') || ascii(b, 0, 'GIF89a')) return sized('image/gif', le16(b, 6), le16(b, 8))
  if (ascii(b, 0, 'RIFF') && ascii(b, 8, 'WEBP')) {
    const s = webpSize(b)
    return sized('image/webp', s?.[0], s?.[1])
  }
  if (ascii(b, 0, 'RIFF') && ascii(b, 8, 'WAVE')) return { type: 'audio/wav' }
  if (ascii(b, 0, 'RIFF') && ascii(b, 8, 'AVI ')) return { type: 'video/x-msvideo' }
  if (ascii(b, 0, '%PDF-')) return { type: 'application/pdf' }
  if (ascii(b, 4, 'ftyp')) {
    if (ascii(b, 8, 'M4A ') || ascii(b, 8, 'M4B ')) return { type: 'audio/mp4' }
    if (ascii(b, 8, 'qt  ')) return { type: 'video/quicktime' }
    if (ascii(b, 8, 'avif') || ascii(b, 8, 'avis')) return { type: 'image/avif' }
    if (ascii(b, 8, 'heic') || ascii(b, 8, 'heix') || ascii(b, 8, 'mif1')) return { type: 'image/heic' }
    return { type: 'video/mp4' }
  }
  if (b[0] === 0x1a && b[1] === 0x45 && b[2] === 0xdf && b[3] === 0xa3)
    return { type: has(b, 'webm', 64) ? 'video/webm' : 'video/x-matroska' }
  if (ascii(b, 0, 'OggS')) return { type: has(b, 'theora', 128) ? 'video/ogg' : 'audio/ogg' }
  if (ascii(b, 0, 'fLaC')) return { type: 'audio/flac' }
  if (ascii(b, 0, 'ID3') || (b[0] === 0xff && (b[1]! & 0xe6) === 0xe2)) return { type: 'audio/mpeg' }
  if (ascii(b, 0, 'BM') && b.length > 26 && b[14]! >= 12) return { type: 'image/bmp' }
  if (ascii(b, 0, 'PK\x03\x04')) return { type: 'application/zip' }
  if (b[0] === 0x1f && b[1] === 0x8b) return { type: 'application/gzip' }
  if (ascii(b, 0, '\x7fELF') || ascii(b, 0, 'MZ')) return { type: 'application/x-executable' }
  if (isText(b, complete)) return { type: markup(b) ?? 'text/plain' }
  return { type: 'application/octet-stream' }
}

/**
 * What a client may call each sniffed type (the names in use for the same format); anything
 * else it declares is a lie. `application/octet-stream` and no type at all say nothing and pass.
 */
const ALIASES: Record<string, string[]> = {
  'image/jpeg': ['image/jpg', 'image/pjpeg'],
  'audio/mpeg': ['audio/mp3', 'audio/mpeg3', 'audio/x-mpeg'],
  'audio/wav': ['audio/x-wav', 'audio/wave', 'audio/vnd.wave'],
  'audio/mp4': ['audio/x-m4a', 'audio/m4a'],
  'video/mp4': ['video/x-m4v', 'audio/mp4', 'application/mp4'],
  'video/webm': ['audio/webm'],
  'audio/ogg': ['video/ogg', 'application/ogg', 'audio/opus', 'audio/vorbis'],
  'video/ogg': ['audio/ogg', 'application/ogg'],
  'audio/flac': ['audio/x-flac'],
  'application/pdf': ['application/x-pdf'],
  'text/plain': ['text/markdown', 'text/x-markdown', 'text/csv', 'text/tab-separated-values', 'text/x-log'],
}

/**
 * The type the upload is kept as, or undefined when the declared one contradicts the content.
 * A declared alias that names the medium more exactly (audio/webm for a WebM) is kept.
 */
export function reconcile(declared: string | undefined, sniffed: string): string | undefined {
  const d = declared?.split(';')[0]?.trim().toLowerCase()
  if (!d || d === 'application/octet-stream' || d === sniffed) return sniffed
  if (!ALIASES[sniffed]?.includes(d)) return undefined
  // Same format, other medium (an audio-only WebM, an Ogg video): the declared medium is kept.
  return d.split('/')[0] !== sniffed.split('/')[0] && /^(audio|video)\//.test(d) ? d : sniffed
}

/**
 * True when `type` matches one of the patterns (`image/*`, `application/pdf`). SVG is an image
 * that can run script: a wildcard never admits it, only the exact `image/svg+xml`.
 */
export function allowedType(type: string, patterns: string[]): boolean {
  return patterns.some((p) => p === type || (p.endsWith('/*') && type !== 'image/svg+xml' && type.startsWith(p.slice(0, -1))))
}
