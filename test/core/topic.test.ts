import { describe, expect, test } from 'bun:test'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import {
  isRoomTopic,
  isUserTopic,
  pusherChannelTopic,
  pusherUserTopic,
  roomTopic,
  topicPusherUser,
  topicRoom,
  topicUser,
  userTopic,
} from '../../src/core/topic'

const SRC = join(import.meta.dir, '..', '..', 'src')
const sources = (dir: string): string[] =>
  readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : []
  })

describe('topic names (core/topic.ts)', () => {
  // Ids as the hub allows them, with the characters that could confuse a parse at a prefix.
  const ids = ['lobby', 'a:b', 'u:x', 'r:', 'pu:y', 'p', 'é', '']

  test('each kind reads back what it built, and no kind reads another kind', () => {
    for (const id of ids) {
      expect(topicRoom(roomTopic(id))).toBe(id)
      expect(topicUser(userTopic(id))).toBe(id)
      expect(topicPusherUser(pusherUserTopic(id))).toBe(id)
      expect(isRoomTopic(roomTopic(id))).toBe(true)
      expect(isUserTopic(userTopic(id))).toBe(true)
      for (const other of [userTopic(id), pusherUserTopic(id), pusherChannelTopic(id)]) {
        expect(topicRoom(other)).toBeUndefined()
        expect(isRoomTopic(other)).toBe(false)
      }
      for (const other of [roomTopic(id), pusherUserTopic(id), pusherChannelTopic(id)]) {
        expect(topicUser(other)).toBeUndefined()
        expect(isUserTopic(other)).toBe(false)
      }
      for (const other of [roomTopic(id), userTopic(id), pusherChannelTopic(id)]) expect(topicPusherUser(other)).toBeUndefined()
    }
  })

  test('no module of src/ but core/topic.ts spells a topic prefix by hand', () => {
    // A topic built as `r:${room}` or read with startsWith('u:') / slice(2) outside the module
    // is the second spelling this module replaced: the kinds must be read in one place.
    const handSpelled = /['"`](?:r|u|p|pu):(?:['"`]|\$\{)|charCodeAt\(0\) === 117/
    const found = sources(SRC)
      .filter((f) => !f.endsWith(join('core', 'topic.ts')))
      .flatMap((f) =>
        readFileSync(f, 'utf8')
          .split('\n')
          .map((line, i) => [line, `${relative(SRC, f)}:${i + 1}`] as const)
          .filter(([line]) => handSpelled.test(line) && !line.trim().startsWith('*') && !line.trim().startsWith('//'))
          .map(([, where]) => where),
      )
    expect(found).toEqual([])
  })
})
