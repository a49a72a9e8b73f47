/** Who is who: a user as frames show it, what authentication says of a connection, roles. */

export interface User {
  id: string
  name: string
  /** Only on the server's own messages (src/auth/system.ts); never on a connection. */
  system?: true
}

export type Role = 'owner' | 'moderator' | 'member'
export const ROLES: readonly Role[] = ['owner', 'moderator', 'member']

/** What authentication (or its absence) says about a connection. */
export interface Identity {
  user: User
  /** Room names or `prefix*` patterns the user may use; undefined = every room. */
  rooms?: string[]
  /** Roles from the token: room name or `prefix*` -> role. */
  roles?: Record<string, Role>
  /** Token expiry, epoch ms; undefined = never. */
  exp?: number
  /** A random `anon-…` user (auth off, no `?user`): it holds no memberships. */
  ephemeral?: boolean
}

/**
 * The server's own identity: what the publish API (and future notices) send as. No
 * connection may take its id, whatever its token or query says, so `system: true` in a
 * frame's `from` always means the server wrote it.
 */
export const SYSTEM_USER: User = { id: 'server', name: 'server', system: true }
