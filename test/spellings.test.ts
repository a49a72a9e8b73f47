// One concept, one spelling (issue 33): a test that a message is a chat or dm frame, written
// again where it is needed, drifts from the one the unread count and the search use.
import { describe, expect, test } from 'bun:test'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { DM_HEAD, chatFrame, frames, isMessageFrame } from '../src/protocol/server-frames'

const SRC = join(import.meta.dir, '..', 'src')
const sources = (dir: string): string[] =>
  readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : []
  })

describe('one spelling per concept', () => {
  test('"is a message" (chat or dm) is written once, in protocol/server-frames.ts, and means chat or dm', () => {
    const inlined = sources(SRC)
      .filter((f) => !f.endsWith(join('protocol', 'server-frames.ts')))
      .filter((f) => /startsWith\((CHAT_HEAD|DM_HEAD)\)/.test(readFileSync(f, 'utf8')))
      .map((f) => relative(SRC, f))
    expect(inlined).toEqual([])
    const user = { id: 'u1', name: 'U' }
    expect(isMessageFrame(frames.typing('r', user))).toBe(false)
    expect(isMessageFrame(frames.pong())).toBe(false)
    expect(isMessageFrame(chatFrame(1, ',"room":"r"}'))).toBe(true)
    expect(isMessageFrame(`${DM_HEAD}2,"room":"dm:a:b"}`)).toBe(true)
  })
})
