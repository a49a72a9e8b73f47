/**
 * A stand-in for Bun's ServerWebSocket, for benches that drive the hub in-process (no sockets,
 * no kernel): it takes every call the hub makes on a socket and does nothing, except hand each
 * sent frame to `onSend`.
 */
export function fakeSocket(onSend?: (frame: string) => void) {
  return {
    send: (frame: string) => (onSend?.(frame), 1),
    publish: () => 1,
    subscribe() {},
    unsubscribe() {},
    cork: (f: () => void) => f(),
    getBufferedAmount: () => 0,
    close() {},
    ping() {},
  }
}
