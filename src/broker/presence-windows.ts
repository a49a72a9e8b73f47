/**
 * A big room's presence window, cluster-wide (PROTOCOL-v4 "Scale": at most one `batch` frame per
 * PRESENCE_BATCH_MS). Every node holds its changes in the room's one window; the node whose hold
 * opened it ends it, takes every node's changes and relays one frame. Windows kept per node would
 * send each member one frame per node and window: with K nodes, K times the frames.
 */
export interface PresenceWindows {
  /**
   * Holds a change (opaque text) in the room's window. True when this call opened the window:
   * the caller ends it after its time with `take(room, token)`. A window whose opener went
   * silent (a dead node) is reopened by the next hold after `SILENT * windowMs`.
   */
  hold(room: string, change: string, token: string, windowMs: number): Promise<boolean>
  /**
   * Ends the room's window and returns its changes, oldest first. With a token, not a window
   * another hold opened since (this one was ended by a draining node, or outlived): then nothing;
   * without one, whatever is held (a draining node's leaves go out at once).
   */
  take(room: string, token?: string): Promise<string[]>
}

/** How many windows long an opener may stay silent before the next hold opens the window anew. */
export const SILENT = 5

/** One node's windows: the same rules, in a map. */
export function memoryWindows(): PresenceWindows {
  const open = new Map<string, { token: string; until: number; changes: string[] }>()
  return {
    async hold(room, change, token, windowMs) {
      const w = open.get(room)
      const now = Date.now()
      if (w && w.until > now) {
        w.changes.push(change)
        return false
      }
      if (w) {
        w.changes.push(change)
        Object.assign(w, { token, until: now + SILENT * windowMs })
      } else open.set(room, { token, until: now + SILENT * windowMs, changes: [change] })
      return true
    },
    async take(room, token) {
      const w = open.get(room)
      if (!w || (token !== undefined && w.token !== token && w.until > Date.now())) return []
      open.delete(room)
      return w.changes
    },
  }
}
