/**
 * The name a download is saved under. A browser saves a file by the name it is given, and the
 * OS opens it by that name's extension, whatever the `Content-Type` was: `evil.html` served as
 * `text/plain` would be saved as a page that runs when opened, `run.bat` as a script. So the
 * extension follows the type we sniffed and serve: a name whose last extension is not one of
 * that type's gets the type's own appended (`evil.html` → `evil.html.txt`), the way a browser
 * names a file it saves as that type; a name with none gets it too (`README` → `README.txt`).
 */

/** The extensions each served type is known by; the first is the one appended. */
const EXTENSIONS: Record<string, string[]> = {
  'text/plain': ['txt', 'text', 'md', 'markdown', 'log', 'csv', 'tsv'],
  'text/html': ['html', 'htm'],
  'application/xml': ['xml'],
  'image/png': ['png'],
  'image/jpeg': ['jpg', 'jpeg', 'jpe', 'jfif'],
  'image/gif': ['gif'],
  'image/webp': ['webp'],
  'image/bmp': ['bmp'],
  'image/avif': ['avif'],
  'image/heic': ['heic', 'heif'],
  'image/svg+xml': ['svg'],
  'application/pdf': ['pdf'],
  'audio/mpeg': ['mp3'],
  'audio/wav': ['wav'],
  'audio/mp4': ['m4a', 'm4b', 'mp4'],
  'audio/ogg': ['ogg', 'oga', 'opus'],
  'audio/webm': ['weba', 'webm'],
  'audio/flac': ['flac'],
  'video/mp4': ['mp4', 'm4v'],
  'video/quicktime': ['mov', 'qt'],
  'video/webm': ['webm'],
  'video/x-matroska': ['mkv', 'mka'],
  'video/ogg': ['ogv', 'ogg'],
  'video/x-msvideo': ['avi'],
  // Office and OpenDocument files are zips, and so are .jar and .apk, which run: not kept.
  'application/zip': ['zip', 'docx', 'xlsx', 'pptx', 'odt', 'ods', 'odp', 'epub'],
  'application/gzip': ['gz', 'tgz'],
  'application/x-executable': ['bin', 'exe', 'dll', 'so'],
  // Unknown bytes say nothing of what they are: whatever name they came with, .bin.
  'application/octet-stream': ['bin'],
}

/**
 * Characters that change how a name is displayed but not what it is: bidirectional overrides
 * and marks (`evil\u202Etxt.exe` shows as `evilexe.txt`), zero-width ones.
 */
export const INVISIBLE = /[\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g

/** `name` (as cleanName keeps it) with an extension that says `type`. */
export function downloadName(name: string, type: string): string {
  // Windows drops trailing dots and spaces: `evil.html.` would be saved as `evil.html`.
  const base = name.replace(INVISIBLE, '').replace(/[. ]+$/, '') || 'file'
  const known = EXTENSIONS[type] ?? ['bin']
  const dot = base.lastIndexOf('.')
  const ext = dot > 0 || (dot === 0 && base.length > 1) ? base.slice(dot + 1).toLowerCase() : ''
  return known.includes(ext) ? base : `${base}.${known[0]}`
}

/** Shown by the browser (img, video, audio elements, or opened in a tab); anything else is a download. */
export const inline = (type: string) => /^(image|video|audio)\//.test(type) && type !== 'image/svg+xml'

/** RFC 5987's attr-char: encodeURIComponent leaves `'`, `(`, `)`, `*` and `!` as they are. */
const extValue = (s: string) => encodeURIComponent(s).replace(/['()*!]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)

/**
 * `Content-Disposition` for a download: `filename` (an ASCII fallback, no quote, backslash or
 * control character, so nothing can end the header or the quoted string) and `filename*` (the
 * UTF-8 name, percent-encoded), as RFC 6266 has them; both the name downloadName() makes.
 */
export function contentDisposition(type: string, name: string): string {
  const saved = downloadName(name, type)
  const ascii = saved.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_')
  return `${inline(type) ? 'inline' : 'attachment'}; filename="${ascii}"; filename*=UTF-8''${extValue(saved)}`
}
