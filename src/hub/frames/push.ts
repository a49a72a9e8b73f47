import { FrameError } from '../../core/errors'
import type { Device, WebPushSubscription } from '../../members/types'
import type { FrameOf } from '../../protocol/client-frames'
import type { Conn } from '../connection'
import { acked } from '../context'
import type { HubContext, Handlers } from '../context'

/** Env variables that turn each provider on, for the error a device of an unconfigured kind gets. */
const TURNS_ON = { webpush: 'PUSH_VAPID_*', fcm: 'PUSH_FCM_CREDENTIALS_FILE', apns: 'PUSH_APNS_*' } as const

/** A device as the API and the `device` frame give it (validated already: deviceAddress). */
export interface DeviceInput {
  kind: Device['kind']
  token?: string
  subscription?: WebPushSubscription
}

/** A device put: whether it was added or updated, and the device kept. */
export interface DevicePut {
  status: 'added' | 'updated'
  device: Device
}

/**
 * A user's push settings: devices (also the API's), notify levels per room, and blocks. The
 * frames act on the connection's own user only.
 */
export function pushFrames(h: HubContext) {
  const { config, members } = h

  /** Adds or replaces a device of `user` (validated already: deviceAddress). */
  async function putDevice(user: string, id: string, a: DeviceInput): Promise<DevicePut> {
    if (!h.push) throw new FrameError('unavailable', 'device: push notifications are not configured on this server')
    if (!h.push.kinds.has(a.kind))
      throw new FrameError(
        'bad_request',
        `kind: ${a.kind} is not configured on this server (${TURNS_ON[a.kind]}); configured: ${[...h.push.kinds].join(', ')}`,
      )
    // A Web Push endpoint is a URL the server will POST to: the outbound rule, before it is kept.
    const refused = await h.push.refuse({ kind: a.kind, subscription: a.subscription })
    if (refused) throw new FrameError('bad_request', refused)
    const device: Device = {
      device: id,
      kind: a.kind,
      ...(a.kind === 'webpush' ? { subscription: a.subscription } : { token: a.token }),
      updated: new Date().toISOString(),
    }
    const r = await members.putDevice(user, device, config.PUSH_MAX_DEVICES)
    if (r === 'limit')
      throw new FrameError('limit', `device: ${user} has ${config.PUSH_MAX_DEVICES} devices already (PUSH_MAX_DEVICES); remove one first`)
    return { status: r, device }
  }

  const own = (c: Conn, what: string) => {
    if (c.identity.ephemeral)
      throw new FrameError('forbidden', `${what}: an anonymous user has no settings (connect with ?user= or a token)`)
    return c.identity.user.id
  }

  async function device(c: Conn, f: FrameOf<'device'>) {
    const user = own(c, 'device')
    if (f.remove) await members.removeDevice(user, f.device)
    else
      await putDevice(user, f.device, {
        kind: f.kind!,
        token: f.token as string | undefined,
        subscription: f.subscription as WebPushSubscription | undefined,
      })
  }

  async function notify(c: Conn, f: FrameOf<'notify'>) {
    const user = own(c, 'notify')
    if (!(await members.get(f.room, user))) throw new FrameError('forbidden', `room: not a member of ${f.room}`)
    await members.setNotify(f.room, user, f.level)
  }

  async function block(c: Conn, f: FrameOf<'block'>) {
    const user = own(c, 'block')
    if (f.user === user) throw new FrameError('bad_request', 'user: you cannot block yourself')
    await members.block(user, f.user)
  }

  async function unblock(c: Conn, f: FrameOf<'unblock'>) {
    await members.unblock(own(c, 'unblock'), f.user)
  }

  const handlers: Handlers<'device' | 'notify' | 'block' | 'unblock'> = {
    device: acked(device),
    notify: acked(notify),
    block: acked(block),
    unblock: acked(unblock),
  }
  return { handlers, putDevice }
}
