import { describe, expect, test } from 'bun:test'
import { allowedType, reconcile, sniff } from '../../src/uploads/sniff'
import { cleanName } from '../../src/uploads/receive'
import { contentDisposition, downloadName } from '../../src/uploads/download-name'

/** Types from magic numbers, image sizes from headers, the declared type compared, never believed. */

const bytes = (...parts: (string | number[])[]) => {
  const out: number[] = []
  for (const p of parts) typeof p === 'string' ? out.push(...[...p].map((c) => c.charCodeAt(0))) : out.push(...p)
  return new Uint8Array(out)
}
const pad = (b: Uint8Array, n = 64) => {
  const out = new Uint8Array(Math.max(n, b.length))
  out.set(b)
  return out
}

describe('sniff', () => {
  test('images, with their size where the header gives it', () => {
    expect(sniff(pad(bytes([0x89], 'PNG\r\n\x1a\n', [0, 0, 0, 13], 'IHDR', [0, 0, 2, 0, 0, 0, 1, 0x80])), true)).toEqual({
      type: 'image/png',
      width: 512,
      height: 384,
    })
    expect(sniff(pad(bytes('GIF89a', [0x40, 0x01, 0xf0, 0x00])), true)).toEqual({ type: 'image/gif', width: 320, height: 240 })
    // JPEG: SOI, an APP0 segment of 16 bytes, then SOF0 with height 600 and width 800.
    const jpeg = bytes(
      [0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10],
      'JFIF\0',
      new Array(9).fill(0),
      [0xff, 0xc0, 0x00, 0x11, 0x08, 0x02, 0x58, 0x03, 0x20, 0x03],
    )
    expect(sniff(pad(jpeg), true)).toEqual({ type: 'image/jpeg', width: 800, height: 600 })
    // WebP lossless (VP8L): 14-bit width-1 and height-1 after the signature byte 0x2f.
    const w = 100 - 1
    const h = 50 - 1
    const bits = w | (h << 14)
    const vp8l = bytes('RIFF', [0, 0, 0, 0], 'WEBPVP8L', [
      0,
      0,
      0,
      0,
      0x2f,
      bits & 0xff,
      (bits >> 8) & 0xff,
      (bits >> 16) & 0xff,
      (bits >> 24) & 0xff,
    ])
    expect(sniff(pad(vp8l), true)).toEqual({ type: 'image/webp', width: 100, height: 50 })
  })

  test('documents, audio and video', () => {
    expect(sniff(pad(bytes('%PDF-1.7\n')), true).type).toBe('application/pdf')
    expect(sniff(pad(bytes([0, 0, 0, 0x20], 'ftypisom')), true).type).toBe('video/mp4')
    expect(sniff(pad(bytes([0, 0, 0, 0x20], 'ftypM4A ')), true).type).toBe('audio/mp4')
    expect(sniff(pad(bytes([0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x86, 0x81, 0x01, 0x42, 0x82, 0x84], 'webm')), true).type).toBe(
      'video/webm',
    )
    expect(sniff(pad(bytes('OggS', [0, 2], new Array(22).fill(0), 'OpusHead')), true).type).toBe('audio/ogg')
    expect(sniff(pad(bytes('ID3', [4, 0, 0])), true).type).toBe('audio/mpeg')
    expect(sniff(pad(bytes([0xff, 0xfb, 0x90, 0x64])), true).type).toBe('audio/mpeg')
    expect(sniff(pad(bytes('RIFF', [0, 0, 0, 0], 'WAVEfmt ')), true).type).toBe('audio/wav')
    expect(sniff(pad(bytes('fLaC')), true).type).toBe('audio/flac')
    expect(sniff(pad(bytes('PK', [3, 4])), true).type).toBe('application/zip')
  })

  test('text: UTF-8 without NUL is text/plain; markup is not; binary is octet-stream', () => {
    expect(sniff(new TextEncoder().encode('héllo wörld ✓\n'), true).type).toBe('text/plain')
    // A multi-byte character cut by the end of the sniffed bytes does not make it binary.
    const cut = new TextEncoder().encode('abc✓').subarray(0, 5)
    expect(sniff(cut, false).type).toBe('text/plain')
    expect(sniff(cut, true).type).toBe('application/octet-stream')
    expect(sniff(new TextEncoder().encode('  <!DOCTYPE html><p>x'), true).type).toBe('text/html')
    expect(sniff(new TextEncoder().encode('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'), true).type).toBe(
      'image/svg+xml',
    )
    expect(sniff(bytes('abc', [0], 'def'), true).type).toBe('application/octet-stream')
    expect(sniff(new Uint8Array([1, 2, 3, 4, 5, 6, 200, 201]), true).type).toBe('application/octet-stream')
  })
})

describe('reconcile and allowedType', () => {
  test('the declared type must be the sniffed one, an alias, or say nothing', () => {
    expect(reconcile(undefined, 'image/png')).toBe('image/png')
    expect(reconcile('application/octet-stream', 'image/png')).toBe('image/png')
    expect(reconcile('IMAGE/JPG; q=1', 'image/jpeg')).toBe('image/jpeg')
    expect(reconcile('audio/webm', 'video/webm')).toBe('audio/webm')
    expect(reconcile('text/markdown', 'text/plain')).toBe('text/plain')
    expect(reconcile('image/png', 'application/pdf')).toBeUndefined()
    expect(reconcile('text/html', 'text/plain')).toBeUndefined()
  })
  test('patterns: wildcards by major type, but SVG only when named', () => {
    const def = ['image/*', 'video/*', 'audio/*', 'application/pdf', 'text/plain']
    expect(allowedType('image/webp', def)).toBe(true)
    expect(allowedType('application/pdf', def)).toBe(true)
    expect(allowedType('application/zip', def)).toBe(false)
    expect(allowedType('text/html', def)).toBe(false)
    expect(allowedType('image/svg+xml', def)).toBe(false)
    expect(allowedType('image/svg+xml', [...def, 'image/svg+xml'])).toBe(true)
  })
  test('file names lose their path and control characters', () => {
    expect(cleanName('../../etc/passwd')).toBe('passwd')
    expect(cleanName('C:\\\\Users\\\\x\\\\a.png')).toBe('a.png')
    expect(cleanName('a\u0000b\nc.txt')).toBe('abc.txt')
    expect(cleanName('')).toBe('file')
    expect(cleanName('x'.repeat(300)).length).toBe(255)
    // A right-to-left override would show `evil\u202Etxt.exe` as `evilexe.txt`.
    expect(cleanName('evil\u202Etxt.exe')).toBe('eviltxt.exe')
    expect(cleanName('a\u200bb\u2066.png')).toBe('ab.png')
  })
})

describe('download names: the extension follows the served type', () => {
  test("a name whose extension is not one of the type's gets the type's own appended", () => {
    expect(downloadName('evil.html', 'text/plain')).toBe('evil.html.txt')
    expect(downloadName('evil.HTML', 'text/plain')).toBe('evil.HTML.txt')
    expect(downloadName('image.svg', 'text/plain')).toBe('image.svg.txt')
    expect(downloadName('run.bat', 'text/plain')).toBe('run.bat.txt')
    expect(downloadName('setup.js', 'text/plain')).toBe('setup.js.txt')
    expect(downloadName('evil.html', 'application/pdf')).toBe('evil.html.pdf')
    expect(downloadName('tool.jar', 'application/zip')).toBe('tool.jar.zip')
    expect(downloadName('page.html', 'application/octet-stream')).toBe('page.html.bin')
    expect(downloadName('photo.jpg', 'image/png')).toBe('photo.jpg.png')
    expect(downloadName('x.svg', 'image/svg+xml')).toBe('x.svg')
  })
  test("a name with the type's extension is kept; none, or trailing dots, get it", () => {
    expect(downloadName('notes.txt', 'text/plain')).toBe('notes.txt')
    expect(downloadName('README.md', 'text/plain')).toBe('README.md')
    expect(downloadName('Photo.JPEG', 'image/jpeg')).toBe('Photo.JPEG')
    expect(downloadName('report.docx', 'application/zip')).toBe('report.docx')
    expect(downloadName('voice.webm', 'audio/webm')).toBe('voice.webm')
    expect(downloadName('README', 'text/plain')).toBe('README.txt')
    expect(downloadName('.html', 'text/plain')).toBe('.html.txt')
    // Windows drops trailing dots and spaces: `evil.html.` would be saved as `evil.html`.
    expect(downloadName('evil.html. . ', 'text/plain')).toBe('evil.html.txt')
    expect(downloadName('...', 'text/plain')).toBe('file.txt')
    expect(downloadName('evil\u202Etxt.exe', 'text/plain')).toBe('eviltxt.exe.txt')
    expect(downloadName('odd', 'type/never-sniffed')).toBe('odd.bin')
  })
  test('Content-Disposition: nothing in a name ends the header or the quoted string; filename* is RFC 5987', () => {
    expect(contentDisposition('text/plain', 'evil.html')).toBe(`attachment; filename="evil.html.txt"; filename*=UTF-8''evil.html.txt`)
    expect(contentDisposition('image/png', 'dot.png')).toBe(`inline; filename="dot.png"; filename*=UTF-8''dot.png`)
    expect(contentDisposition('image/svg+xml', 'x.svg')).toStartWith('attachment; ')
    const d = contentDisposition('text/plain', `it's "a" \\ (1)*!;x\r\nSet-Cookie: a=b.txt`)
    expect(d).toBe(
      `attachment; filename="it's _a_ _ (1)*!;x__Set-Cookie: a=b.txt"; filename*=UTF-8''it%27s%20%22a%22%20%5C%20%281%29%2A%21%3Bx%0D%0ASet-Cookie%3A%20a%3Db.txt`,
    )
    expect(() => new Headers({ 'content-disposition': d })).not.toThrow()
    expect(contentDisposition('text/plain', 'café ü.txt')).toBe(
      `attachment; filename="caf_ _.txt"; filename*=UTF-8''caf%C3%A9%20%C3%BC.txt`,
    )
  })
})
