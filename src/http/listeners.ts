import type { Server, ServerWebSocket } from 'bun'

/** The Bun servers of this process (see listeners). */
export interface Listeners {
  /** What the hub publishes through: every live server (undefined before the first listens). */
  server(): Server<unknown> | undefined
  /** The server now listening; the one before it stops accepting and is kept until its sockets are gone. */
  set(s: Server<unknown> | null | undefined): void
  /** Servers retired by a rotation that still hold sockets. */
  readonly retired: number
}

/**
 * The Bun servers of this process, as one publisher for the hub.
 *
 * Bun cannot swap the certificate of a listening server (`server.reload` ignores `tls`,
 * oven-sh/bun#43815). To serve a renewed certificate without dropping anyone, a second server
 * is started on the same port (`reusePort`) with the new files and the old one stops
 * accepting (`stop(false)`) while its open sockets live on. Bun topics belong to one server,
 * so until the old sockets are gone a room's frames are published on every live server.
 */
export function listeners(): Listeners {
  let current: Server<unknown> | undefined
  /** Older servers that still hold open sockets. */
  const retired = new Set<Server<unknown>>()

  const sweep = () => {
    for (const s of retired) if (s.pendingWebSockets === 0) retired.delete(s)
  }

  const composite = {
    publish(topic: string, data: string) {
      if (!current) return 0
      let status = current.publish(topic, data)
      if (retired.size) {
        sweep()
        for (const s of retired) status = Math.min(status, s.publish(topic, data))
      }
      return status
    },
    subscriberCount(topic: string) {
      let n = current?.subscriberCount(topic) ?? 0
      for (const s of retired) n += s.subscriberCount(topic)
      return n
    },
    /** `ws.publish` (everyone but ws) across every live server. */
    publishExcept(ws: ServerWebSocket<unknown>, topic: string, data: string) {
      if (retired.size === 0) return ws.publish(topic, data)
      ws.unsubscribe(topic)
      try {
        return composite.publish(topic, data)
      } finally {
        ws.subscribe(topic)
      }
    },
  }

  return {
    /** What the hub publishes through: every live server. */
    server: () => (current ? (composite as unknown as Server<unknown>) : undefined),
    set(s: Server<unknown> | null | undefined) {
      if (s && current && s !== current) {
        retired.add(current)
        current.stop(false) // no new connections; the open ones stay
      }
      if (s) current = s
    },
    /** Servers retired by a rotation that still hold sockets. */
    get retired() {
      sweep()
      return retired.size
    },
  }
}
