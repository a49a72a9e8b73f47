import type { Config } from '../config'
import { CLOSE } from '../protocol/server-frames'
import type { Conn } from './connection'
import type { Delivery } from './delivery'
import { checkIdle } from './admission'
import type { IdleRule } from './admission'

/** The periodic checks and the drain of this node's connections (see upkeep). */
export interface Upkeep {
  /** Periodic checks Bun cannot do for us: silent clients, stuck buffers, expired tokens. */
  sweep(): void
  /** Closes every socket with 1001 and resolves with how many are left when all are gone or `graceMs` passed. */
  drain(graceMs: number): Promise<number>
  /** A drain has begun: the door takes no new connection. */
  readonly draining: boolean
}

/** What Bun cannot do for a node's connections: close the silent, the stuck and the expired; drain them all at shutdown. */
export function upkeep(config: Config, conns: Map<string, Conn>, delivery: Pick<Delivery, 'closeConn' | 'closeSlow'>): Upkeep {
  let draining = false
  /** Half of IDLE_TIMEOUT_S to stay silent, the other half to answer the ping: closed at IDLE_TIMEOUT_S of silence. */
  const idleRule: IdleRule = { pingAfterMs: (config.IDLE_TIMEOUT_S * 1000) / 2, answerWithinMs: (config.IDLE_TIMEOUT_S * 1000) / 2 }

  return {
    sweep() {
      const now = performance.now()
      const wall = Date.now()
      for (const c of conns.values()) {
        if (c.closing) continue
        if (c.identity.exp !== undefined && wall >= c.identity.exp) delivery.closeConn(c, CLOSE.tokenExpired, 'token expired')
        else if (c.ws.getBufferedAmount() > config.MAX_BUFFERED_BYTES) delivery.closeSlow(c)
        else {
          const idle = checkIdle(c, now, idleRule)
          // A WebSocket ping: browsers and client libraries answer it by themselves.
          if (idle === 'ping') c.ws.ping()
          else if (idle === 'close') delivery.closeConn(c, 1000, 'idle timeout')
        }
      }
    },
    async drain(graceMs) {
      draining = true
      for (const c of conns.values()) delivery.closeConn(c, CLOSE.goingAway, 'server shutting down')
      const until = Date.now() + graceMs
      while (conns.size > 0 && Date.now() < until) await Bun.sleep(20)
      return conns.size
    },
    get draining() {
      return draining
    },
  }
}
