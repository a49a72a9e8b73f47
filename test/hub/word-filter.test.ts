// The word filter (PROTOCOL-v4): MODERATION_WORDS_FILE words and /regex/ lines matched as whole
// words, case- and accent-insensitively, masked or rejected in chat, dm and edit bodies, and
// reread on SIGHUP.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { compileWords, maskWords } from '../../src/core/word-filter'
import { connect } from '../helpers/client'
import type { TestClient } from '../helpers/client'
import { runServerOnce, startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

const mask = (list: string, text: string) => maskWords(compileWords(list), text).text

describe('matching', () => {
  test('a word is masked by `*` of its length, whatever its case', () => {
    expect(mask('damn', 'Damn it, DAMN!')).toBe('**** it, ****!')
  })

  test('accents do not hide a word, and the original characters are masked at their places', () => {
    expect(mask('damn', 'Ďamn and dãmn, ok')).toBe('**** and ****, ok')
    // Already decomposed text (D + combining caron): the mark goes with its letter.
    expect(mask('damn', 'x D\u030Camn y')).toBe('x **** y')
    // A listed word with accents matches the plain spelling too.
    expect(mask('café', 'un cafe, un CAFÉ')).toBe('un ****, un ****')
    // Characters before the match that fold to several code units keep their places.
    expect(mask('bad', 'ﬁ Ǆ é bad ok')).toBe('ﬁ Ǆ é *** ok')
    // Hangul folds to more code units, a lone mark to none: what follows still masks at its place.
    expect(mask('bad', '한 e\u0301 bad ok, 한BAD')).toBe('한 e\u0301 *** ok, 한BAD')
    expect(mask('bad', 'e\u0301e\u0301 bad')).toBe('e\u0301e\u0301 ***')
  })

  test('whole words only: "ass" does not mask "class" or "assess"', () => {
    expect(mask('ass', 'class assess ass')).toBe('class assess ***')
    expect(mask('ass', 'the_ass ass_ 1ass')).toBe('the_ass ass_ 1ass')
  })

  test('phrases, regex lines, comments and blank lines', () => {
    const list = ['# a comment', '', 'bad  word', '/fr[o0]+g/i', '/\\d{4}-\\d{4}/'].join('\n')
    expect(mask(list, 'a Bad word here, FROOOG and fr0g, call 1234-5678')).toBe('a ******** here, ****** and ****, call *********')
    expect(mask(list, 'badword # a comment')).toBe('badword # a comment')
    expect(mask('e-mail spam\nc++', 'E-mail  spam in c++ and e-mail')).toBe('************ in *** and e-mail')
  })

  test('a bad regex line is refused, naming its line', () => {
    expect(() => compileWords('ok\n/([a-z/i')).toThrow(/line 2/)
    expect(() => compileWords('/x/g')).toThrow(/line 1.*flags/)
  })
})

describe('on a server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'words-'))
  const file = join(dir, 'words.txt')
  let masking: RunningServer
  let rejecting: RunningServer
  let n = 0
  const user = (s: RunningServer) => connect(s.ws, { user: `u${n++}-${process.pid}` })

  beforeAll(async () => {
    writeFileSync(file, 'damn\n/fr[o0]g/i\n')
    ;[masking, rejecting] = await Promise.all([
      startServer({ env: { MODERATION_WORDS_FILE: file } }),
      startServer({ env: { MODERATION_WORDS_FILE: file, MODERATION_WORDS_ACTION: 'reject' } }),
    ])
  })
  afterAll(async () => {
    await Promise.all([masking?.stop(), rejecting?.stop()])
  })

  async function chatBody(c: TestClient, other: TestClient, body: string) {
    const ack = await c.request({ type: 'chat', body })
    expect(ack.type).toBe('ack')
    return (await other.next((f) => f.type === 'chat' && f.id === ack.msg)).body
  }

  test('mask: chat, dm and edit bodies are masked; other words pass', async () => {
    const [a, b] = await Promise.all([user(masking), user(masking)])
    expect(await chatBody(a, b, 'Ďamn, a FR0G in class')).toBe('****, a **** in class')
    const ack = await a.request({ type: 'chat', body: 'fine' })
    expect(await a.request({ type: 'edit', room: 'general', msg: ack.msg, body: 'damn edit' })).toMatchObject({ type: 'ack' })
    expect((await b.next({ type: 'edit' })).body).toBe('**** edit')
    await a.request({ type: 'dm', to: b.welcome.user.id, body: 'damn dm' })
    expect((await b.next({ type: 'dm' })).body).toBe('**** dm')
    a.close()
    b.close()
  })

  test("a poll's question and options are masked, and refused with reject", async () => {
    const [a, b] = await Promise.all([user(masking), user(masking)])
    const poll = { question: 'Damn which?', options: ['frog', 'toad'] }
    const ack = await a.request({ type: 'chat', body: 'vote', poll })
    expect(ack.type).toBe('ack')
    const got = await b.next((f) => f.type === 'chat' && f.id === ack.msg)
    expect(got.poll.question).toBe('**** which?')
    expect(got.poll.options.map((o: { text: string }) => o.text)).toEqual(['****', 'toad'])
    const r = await user(rejecting)
    expect(await r.request({ type: 'chat', body: 'vote', poll })).toMatchObject({ type: 'error', code: 'rejected' })
    for (const c of [a, b, r]) c.close()
  })

  test('a scheduled chat is masked when it is sent, and refused at once with reject', async () => {
    const [a, b] = await Promise.all([user(masking), user(masking)])
    const send_at = new Date(Date.now() + 600).toISOString()
    expect(await a.request({ type: 'chat', body: 'later damn', send_at })).toMatchObject({ type: 'ack', send_at })
    expect((await b.next((f) => f.type === 'chat' && f.from.id === a.welcome.user.id, 5000)).body).toBe('later ****')
    const r = await user(rejecting)
    expect(await r.request({ type: 'chat', body: 'later damn', send_at })).toMatchObject({ type: 'error', code: 'rejected' })
    for (const c of [a, b, r]) c.close()
  })

  test('reject: error `rejected`, nothing sent; a clean text passes', async () => {
    const [a, b] = await Promise.all([user(rejecting), user(rejecting)])
    expect(await a.request({ type: 'chat', body: 'oh DAMN' })).toMatchObject({ type: 'error', code: 'rejected' })
    const ok = await a.request({ type: 'chat', body: 'fine' })
    expect(ok.type).toBe('ack')
    expect(await a.request({ type: 'edit', room: 'general', msg: ok.msg, body: 'frog' })).toMatchObject({ type: 'error', code: 'rejected' })
    expect(await a.request({ type: 'dm', to: b.welcome.user.id, body: 'damn' })).toMatchObject({ type: 'error', code: 'rejected' })
    await b.next((f) => f.type === 'chat' && f.body === 'fine')
    expect(b.frames.filter((f) => f.type === 'chat' || f.type === 'dm' || f.type === 'edit').map((f) => f.body)).toEqual(['fine'])
    a.close()
    b.close()
  })

  test('SIGHUP rereads the file; a bad file keeps the list in use', async () => {
    const [a, b] = await Promise.all([user(masking), user(masking)])
    expect(await chatBody(a, b, 'heck damn')).toBe('heck ****')
    writeFileSync(file, 'heck\n')
    masking.proc.kill('SIGHUP')
    await until(() => masking.logs.some((l) => l.msg === 'SIGHUP: word list reloaded'), 'the reload')
    expect(await chatBody(a, b, 'heck damn')).toBe('**** damn')
    writeFileSync(file, '/([/\n')
    masking.proc.kill('SIGHUP')
    await until(() => masking.logs.some((l) => l.msg === 'SIGHUP: word list refused; still using the old one'), 'the refusal')
    expect(await chatBody(a, b, 'heck damn')).toBe('**** damn')
    a.close()
    b.close()
  })
})

describe('startup', () => {
  test('an unreadable file or a bad regex stops the start, naming MODERATION_WORDS_FILE', async () => {
    const missing = await runServerOnce({ MODERATION_WORDS_FILE: '/nonexistent/words.txt' })
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain('MODERATION_WORDS_FILE: cannot read /nonexistent/words.txt')
    const dir = mkdtempSync(join(tmpdir(), 'words-'))
    writeFileSync(join(dir, 'bad.txt'), 'ok\n/([/\n')
    const bad = await runServerOnce({ MODERATION_WORDS_FILE: join(dir, 'bad.txt') })
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/MODERATION_WORDS_FILE: .*line 2/)
    const action = await runServerOnce({ MODERATION_WORDS_ACTION: 'drop' })
    expect(action.stderr).toContain('MODERATION_WORDS_ACTION: expected mask or reject')
  })
})
