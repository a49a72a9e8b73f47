/**
 * Topic names, built and read here only: one Bun topic (and one Redis channel) per room and per
 * user, and the Pusher face's own. A topic is `<kind>:<id>`; the kinds below are all of them
 * (the Redis channel of a topic, `broker/redis-scripts.ts`, splits at the first `:`).
 *
 * Read per frame delivered: plain string tests and one slice, as the inlined spellings were.
 */
const ROOM = 'r:'
const USER = 'u:'
/** A signed-in Pusher user: relayed through the broker like a user topic, heard only by Pusher sockets. */
const PUSHER_USER = 'pu:'
/** A room's events as Pusher frames: a Bun topic of this node only, never relayed. */
const PUSHER_CHANNEL = 'p:'
/** A node's SSE posts: client frames a POST to another node relays to the node holding the stream (src/sse). */
const SSE_NODE = 's:'
/** A node's Pusher HTTP fallback sessions: xhr_send frames and polls to another node, relayed to the node holding the session (src/pusher). */
const PUSHER_HTTP_NODE = 'ph:'

export const roomTopic = (room: string) => `${ROOM}${room}`
export const userTopic = (userId: string) => `${USER}${userId}`
export const pusherUserTopic = (user: string) => `${PUSHER_USER}${user}`
export const pusherChannelTopic = (room: string) => `${PUSHER_CHANNEL}${room}`

export const sseNodeTopic = (nodeId: string) => `${SSE_NODE}${nodeId}`
export const isSseNodeTopic = (topic: string) => topic.startsWith(SSE_NODE)
export const pusherHttpNodeTopic = (nodeId: string) => `${PUSHER_HTTP_NODE}${nodeId}`
export const isPusherHttpNodeTopic = (topic: string) => topic.startsWith(PUSHER_HTTP_NODE)

export const isRoomTopic = (topic: string) => topic.startsWith(ROOM)
export const isUserTopic = (topic: string) => topic.startsWith(USER)
export const isPusherUserTopic = (topic: string) => topic.startsWith(PUSHER_USER)

/** The room of a room topic; undefined for any other kind. */
export const topicRoom = (topic: string) => (topic.startsWith(ROOM) ? topic.slice(ROOM.length) : undefined)
/** The user of a user topic; undefined for any other kind. */
export const topicUser = (topic: string) => (topic.startsWith(USER) ? topic.slice(USER.length) : undefined)
/** The user of a Pusher user topic; undefined for any other kind. */
export const topicPusherUser = (topic: string) => (topic.startsWith(PUSHER_USER) ? topic.slice(PUSHER_USER.length) : undefined)
