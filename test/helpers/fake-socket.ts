import type { WebSocketLike } from '../../client/src/index'

/** A socket the test drives by hand, for client orderings a real server seldom shows. */
export class FakeSocket implements WebSocketLike {
  static last: FakeSocket
  readyState = 0
  sent: Record<string, any>[] = []
  onopen: ((ev: unknown) => void) | null = null
  onmessage: ((ev: { data: unknown }) => void) | null = null
  onclose: ((ev: { code: number; reason: string }) => void) | null = null
  onerror: ((ev: unknown) => void) | null = null
  constructor(readonly url: string) {
    FakeSocket.last = this
  }
  send(data: string) {
    this.sent.push(JSON.parse(data))
  }
  close() {
    this.readyState = 3
  }
  /** Opens and sends `welcome` (user `u`, the default room, unless `welcome` says otherwise). */
  open(welcome: Record<string, unknown> = {}) {
    this.readyState = 1
    this.onopen?.({})
    this.push({ type: 'welcome', conn: 'c1', user: { id: 'u', name: 'U' }, node: 'n', rooms: ['general'], ...welcome })
  }
  push(frame: unknown) {
    this.onmessage?.({ data: JSON.stringify(frame) })
  }
}
