import { Elysia } from 'elysia'
import { z } from 'zod'
import type { Broker } from '../broker/types'
import type { Config } from '../config'
import type { Hub } from '../hub/hub'
import type { Members } from '../members/types'
import { DEVICE_ID, deviceAddress } from '../protocol/client-frames'
import type { Store } from '../store/types'
import { answerWith, apiRoute, idText, json, requireApiKey } from './route-spec'

const Device = z.object({
  device: z.string(),
  kind: z.enum(['webpush', 'fcm', 'apns']),
  token: z.string().optional().meta({ description: 'fcm, apns: the device token' }),
  subscription: z
    .object({ endpoint: z.string(), keys: z.object({ p256dh: z.string(), auth: z.string() }) })
    .optional()
    .meta({ description: 'webpush: the PushSubscription' }),
  updated: z.string(),
})

/** A user's devices and blocks for the app's backend: `/api/users/:user/devices`, `/api/users/:user/blocks`. */
export function pushRoutes(deps: { config: Config; hub: Hub; broker: Broker; members: Members; store?: Store }) {
  const { config, hub, members } = deps
  const answer = answerWith(() => deps.broker.problem() ?? deps.store?.problem())
  const user = idText('a user id')
  const deviceParams = z.object({ user, device: z.string().regex(DEVICE_ID, 'must be 1..128 of A-Z a-z 0-9 _ . : -') })

  return new Elysia({ prefix: '/api' })
    .onTransform(requireApiKey(config))
    .put(
      '/users/:user/devices/:device',
      ({ params, body }) =>
        answer(async () => {
          const r = await hub.putDevice(params.user, params.device, body)
          return json(r.status === 'added' ? 201 : 200, { user: params.user, device: r.device, added: r.status === 'added' })
        }),
      apiRoute({
        summary: 'Register (or replace) a device of a user for push notifications',
        description:
          'At most PUSH_MAX_DEVICES per user (409 `limit` beyond). A kind whose provider is not configured is a 400, and so is a Web Push endpoint that is not https to a public address (loopback, private, link-local, shared, multicast and reserved ranges are refused, names are resolved; hosts and CIDRs of OUTBOUND_ALLOW aside): docs/push.md.',
        tags: ['push'],
        params: deviceParams,
        body: deviceAddress.meta({ examples: [{ kind: 'fcm', token: 'dGVzdA:APA91b...' }] }),
        response: z.object({ user: z.string(), device: Device, added: z.boolean() }),
        errors: [400, 409, 503],
      }),
    )
    .delete(
      '/users/:user/devices/:device',
      ({ params }) =>
        answer(async () => {
          if (!(await members.removeDevice(params.user, params.device)))
            return json(404, { error: 'not_found', reason: `device: ${params.user} has no device ${params.device}` })
          return { user: params.user, device: params.device, removed: true as const }
        }),
      apiRoute({
        summary: "Remove a user's device",
        tags: ['push'],
        params: deviceParams,
        response: z.object({ user: z.string(), device: z.string(), removed: z.literal(true) }),
        errors: [400, 404, 503],
      }),
    )
    .get(
      '/users/:user/devices',
      ({ params }) => answer(async () => ({ user: params.user, devices: await members.devices(params.user) })),
      apiRoute({
        summary: "A user's push devices",
        tags: ['push'],
        params: z.object({ user }),
        response: z.object({ user: z.string(), devices: z.array(Device) }),
        errors: [400, 503],
      }),
    )
    .get(
      '/users/:user/blocks',
      ({ params }) => answer(async () => ({ user: params.user, blocks: await members.blocks(params.user) })),
      apiRoute({
        summary: 'The users a user blocks',
        description: "A blocked user's `dm`s to this user are refused (`forbidden`), and none of their messages push to this user.",
        tags: ['users'],
        params: z.object({ user }),
        response: z.object({ user: z.string(), blocks: z.array(z.string()) }),
        errors: [400, 503],
      }),
    )
}
