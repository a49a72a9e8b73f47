export { SYSTEM_USER } from '../core/identity'

/** Why an upgrade (or refresh) claiming the server's id is refused. */
export const RESERVED_USER = 'reserved_user'
