import type { User } from './types'

/**
 * True for a message the server itself sent (its publish API, notices): the server refuses
 * any connection that would claim its id, so only it can set `from.system`. Show such
 * messages as announcements, not as a user speaking.
 */
export const isSystemMessage = (m: { from: User }): boolean => m.from.system === true
