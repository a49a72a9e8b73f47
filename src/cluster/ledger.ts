import type Redis from 'ioredis'
import { log } from '../log'
import type { Cluster } from './heartbeat'
import PAGE from './lua/ledger-page.lua' with { type: 'text' }
import REAP from './lua/ledger-reap.lua' with { type: 'text' }
import SET from './lua/ledger-set.lua' with { type: 'text' }

/**
 * Who is online, cluster-wide, kept once: facts `key → member → count`, each node holding its
 * share of each count. Presence (room → user), webhook and push liveness (`u` → user, `r` →
 * room), Pusher occupancy (channels → channel) and per-user connection counts (users → user)
 * are books of one ledger: one write per fact, one index per node, one reaper (the cluster's
 * `onNodeDead`), one resync after Redis lost its data.
 */
export interface Ledger {
  /**
   * A named set of facts. `onEdge` hears the cluster's first (`up`) and last (`down`) of a member
   * that no call of this node returned: a dead node's reaping took it to zero, or a resync
   * after Redis lost its data brought it back.
   */
  book(name: string, onEdge?: (edge: 'up' | 'down', key: string, member: string, info: string) => void): Book
  /** Sends every share of this node again (a replica without its latest writes was promoted). */
  resync(): void
  /** At shutdown: lets writes in flight finish (what stays behind is reaped as a dead node's). */
  end(): Promise<void>
}

export interface Book {
  /** One more of `member` under `key` on this node; true when it is the first in the cluster. `info` (a name) is kept with it. */
  up(key: string, member: string, info?: string): Promise<boolean>
  /** One fewer on this node; true when that was the last in the cluster. A member this node has none of: false. */
  down(key: string, member: string): Promise<boolean>
  /** `up` unless the member's count in the cluster has reached `limit` already; false = refused, nothing counted. */
  acquire(key: string, member: string, limit: number, info?: string): Promise<boolean>
  /** How many members the key has in the cluster. */
  count(key: string): Promise<number>
  /** The member's count in the cluster (0: none). */
  weight(key: string, member: string): Promise<number>
  /** One page of the key's members; `cursor` of the answer continues, absent at the end. */
  list(key: string, cursor?: string, limit?: number): Promise<Page>
  /** Which of these members the key has. */
  has(key: string, members: string[]): Promise<Set<string>>
}

export interface Fact {
  member: string
  count: number
  info: string
}

export interface Page {
  facts: Fact[]
  cursor?: string
}

/** A page of every member, for the callers that want them all (a room's presence, the channels of an app). */
export async function listAll(book: Book, key: string): Promise<Fact[]> {
  const out: Fact[] = []
  let cursor: string | undefined
  for (let i = 0; i < 100_000; i++) {
    const page = await book.list(key, cursor, 1000)
    out.push(...page.facts)
    if (!(cursor = page.cursor)) break
  }
  return out
}

interface Entry {
  count: number
  info: string
  /** When it last changed here (a node-wide clock): an acquire refused tells whether others wrote meanwhile. */
  at: number
}

let clock = 0

/** key → member → this node's entry: the node's own truth, re-sent to Redis when Redis lost it. */
type Shares = Map<string, Map<string, Entry>>

function bump(shares: Shares, key: string, member: string, by: 1 | -1, info?: string) {
  let members = shares.get(key)
  if (!members) shares.set(key, (members = new Map()))
  let e = members.get(member)
  if (!e) members.set(member, (e = { count: 0, info: info ?? '', at: 0 }))
  if (info !== undefined) e.info = info
  e.count += by
  e.at = ++clock
  if (e.count <= 0) members.delete(member)
  if (members.size === 0) shares.delete(key)
  return e
}

const countOf = (shares: Shares, key: string, member: string) => shares.get(key)?.get(member)?.count ?? 0

/** One node: this process is the cluster, so its shares are the totals. */
export function memoryLedger(): Ledger {
  const book = (): Book => {
    const shares: Shares = new Map()
    return {
      async up(key, member, info) {
        return bump(shares, key, member, 1, info).count === 1
      },
      async down(key, member) {
        if (countOf(shares, key, member) === 0) return false
        return bump(shares, key, member, -1).count === 0
      },
      async acquire(key, member, limit, info) {
        if (countOf(shares, key, member) >= limit) return false
        bump(shares, key, member, 1, info)
        return true
      },
      async count(key) {
        return shares.get(key)?.size ?? 0
      },
      async weight(key, member) {
        return countOf(shares, key, member)
      },
      async list(key, cursor, limit = 1000) {
        const from = Number(cursor ?? 0)
        const all = [...(shares.get(key) ?? new Map<string, Entry>())]
        const facts = all.slice(from, from + limit).map(([member, e]) => ({ member, count: e.count, info: e.info }))
        return { facts, cursor: from + limit < all.length ? String(from + limit) : undefined }
      },
      async has(key, members) {
        const m = shares.get(key)
        return new Set(members.filter((id) => m?.has(id)))
      },
    }
  }
  return { book, resync() {}, async end() {} }
}

/**
 * Bun's client on one Redis (broker/script-client.ts's ScriptClient is one): scripts and commands
 * on one connection, answered in the order sent.
 */
export interface BunRedis {
  run(lua: string, keys: string[], args: (string | number)[]): Promise<unknown>
  /** Any other command on the same connection. */
  send(command: string, args: string[]): Promise<unknown>
}

interface Scripts {
  ledgerSet(
    total: string,
    info: string,
    share: string,
    member: string,
    count: number,
    infoArg: string,
    limit: number,
  ): Promise<[number, number]>
  ledgerReap(total: string, info: string, share: string, per: number): Promise<string[]>
  ledgerPage(total: string, info: string, cursor: string, count: number): Promise<string[]>
}

/** Members a reap script takes out per call (one short script each). */
const REAP_PER_CALL = 500

/**
 * The ledger in Redis. Per key, in the key's slot (`P{<key>}:l:<book>:…`, so a room's presence
 * sits with the room's log): the totals `:n` (member → count), the infos `:i` (member → info)
 * and each node's shares `:s:<node>` (member → count). Per node, an index of the keys it holds
 * a share of (`P{ledger}:node:<node>`, members `<book>\n<key>`): the reaper reads it when the
 * cluster sees the node dead, and takes each share out of the totals (one script per key, so
 * exactly one reaper announces each last).
 *
 * Each write sets this node's share to its count here (absolute, so a retry or a resync
 * changes nothing twice); the index is written only when the node's first member of a key
 * comes or its last goes. A write that failed is sent again at the next beat, and every share
 * is sent again when the command connection is back (Redis may have come back empty).
 */
export function redisLedger(opts: {
  cmd: Redis
  prefix: string
  nodes: Cluster
  onError?: () => void
  /**
   * Bun's client on one Redis (the engine's script connection): the books' writes and the reads
   * of a connect's path (count, weight, has) go there, in order on the one connection, so that a
   * count read after a write sees it. A fact is written on every connect and close, and through
   * ioredis each call costs a node more CPU. Without it (a Redis Cluster), ioredis.
   */
  bun?: BunRedis
}): Ledger {
  const { cmd, prefix: P, nodes, bun } = opts
  const nodeId = nodes.nodeId
  cmd.defineCommand('ledgerSet', { numberOfKeys: 3, lua: SET })
  cmd.defineCommand('ledgerReap', { numberOfKeys: 3, lua: REAP })
  cmd.defineCommand('ledgerPage', { numberOfKeys: 2, lua: PAGE })
  const c = cmd as unknown as Scripts
  /** A plain command on Bun's client when there is one (in order with its writes there), else on ioredis. */
  const ask = (command: string, args: string[]): Promise<unknown> => (bun ? bun.send(command, args) : cmd.call(command, ...args))
  const base = (book: string, key: string) => `${P}{${key}}:l:${book}`
  const index = (node: string) => `${P}{ledger}:node:${node}`
  const books = new Map<string, { shares: Shares; onEdge?: (edge: 'up' | 'down', key: string, member: string, info: string) => void }>()
  /** Facts whose last write failed: `book\nkey\nmember`. */
  const dirty = new Set<string>()
  /**
   * The node's index entries (`book\nkey`) Redis has: added before the first share of a key is
   * written, so a reaper always finds it; an entry whose key this node no longer holds goes at
   * the next beat, in one command, so a busy key (users, a lively room) costs no index write.
   */
  const indexed = new Set<string>()
  const holds = (entry: string) => {
    const at = entry.indexOf('\n')
    return (books.get(entry.slice(0, at))?.shares.get(entry.slice(at + 1))?.size ?? 0) > 0
  }
  async function ensureIndexed(book: string, key: string) {
    const entry = `${book}\n${key}`
    if (indexed.has(entry)) return
    indexed.add(entry)
    try {
      await track(cmd.sadd(index(nodeId), entry))
    } catch (err) {
      indexed.delete(entry)
      throw err
    }
  }
  async function trimIndex() {
    const idle = [...indexed].filter((e) => !holds(e))
    if (idle.length === 0) return
    // Out of the set first: an `up` from now on indexes its key again, after this SREM.
    for (const e of idle) indexed.delete(e)
    await cmd.srem(index(nodeId), ...idle)
  }
  const inflight = new Set<Promise<unknown>>()
  let closing = false

  const track = <T>(p: Promise<T>): Promise<T> => {
    inflight.add(p)
    p.finally(() => inflight.delete(p)).catch(() => {})
    return p
  }

  /** Sends this node's share of a fact; [total before, total after] (after -1: the limit refused). */
  function send(book: string, key: string, member: string, limit = 0): Promise<[number, number]> {
    const b = base(book, key)
    const e = books.get(book)?.shares.get(key)?.get(member)
    const keys = [`${b}:n`, `${b}:i`, `${b}:s:${nodeId}`] as const
    const args = [member, e?.count ?? 0, e?.info ?? '', limit] as const
    const p = (bun ? bun.run(SET, [...keys], [...args]) : c.ledgerSet(...keys, ...args)) as Promise<[number, number]>
    return track(
      p.then(
        (r) => {
          dirty.delete(`${book}\n${key}\n${member}`)
          return [Number(r[0]), Number(r[1])] as [number, number]
        },
        (err) => {
          dirty.add(`${book}\n${key}\n${member}`)
          opts.onError?.()
          throw err
        },
      ),
    )
  }

  /** Indexes the key if needed, then sends the share: a failure of either leaves the fact to the next beat. */
  async function write(book: string, key: string, member: string, limit = 0): Promise<[number, number]> {
    try {
      await ensureIndexed(book, key)
    } catch (err) {
      dirty.add(`${book}\n${key}\n${member}`)
      opts.onError?.()
      throw err
    }
    return send(book, key, member, limit)
  }

  /** Sends again what Redis may not have; edges it finds are the book's `onEdge`. */
  async function resync(facts: Iterable<string>) {
    for (const f of facts) {
      const [book, key, member] = f.split('\n') as [string, string, string]
      const b = books.get(book)
      try {
        if (b?.shares.get(key)?.size) await ensureIndexed(book, key)
        const [before, after] = await send(book, key, member)
        const info = b?.shares.get(key)?.get(member)?.info ?? member
        if (before === 0 && after > 0) b?.onEdge?.('up', key, member, info)
        if (before > 0 && after === 0) b?.onEdge?.('down', key, member, info)
      } catch {
        // still dirty: the next beat tries again
      }
    }
  }

  function* everything() {
    for (const [book, b] of books)
      for (const [key, members] of b.shares) for (const member of members.keys()) yield `${book}\n${key}\n${member}`
    yield* [...dirty]
  }

  nodes.onBeat(async () => {
    if (dirty.size) await resync([...dirty])
    await trimIndex()
  })
  // The command connection is back: Redis may have restarted empty, or a replica without this
  // node's latest writes was promoted. The shares are absolute, so sending them all is safe.
  const resyncAll = () => {
    if (closing) return
    indexed.clear() // Redis may have lost the index too
    void resync([...new Set(everything())])
  }
  cmd.on('ready', resyncAll)

  nodes.onNodeDead(async (node) => {
    const keys = await cmd.smembers(index(node))
    let gone = 0
    for (const entry of keys) {
      const at = entry.indexOf('\n')
      const book = entry.slice(0, at)
      const key = entry.slice(at + 1)
      const b = base(book, key)
      for (let i = 0; i < 100_000; i++) {
        const r = await c.ledgerReap(`${b}:n`, `${b}:i`, `${b}:s:${node}`, REAP_PER_CALL)
        for (let j = 1; j + 1 < r.length; j += 2) {
          gone++
          books.get(book)?.onEdge?.('down', key, r[j]!, r[j + 1] || r[j]!)
        }
        if (Number(r[0]) === 1) break
      }
      await cmd.srem(index(node), entry)
    }
    if (keys.length) log.info('ledger of a dead node reaped', { dead: node, keys: keys.length, gone })
  })

  function book(name: string, onEdge?: (edge: 'up' | 'down', key: string, member: string, info: string) => void): Book {
    // Two books of one name would share the keys and split the edges: a wiring mistake.
    if (books.has(name)) throw new Error(`ledger: the book ${name} is open already`)
    const shares: Shares = new Map()
    books.set(name, { shares, onEdge })
    const b = (key: string) => base(name, key)
    return {
      async up(key, member, info) {
        bump(shares, key, member, 1, info)
        const [before, after] = await write(name, key, member)
        return before === 0 && after > 0
      },
      async down(key, member) {
        if (countOf(shares, key, member) === 0) return false
        bump(shares, key, member, -1)
        const [before, after] = await send(name, key, member)
        return before > 0 && after === 0
      },
      async acquire(key, member, limit, info) {
        if (countOf(shares, key, member) >= limit) return false
        // Counted here first, so that writes meanwhile (absolute) include it; given back if refused.
        const mine = bump(shares, key, member, 1, info).at
        let after: number
        try {
          after = (await write(name, key, member, limit))[1]
        } catch (err) {
          // Redis unreachable: admitted on this node's count (chat needs Redis then anyway); sent again at the next beat.
          log.debug('ledger: acquire not written; counted here', { err })
          return true
        }
        if (after >= 0) return true
        const others = shares.get(key)?.get(member)?.at !== mine
        bump(shares, key, member, -1)
        // A write of this fact while the refused one was in flight carried the +1: set it right.
        if (others) void send(name, key, member).catch(() => {})
        return false
      },
      async count(key) {
        return Number(await ask('HLEN', [`${b(key)}:n`]))
      },
      async weight(key, member) {
        return Number((await ask('HGET', [`${b(key)}:n`, member])) ?? 0)
      },
      async list(key, cursor, limit = 1000) {
        const r = await c.ledgerPage(`${b(key)}:n`, `${b(key)}:i`, cursor ?? '0', limit)
        const facts: Fact[] = []
        for (let i = 1; i + 2 < r.length; i += 3) facts.push({ member: r[i]!, count: Number(r[i + 1]), info: r[i + 2]! })
        return { facts, cursor: r[0] === '0' ? undefined : r[0] }
      },
      async has(key, members) {
        if (members.length === 0) return new Set()
        const r = (await ask('HMGET', [`${b(key)}:n`, ...members])) as unknown[]
        return new Set(members.filter((_, i) => r[i] != null))
      },
    }
  }

  return {
    book,
    resync: resyncAll,
    async end() {
      closing = true
      await Promise.race([Promise.allSettled([...inflight]), Bun.sleep(2000)])
    },
  }
}
