import type Redis from 'ioredis'
import type { RunScript } from './script-client'
import APPEND from './lua/append.lua' with { type: 'text' }
import INIT from './lua/init.lua' with { type: 'text' }
import SINCE from './lua/since.lua' with { type: 'text' }
import SUMMARY from './lua/summary.lua' with { type: 'text' }
import PERSISTED from './lua/persisted.lua' with { type: 'text' }
import DUE_DONE from './lua/due-done.lua' with { type: 'text' }
import FENCE from './lua/fence.lua' with { type: 'text' }
import UNLOCK from './lua/unlock.lua' with { type: 'text' }
import FENCED from './lua/fenced.lua' with { type: 'text' }
import WINDOW_HOLD from './lua/window-hold.lua' with { type: 'text' }
import WINDOW_TAKE from './lua/window-take.lua' with { type: 'text' }

/**
 * Lua scripts of the Redis engine. Each runs atomically on the Redis server, so one call is
 * one consistent step however many nodes send at once.
 *
 * Keys of a room (P = REDIS_PREFIX): `P{room}:state` hash {seq, epoch, fs: the seq the epoch
 * started from}; `P{room}:log` stream
 * whose entry ids are `<seq>-0` and whose field `f` is the encoded chat frame.
 */

/**
 * The cluster form of a script that writes a room (KEYS[1] = its state): it first checks that
 * this primary is the room's writer ({-2} else: the node fences and calls again), and
 * publishes on the room's shard channel. The scripts' text stays one for both modes.
 */
/** How a FENCE's new epoch starts on the room's channel (no frame starts so). */
export const RESET_HEAD = '{"epoch":'

const sharded = (lua: string) => FENCED + lua.replaceAll("call('PUBLISH'", "call('SPUBLISH'")

/** One event's answer of append.lua (see its header). */
export type AppendResult = [number, (number | string)?, string?]

/** The Redis client with the scripts above as commands (EVALSHA, falling back to EVAL). */
export type Scripted = Redis & {
  chatSummary(
    state: string,
    log: string,
    read: number,
    needle: string,
    cap: number,
    budget: number,
    chatHead: string,
    dmHead: string,
  ): Promise<[number, string, number, number, string] | [-1]>
  /** The append script with its 5 keys (the first argument a key: what a Redis Cluster's auto-pipelining groups by). */
  chatAppend(...keysAndArgs: (string | number)[]): Promise<AppendResult[] | [-2]>
  chatPersisted(state: string, upTo: number): Promise<[number, number]>
  dueDone(due: string, room: string, now: number): Promise<number>
  chatFence(state: string, epoch: string, observed: string, channel: string, gap: number): Promise<[number, string, string] | [-1]>
  unlock(lock: string, owner: string): Promise<number>
  chatInit(state: string, seq: number, epoch: string, ttlMs: number): Promise<[string, string, string | null]>
  chatSince(state: string, log: string, since: number): Promise<[number, string, [string, string[]][], string] | [-1]>
  chatSince(state: string, log: string, since: number, upto: number): Promise<[number, string, [string, string[]][], string, number] | [-1]>
  windowHold(changes: string, mark: string, change: string, token: string, markMs: number): Promise<number>
  windowTake(changes: string, mark: string, token: string): Promise<string[]>
}

/** The scripts a node calls on every connect, close or resume (see `hotScripts`). */
export type HotScripts = Pick<Scripted, 'chatSummary' | 'chatSince' | 'windowHold' | 'windowTake'>

/**
 * The scripts of a connect's path (a member's summary, a resume's read, a presence window's hold
 * and take), run through Bun's client when the engine has it (one Redis: `run` is the script
 * connection's, script-client.ts) and through ioredis's defined commands otherwise (a Redis
 * Cluster). An EVALSHA costs a node's client 32–59 µs of CPU through ioredis and 19–21 µs through
 * Bun's (docs/performance.md, round 3), and a socket's close and resume make about four of them.
 */
export function hotScripts(cmd: Scripted, run?: RunScript): HotScripts {
  if (!run) return cmd
  const call = <T>(lua: string, keys: string[], args: (string | number)[]) => run(lua, keys, args) as Promise<T>
  return {
    chatSummary: (state, log, ...args) => call(SUMMARY, [state, log], args),
    chatSince: ((state: string, log: string, ...args: number[]) => call(SINCE, [state, log], args)) as Scripted['chatSince'],
    windowHold: (changes, mark, ...args) => call(WINDOW_HOLD, [changes, mark], args),
    windowTake: (changes, mark, token) => call(WINDOW_TAKE, [changes, mark], [token]),
  }
}

/** The append script as the engine runs it: fenced and sharded in a Redis Cluster. */
export const appendScript = (cluster: boolean) => (cluster ? sharded(APPEND) : APPEND)

/** `cluster`: the client is a Redis Cluster's (sharded publish, writes fenced per primary). */
export function withScripts(redis: Redis, cluster = false): Scripted {
  redis.defineCommand('chatAppend', { numberOfKeys: 5, lua: appendScript(cluster) })
  redis.defineCommand('chatSummary', { numberOfKeys: 2, lua: SUMMARY })
  redis.defineCommand('chatPersisted', { numberOfKeys: 1, lua: PERSISTED })
  redis.defineCommand('dueDone', { numberOfKeys: 1, lua: DUE_DONE })
  redis.defineCommand('chatFence', { numberOfKeys: 1, lua: FENCE })
  redis.defineCommand('unlock', { numberOfKeys: 1, lua: UNLOCK })
  redis.defineCommand('chatInit', { numberOfKeys: 1, lua: INIT })
  redis.defineCommand('chatSince', { numberOfKeys: 2, lua: SINCE })
  redis.defineCommand('windowHold', { numberOfKeys: 2, lua: WINDOW_HOLD })
  redis.defineCommand('windowTake', { numberOfKeys: 2, lua: WINDOW_TAKE })
  return redis as Scripted
}

/**
 * Every key and channel, under one prefix. Whatever belongs to one room (its keys, its retry
 * keys, its channel) shares the room's hash tag `{room}`, so it lives in one slot of a Redis
 * Cluster; a user's channel has the tag of the user.
 */
export function redisKeys(P: string) {
  return {
    state: (room: string) => `${P}{${room}}:state`,
    log: (room: string) => `${P}{${room}}:log`,
    /** Topic `r:<room>` -> `P{<room>}:ch:r`, `u:<user>` -> `P{<user>}:ch:u`. */
    channel: (topic: string) => {
      const i = topic.indexOf(':')
      return `${P}{${topic.slice(i + 1)}}:ch:${topic.slice(0, i)}`
    },
    topicOf: (channel: string) => {
      const i = channel.lastIndexOf('}:ch:')
      return `${channel.slice(i + 5)}:${channel.slice(P.length + 1, i)}`
    },
    /** hash: message id -> its current state (message-rules.ts); list: those ids, oldest first. */
    msgs: (room: string) => `${P}{${room}}:msgs`,
    msgOrder: (room: string) => `${P}{${room}}:msgorder`,
    /** hash: pinned message id -> {s its seq, b who pinned, t when} (append.lua). */
    pins: (room: string) => `${P}{${room}}:pins`,
    /** list: a big room's presence changes held in its window; string: the token of the node that opened it. */
    window: (room: string) => `${P}{${room}}:pw`,
    windowMark: (room: string) => `${P}{${room}}:pwo`,
    /** zset: room -> until when a node's lease keeps it due for the archive repair. */
    unpersisted: `${P}archive-due`,
    repairLock: `${P}repair-lock`,
  }
}

export type RedisKeys = ReturnType<typeof redisKeys>
