/**
 * The word filter's matching (PROTOCOL-v4 "Word filter"), pure: a list (one word or phrase, or
 * `/regex/flags`, per line; `#` starts a comment) compiled once, then each text searched.
 *
 * Words match whole words, case- and accent-insensitively: the text is searched in a folded
 * form (NFD, combining marks removed) whose every character knows where it came from in the
 * original, so a match masks the original characters ("Ďamn" → "****"). A plain word is looked
 * up in a Set per word of the text (the cost does not grow with the list); phrases and regex
 * lines are regular expressions run on the folded text (regexes with their own flags: add `i`
 * for case-insensitive).
 */

/** A compiled list. */
export interface WordList {
  /** Single words, folded and lowercase. */
  words: ReadonlySet<string>
  /** Phrases (whole words, folded) and the `/regex/flags` lines, each global. */
  patterns: readonly RegExp[]
  /** Entries in the list (for logs). */
  size: number
}

/** Thrown on a line that cannot be compiled; the message names the line. */
export class WordListError extends Error {}

export const EMPTY_WORDS: WordList = { words: new Set(), patterns: [], size: 0 }

const MARKS = /\p{M}+/gu
const NON_ASCII = /[^\x00-\x7f]/
/** What a word is made of: letters, digits, marks and `_` (the edges of a whole-word match). */
const WORD_CHARS = '\\p{L}\\p{N}\\p{M}_'
const ASCII_WORD = /[A-Za-z0-9_]+/g
const UNICODE_WORD = /[\p{L}\p{N}_]+/gu

/** A word or phrase as it is compared: NFD, no combining marks, lowercase, spaces collapsed. */
export const foldWord = (w: string) => w.normalize('NFD').replace(MARKS, '').toLowerCase().trim().replace(/\s+/g, ' ')

/** A phrase's text as a pattern of itself (`-` needs no escape outside a class, and may not have one under the `u` flag). */
const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')

/** Compiles a list's text; throws WordListError naming the first bad line. */
export function compileWords(text: string): WordList {
  const words = new Set<string>()
  const patterns: RegExp[] = []
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim()
    if (!line || line.startsWith('#')) continue
    const rx = /^\/(.+)\/([a-z]*)$/s.exec(line)
    if (rx) {
      const flags = rx[2]!
      if (/[^imsuv]/.test(flags))
        throw new WordListError(`line ${i + 1}: ${line.slice(0, 80)}: flags may be i, m, s, u, v (g and y are the filter's)`)
      try {
        patterns.push(new RegExp(rx[1]!, `g${flags}`))
      } catch (err) {
        throw new WordListError(`line ${i + 1}: ${line.slice(0, 80)}: ${(err as Error).message}`)
      }
      continue
    }
    const w = foldWord(line)
    if (!w) continue
    if (/^[\p{L}\p{N}_]+$/u.test(w)) words.add(w)
    else patterns.push(new RegExp(`(?<![${WORD_CHARS}])${w.split(' ').map(literal).join('\\s+')}(?![${WORD_CHARS}])`, 'giu'))
  }
  return { words, patterns, size: words.size + patterns.length }
}

/** A text folded for matching, and for each of its code units the original's [start, end). */
interface Folded {
  text: string
  /** Undefined when the text is ASCII: folded and original are the same positions. */
  from?: Int32Array
  to?: Int32Array
}

/** A non-ASCII character's folded form, cached (a chat's alphabet is small; the cache is bounded). */
const FOLDS = new Map<number, string>()
function foldChar(cp: number): string {
  let f = FOLDS.get(cp)
  if (f === undefined) {
    f = String.fromCodePoint(cp).normalize('NFD').replace(MARKS, '')
    if (FOLDS.size < 8192) FOLDS.set(cp, f)
  }
  return f
}

function fold(text: string): Folded {
  if (!NON_ASCII.test(text)) return { text }
  let out = ''
  // While every character folds to as many code units as it has (é → e), positions are the
  // original's and no map is needed; the maps are made from the first one that does not.
  let from: number[] | undefined
  let to: number[] | undefined
  for (let i = 0; i < text.length; ) {
    const cp = text.codePointAt(i)!
    const n = cp > 0xffff ? 2 : 1
    const f = cp < 0x80 ? text[i]! : foldChar(cp)
    if (!from && f.length !== n) {
      from = Array.from({ length: out.length }, (_, k) => k)
      to = from.map((k) => k + 1)
    }
    if (from && to) {
      for (let k = 0; k < f.length; k++) {
        from.push(i)
        to.push(i + n)
      }
      // A mark left alone (already decomposed text) belongs to the character before it.
      if (!f.length && to.length) to[to.length - 1] = i + n
    }
    out += f
    i += n
  }
  return from && to ? { text: out, from: Int32Array.from(from), to: Int32Array.from(to) } : { text: out }
}

/** Where the list matches the text: ranges of the original [start, end) and the mask length of each. */
export function findWords(list: WordList, text: string): { start: number; end: number; length: number }[] {
  if (list.size === 0 || !text) return []
  const f = fold(text)
  const found: { start: number; end: number; length: number }[] = []
  const add = (s: number, e: number) => {
    if (e <= s) return
    const start = f.from ? f.from[s]! : s
    const end = f.to ? f.to[e - 1]! : e
    found.push({ start, end, length: [...f.text.slice(s, e)].length })
  }
  if (list.words.size) {
    const re = f.from ? UNICODE_WORD : ASCII_WORD
    re.lastIndex = 0
    for (let m = re.exec(f.text); m; m = re.exec(f.text)) if (list.words.has(m[0].toLowerCase())) add(m.index, m.index + m[0].length)
  }
  for (const p of list.patterns) {
    p.lastIndex = 0
    for (let m = p.exec(f.text); m; m = p.exec(f.text)) {
      if (m[0].length === 0) {
        p.lastIndex++
        continue
      }
      add(m.index, m.index + m[0].length)
    }
  }
  return found
}

/** The text with every match replaced by `*` of its length (overlapping matches merged); `matched` false when nothing matched. */
export function maskWords(list: WordList, text: string): { text: string; matched: boolean } {
  const found = findWords(list, text)
  if (!found.length) return { text, matched: false }
  found.sort((a, b) => a.start - b.start || b.end - a.end)
  let out = ''
  let at = 0
  for (const m of found) {
    if (m.end <= at) continue
    if (m.start < at) {
      // Overlaps the previous match: mask the rest of it, a character per code point.
      out += '*'.repeat([...text.slice(at, m.end)].length)
    } else out += text.slice(at, m.start) + '*'.repeat(m.length)
    at = m.end
  }
  return { text: out + text.slice(at), matched: true }
}
