import type { Book } from '../cluster/ledger'
import { listAll } from '../cluster/ledger'

/**
 * Pusher subscriptions per channel, cluster-wide: what GET /apps/:id/channels lists, a
 * channel's subscription_count, and the first/last subscription that make channel_occupied and
 * channel_vacated. A book of the cluster's ledger (key `channels`, member the channel, counted
 * by subscription); a dead node's subscriptions are reaped there, and the channels that leaves
 * vacant reach the book's `onEdge`. (Presence channels' members are the broker's presence.)
 */
export interface Occupancy {
  /** One subscription more (1) or fewer (-1); true when that made the channel occupied, or vacant. */
  change(channel: string, by: 1 | -1): Promise<boolean>
  count(channel: string): Promise<number>
  /** Every occupied channel with its count. */
  all(): Promise<Map<string, number>>
}

const KEY = 'channels'

export function ledgerOccupancy(book: Book): Occupancy {
  return {
    change: (channel, by) => (by === 1 ? book.up(KEY, channel) : book.down(KEY, channel)),
    count: (channel) => book.weight(KEY, channel),
    async all() {
      return new Map((await listAll(book, KEY)).map((f) => [f.member, f.count]))
    },
  }
}
