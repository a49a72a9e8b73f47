// One concept, one spelling (issue 33): a test that a message is a chat or dm frame, written
// again where it is needed, drifts from the one the unread count and the search use.
import { describe, expect, test } from 'bun:test'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { DM_HEAD, chatFrame, frames, isMessageFrame } from '../../src/protocol/server-frames'

const ROOT = join(import.meta.dir, '..', '..')
const SRC = join(ROOT, 'src')
const sources = (dir: string, ext = /\.ts$/): string[] =>
  readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    return name === 'node_modules' ? [] : statSync(p).isDirectory() ? sources(p, ext) : ext.test(p) ? [p] : []
  })

/**
 * Exported and read nowhere, kept on purpose: the event as a webhook receiver gets it (the wire
 * contract written as a type), and a type another branch of issue 33 declares as an interface.
 */
const UNREAD_ON_PURPOSE = new Set(['WebhookEvent', 'Listeners'])

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

  test('no export of src/ is dead: each name declared there is read somewhere (src, test, bench, client, web, scripts)', () => {
    // A dead export is a second spelling in waiting (a limit nobody enforces, a list nobody reads).
    const files = ['src', 'test', 'bench', 'client/src', 'web', 'scripts'].flatMap((d) => sources(join(ROOT, d), /\.(ts|tsx|js|mjs|html)$/))
    const text = files.map((f) => readFileSync(f, 'utf8')).join('\n')
    const declared = sources(SRC).flatMap((f) =>
      [
        ...readFileSync(f, 'utf8').matchAll(
          /^export (?:declare )?(?:async )?(?:const|let|function\*?|class|type|interface|enum) ([A-Za-z_$][\w$]*)/gm,
        ),
      ].map((m) => [m[1]!, relative(SRC, f)] as const),
    )
    expect(declared.length).toBeGreaterThan(200)
    const count = (name: string) => text.match(new RegExp(`(?<![\\w$])${name.replace(/\$/g, '\\$')}(?![\\w$])`, 'g'))?.length ?? 0
    const dead = declared.filter(([name]) => !UNREAD_ON_PURPOSE.has(name) && count(name) <= 1).map(([name, file]) => `${file}: ${name}`)
    expect(dead).toEqual([])
  })
})
