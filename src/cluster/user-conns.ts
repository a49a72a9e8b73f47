import { log } from '../log'
import type { Book } from './ledger'

/**
 * Open connections per user, counted across the cluster for MAX_CONNECTIONS_PER_USER: the
 * ledger's `conns` book (key `users`, member the user). A dead node's connections stop
 * counting when the cluster reaps it (cluster/heartbeat.ts, `onNodeDead`). Redis unreachable:
 * connections are admitted on this node's count, and the ledger writes it once Redis is back.
 */
export interface UserConnCounter {
  /** Counts one more connection of `user` unless that reaches `limit`; false = refused. */
  acquire(user: string, limit: number): Promise<boolean>
  release(user: string): void
}

export function ledgerUserConns(book: Book): UserConnCounter {
  return {
    acquire: (user, limit) => book.acquire('users', user, limit),
    release(user) {
      book.down('users', user).catch((err) => log.debug('connection count not released yet', { err }))
    },
  }
}
