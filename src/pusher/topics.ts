/** Bun topics of the Pusher face: a room's events as Pusher frames, a signed-in user's. */
export const channelTopic = (room: string) => `p:${room}`
/** Relayed through the broker like a user topic (`u:`), heard only by Pusher sockets. */
export const pusherUserTopic = (user: string) => `pu:${user}`
