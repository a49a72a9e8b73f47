/** Room names everywhere (frames, env, URLs) share this shape. */
export const ROOM_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/
