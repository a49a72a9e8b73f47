import type { PresenceWindows } from './presence-windows'
import { SILENT } from './presence-windows'
import type { HotScripts, RedisKeys } from './redis-scripts'

/**
 * The rooms' presence windows in Redis (lua/window-hold.lua, window-take.lua): a list of the
 * changes and the opener's mark, both in the room's slot. One round trip per change held and one
 * per window ended.
 */
export function redisWindows(cmd: Pick<HotScripts, 'windowHold' | 'windowTake'>, key: RedisKeys): PresenceWindows {
  return {
    async hold(room, change, token, windowMs) {
      return (await cmd.windowHold(key.window(room), key.windowMark(room), change, token, Math.max(1, SILENT * windowMs))) === 1
    },
    take: (room, token) => cmd.windowTake(key.window(room), key.windowMark(room), token ?? ''),
  }
}
