/** Every event type of the contract (PROTOCOL-v2, Webhooks), in the order the docs list them. */
export const EVENT_TYPES = [
  'message.created',
  'message.edited',
  'message.deleted',
  'reaction.added',
  'reaction.removed',
  'member.added',
  'member.removed',
  'user.online',
  'user.offline',
  'room.occupied',
  'room.vacated',
  'moderation',
  'push.failed',
] as const

export type EventType = (typeof EVENT_TYPES)[number]

/** Parses a WEBHOOK_EVENTS value: undefined = every type. Throws with the unknown names. */
export function parseEventTypes(list: string): EventType[] {
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  const unknown = names.filter((n) => !(EVENT_TYPES as readonly string[]).includes(n))
  if (unknown.length) throw new Error(`unknown event type ${unknown.join(', ')} (known: ${EVENT_TYPES.join(', ')})`)
  if (names.length === 0) throw new Error('expected at least one event type')
  return names as EventType[]
}
