import type { UserConnCounter } from '../broker/redis-user-conns'

export type LimitReason = 'connections' | 'connections_per_ip' | 'connections_per_user'
export const LIMIT_REASONS: readonly LimitReason[] = ['connections', 'connections_per_ip', 'connections_per_user']

/**
 * One admitted upgrade, from the check before it until its socket closes. The socket's own
 * record carries these fields (one object a socket fewer); `admit` fills them in.
 */
export interface Ticket {
  /** The address key the socket counts against (set by the caller). */
  ip: string
  user: string | undefined
  opened: boolean
  released: boolean
  timer?: ReturnType<typeof setTimeout>
}

/** An upgrade handed to Bun whose socket never opened is given back after this. */
const OPEN_WITHIN_MS = 10_000

/**
 * MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP, MAX_CONNECTIONS_PER_USER: checked before the
 * upgrade, so a refused client costs an HTTP answer and never a socket. Address and node
 * limits are this node's; the user limit is cluster-wide when `users` counts in Redis.
 * A limit of 0 is no limit.
 */
export function connLimits(opts: {
  maxConnections: number
  perIp: number
  perUser: number
  /** Cluster-wide user counts (Redis); undefined = this node's counts. */
  users?: UserConnCounter
  openWithinMs?: number
}) {
  const openWithin = opts.openWithinMs ?? OPEN_WITHIN_MS
  let total = 0
  const byIp = new Map<string, number>()
  const byUser = new Map<string, number>()

  const add = (m: Map<string, number>, k: string, by: number) => {
    const n = (m.get(k) ?? 0) + by
    if (n > 0) m.set(k, n)
    else m.delete(k)
  }

  function release(t: Ticket) {
    if (t.released) return
    t.released = true
    clearTimeout(t.timer)
    total--
    add(byIp, t.ip, -1)
    if (t.user !== undefined) {
      if (opts.users) opts.users.release(t.user)
      else add(byUser, t.user, -1)
    }
  }

  return {
    /** Node and address limits, before authentication (cheap: a flood is refused before any JWT work). */
    admit(t: Ticket): LimitReason | undefined {
      if (opts.maxConnections > 0 && total >= opts.maxConnections) return 'connections'
      if (opts.perIp > 0 && (byIp.get(t.ip) ?? 0) >= opts.perIp) return 'connections_per_ip'
      total++
      add(byIp, t.ip, 1)
      t.opened = false
      t.released = false
      return undefined
    },
    /** The user limit, once authentication said who it is. Refused: the ticket is released. */
    async admitUser(t: Ticket, user: string): Promise<LimitReason | undefined> {
      if (opts.perUser > 0) {
        const ok = opts.users ? await opts.users.acquire(user, opts.perUser) : (byUser.get(user) ?? 0) < opts.perUser
        if (!ok) {
          release(t)
          return 'connections_per_user'
        }
        if (!opts.users) add(byUser, user, 1)
        t.user = user
      }
      return undefined
    },
    /**
     * The upgrade is handed to Bun: from now on the ticket is given back if no socket opens in
     * time. (Not before: however long authentication takes, the caller releases on every answer.)
     */
    upgrading(t: Ticket) {
      t.timer = setTimeout(() => release(t), openWithin)
      t.timer.unref?.()
    },
    /** The socket opened: false when its ticket was already given back (it must not stay, uncounted). */
    opened(t: Ticket): boolean {
      clearTimeout(t.timer)
      t.timer = undefined // a cleared timer kept here would keep its object and closure for the socket's life
      if (t.released) return false
      t.opened = true
      return true
    },
    release,
    get total() {
      return total
    },
  }
}

export type ConnLimits = ReturnType<typeof connLimits>
