/** Room names everywhere (frames, env, URLs) share this shape. */
export const ROOM_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/

/** A room rule (a token's `rooms`, PUSHER_PUBLIC_ROOMS): a room name, or `prefix*` (`*` alone: every room). */
export const ROOM_RULE_PATTERN = /^(?:[A-Za-z0-9_.:-]{1,64}|[A-Za-z0-9_.:-]{0,63}\*)$/

/** Whether `room` matches one of the rules: exactly its name, or a `prefix*` it starts with. */
export function roomMatches(rules: readonly string[], room: string): boolean {
  return rules.some((r) => (r.endsWith('*') ? room.startsWith(r.slice(0, -1)) : r === room))
}
