import { readFileSync } from 'node:fs'
import { FrameError } from '../core/errors'
import { EMPTY_WORDS, compileWords, maskWords } from '../core/word-filter'
import type { WordList } from '../core/word-filter'

/**
 * The word filter of a node (PROTOCOL-v4): MODERATION_WORDS_FILE compiled at start (an
 * unreadable file or a bad line stops the start, naming the variable), reread on SIGHUP (a bad
 * file then keeps the list in use), applied by MODERATION_WORDS_ACTION to the bodies of `chat`,
 * `dm` and `edit`, and to whatever else users write that others read (poll texts): every such
 * path calls `filterText`.
 */
export interface WordFilter {
  /** The text as it may be kept: masked (`mask`), or refused with error `rejected` (`reject`); `what` names the field. */
  filterText(text: string, what?: string): string
  /** Rereads the file; throws (the old list stays) when it cannot be read or compiled. */
  reload(): { size: number }
  readonly size: number
}

export type WordsAction = 'mask' | 'reject'

/** Reads and compiles the list; the error names MODERATION_WORDS_FILE. */
function readList(file: string): WordList {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new Error(`MODERATION_WORDS_FILE: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  try {
    return compileWords(text)
  } catch (err) {
    throw new Error(`MODERATION_WORDS_FILE: ${file} ${(err as Error).message}`)
  }
}

export function createWordFilter(opts: { file?: string; action: WordsAction }): WordFilter {
  let list = opts.file ? readList(opts.file) : EMPTY_WORDS
  return {
    filterText(text, what = 'body') {
      if (list.size === 0) return text
      const r = maskWords(list, text)
      if (!r.matched) return text
      if (opts.action === 'reject') throw new FrameError('rejected', `${what}: contains a word this server does not accept`)
      return r.text
    },
    reload() {
      if (!opts.file) return { size: 0 }
      list = readList(opts.file)
      return { size: list.size }
    },
    get size() {
      return list.size
    },
  }
}
