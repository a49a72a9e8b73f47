import type { Socket, TCPSocketListener } from 'bun'

/**
 * A TCP proxy in front of a server, to cut connections without touching the server:
 * `drop()` kills every proxied connection (the client sees 1006, the server a close),
 * `block()` refuses new ones until `unblock()`. `holdWhen(marker)` holds back, from the first
 * chunk a client sends that contains `marker`, everything that connection sends until
 * `release()` (e.g. a Redis client's SUBSCRIBE: its pub/sub comes back late, its other
 * connections do not). `deafen(marker)` drops, from then on, whatever the server sends to the
 * connections that have sent `marker` (a subscriber that misses what is published).
 */
export interface Proxy {
  port: number
  ws: string
  drop: () => void
  block: () => void
  unblock: () => void
  holdWhen: (marker: string) => void
  deafen: (marker: string) => void
  release: () => void
  /** Connections accepted so far. */
  accepted: number
  close: () => void
}

interface Pair {
  upstream?: Socket<Pair>
  downstream: Socket<Pair>
  queued: Uint8Array[]
  /** Set while this connection's data is held back (see holdWhen). */
  held?: Uint8Array[]
  /** The start of what the client sent (up to 64 KiB), for deafen. */
  said: string
  deaf?: boolean
}

export async function startProxy(targetPort: number, listenPort = 0): Promise<Proxy> {
  const pairs = new Set<Pair>()
  let blocked = false
  let accepted = 0
  let marker: string | undefined
  const forward = (pair: Pair, chunk: Uint8Array) => {
    if (pair.said.length < 65536) pair.said += Buffer.from(chunk).toString('latin1')
    if (!pair.held && marker !== undefined && Buffer.from(chunk).includes(marker)) pair.held = []
    if (pair.held) pair.held.push(new Uint8Array(chunk))
    else if (pair.upstream) pair.upstream.write(chunk)
    else pair.queued.push(new Uint8Array(chunk))
  }
  const listener: TCPSocketListener<Pair> = Bun.listen<Pair>({
    hostname: '127.0.0.1',
    port: listenPort,
    socket: {
      async open(down) {
        if (blocked) return void down.end()
        accepted++
        const pair: Pair = { downstream: down, queued: [], said: '' }
        down.data = pair
        pairs.add(pair)
        try {
          pair.upstream = await Bun.connect<Pair>({
            hostname: '127.0.0.1',
            port: targetPort,
            data: pair,
            socket: {
              data(_up, chunk) {
                if (!pair.deaf) pair.downstream.write(chunk)
              },
              close() {
                pair.downstream.end()
                pairs.delete(pair)
              },
              error() {
                pair.downstream.end()
              },
            },
          })
          for (const c of pair.queued.splice(0)) pair.upstream.write(c)
        } catch {
          down.end()
          pairs.delete(pair)
        }
      },
      data(down, chunk) {
        const pair = down.data
        if (pair) forward(pair, chunk)
      },
      close(down) {
        const pair = down.data
        if (!pair) return
        pair.upstream?.end()
        pairs.delete(pair)
      },
      error() {},
    },
  })
  const proxy: Proxy = {
    port: listener.port,
    ws: `ws://127.0.0.1:${listener.port}/ws`,
    drop() {
      for (const p of [...pairs]) {
        p.downstream.terminate()
        p.upstream?.terminate()
        pairs.delete(p)
      }
    },
    block: () => void (blocked = true),
    unblock: () => void (blocked = false),
    holdWhen: (m) => void (marker = m),
    deafen(m) {
      for (const p of pairs) if (p.said.includes(m)) p.deaf = true
    },
    release() {
      marker = undefined
      for (const p of pairs) {
        const held = p.held
        p.held = undefined
        for (const c of held ?? []) forward(p, c)
      }
    },
    get accepted() {
      return accepted
    },
    close() {
      proxy.drop()
      listener.stop(true)
    },
  }
  return proxy
}
