import type { User } from '../protocol/server-frames'

/**
 * The server's own identity: what the publish API (and future notices) send as. No
 * connection may take its id, whatever its token or query says, so `system: true` in a
 * frame's `from` always means the server wrote it.
 */
export const SYSTEM_USER: User = { id: 'server', name: 'server', system: true }

/** Why an upgrade (or refresh) claiming the server's id is refused. */
export const RESERVED_USER = 'reserved_user'
