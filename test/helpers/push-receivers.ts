import { createDecipheriv, createECDH, createHmac, generateKeyPairSync, randomBytes } from 'node:crypto'
import http2 from 'node:http2'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeProtectedHeader, importJWK, importSPKI, jwtVerify } from 'jose'
import webpush from 'web-push'

/**
 * Loopback stand-ins for the three push services, each checking what the real one checks:
 * Web Push (the VAPID JWT's signature, and the payload decrypted with the subscription's own
 * keys per RFC 8291), FCM (an OAuth token that came from a JWT signed by the service
 * account's key), APNs over HTTP/2 with TLS (the ES256 provider token and the apns-* headers).
 */

const b64u = (b: Buffer | Uint8Array) => Buffer.from(b).toString('base64url')
const hmac = (key: Buffer, data: Buffer) => createHmac('sha256', key).update(data).digest()

/** A browser's side of a subscription: its ECDH pair and auth secret (what PushManager makes). */
export function browserKeys() {
  const ecdh = createECDH('prime256v1')
  ecdh.generateKeys()
  const auth = randomBytes(16)
  return { ecdh, auth, keys: { p256dh: b64u(ecdh.getPublicKey()), auth: b64u(auth) } }
}
export type BrowserKeys = ReturnType<typeof browserKeys>

/** RFC 8291 + RFC 8188 (one record): the plaintext the push service cannot read. */
export function decryptAes128gcm(body: Buffer, ua: BrowserKeys): string {
  const salt = body.subarray(0, 16)
  const idlen = body[20]!
  const asPublic = body.subarray(21, 21 + idlen)
  const ciphertext = body.subarray(21 + idlen)
  const uaPublic = ua.ecdh.getPublicKey()
  const ecdhSecret = ua.ecdh.computeSecret(asPublic)
  const prkKey = hmac(ua.auth, ecdhSecret)
  const ikm = hmac(prkKey, Buffer.concat([Buffer.from('WebPush: info\0'), uaPublic, asPublic, Buffer.from([1])]))
  const prk = hmac(salt, ikm)
  const cek = hmac(prk, Buffer.from('Content-Encoding: aes128gcm\0\x01')).subarray(0, 16)
  const nonce = hmac(prk, Buffer.from('Content-Encoding: nonce\0\x01')).subarray(0, 12)
  const d = createDecipheriv('aes-128-gcm', cek, nonce)
  d.setAuthTag(ciphertext.subarray(ciphertext.length - 16))
  const plain = Buffer.concat([d.update(ciphertext.subarray(0, ciphertext.length - 16)), d.final()])
  let end = plain.length - 1
  while (end >= 0 && plain[end] === 0) end--
  if (plain[end] !== 2) throw new Error('no last-record padding delimiter')
  return plain.subarray(0, end).toString('utf8')
}

export interface WebPushReceived {
  /** The path's subscription id. */
  sub: string
  topic: string | null
  urgency: string | null
  payload: { title: string; body: string; badge: number; data: Record<string, string> }
}

/** The Web Push service: POST /push/<id>; answers `status[id]` (default 201) once it has checked and decrypted. */
export async function webPushReceiver() {
  const vapid = webpush.generateVAPIDKeys()
  const browsers = new Map<string, BrowserKeys>()
  const received: WebPushReceived[] = []
  const problems: string[] = []
  const status = new Map<string, number>()
  let server: ReturnType<typeof Bun.serve> | undefined
  let port = 0
  const handler = async (req: Request) => {
    const url = new URL(req.url)
    const sub = url.pathname.split('/')[2] ?? ''
    const ua = browsers.get(sub)
    try {
      if (!ua) throw new Error(`unknown subscription ${sub}`)
      const auth = req.headers.get('authorization') ?? ''
      const m = /^vapid t=([^,]+),\s*k=(.+)$/.exec(auth)
      if (!m) throw new Error(`authorization is not VAPID: ${auth}`)
      if (m[2] !== vapid.publicKey) throw new Error('VAPID k is not the server key')
      const raw = Buffer.from(m[2]!, 'base64url')
      const key = await importJWK({ kty: 'EC', crv: 'P-256', x: b64u(raw.subarray(1, 33)), y: b64u(raw.subarray(33, 65)) }, 'ES256')
      const { payload } = await jwtVerify(m[1]!, key, { audience: url.origin })
      if (typeof payload.sub !== 'string' || !payload.exp) throw new Error('VAPID JWT without sub or exp')
      if (req.headers.get('content-encoding') !== 'aes128gcm') throw new Error(`content-encoding ${req.headers.get('content-encoding')}`)
      const text = decryptAes128gcm(Buffer.from(await req.arrayBuffer()), ua)
      const answer = status.get(sub) ?? 201
      if (answer < 300)
        received.push({ sub, topic: req.headers.get('topic'), urgency: req.headers.get('urgency'), payload: JSON.parse(text) })
      return new Response(null, { status: answer })
    } catch (err) {
      problems.push(String(err))
      return new Response(String(err), { status: 400 })
    }
  }
  const listen = () => {
    server = Bun.serve({ hostname: '127.0.0.1', port, fetch: handler })
    port = server.port!
  }
  listen()
  return {
    vapid,
    received,
    problems,
    status,
    /** A new subscription of a browser: the JSON a PushManager gives. */
    subscribe(id: string) {
      const b = browserKeys()
      browsers.set(id, b)
      return { endpoint: `http://127.0.0.1:${port}/push/${id}`, keys: b.keys }
    },
    down: () => server?.stop(true),
    up: listen,
    stop: () => server?.stop(true),
  }
}

/** A Google service account made for the test: the key pair, and the credentials file. */
export function serviceAccount(tokenUri: string, dir: string) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const creds = {
    type: 'service_account',
    project_id: 'chat-test',
    private_key_id: 'k1',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    client_email: 'push@chat-test.iam.gserviceaccount.com',
    token_uri: tokenUri,
  }
  const file = join(dir, 'fcm.json')
  writeFileSync(file, JSON.stringify(creds))
  return { file, creds, publicPem: publicKey.export({ type: 'spki', format: 'pem' }) as string }
}

export interface FcmReceived {
  message: {
    token: string
    notification: { title: string; body: string }
    data: Record<string, string>
    android: { collapse_key: string; notification: { notification_count: number } }
  }
}

/** FCM: POST /token (the OAuth exchange) and POST /v1/projects/<p>/messages:send; `gone` tokens answer 404 UNREGISTERED. */
export async function fcmReceiver(dir: string) {
  const tokens = new Set<string>()
  const received: FcmReceived[] = []
  const problems: string[] = []
  const gone = new Set<string>()
  let exchanges = 0
  let account: ReturnType<typeof serviceAccount> | undefined
  const server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(req) {
      const url = new URL(req.url)
      try {
        if (url.pathname === '/token') {
          const form = new URLSearchParams(await req.text())
          if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer')
            throw new Error(`grant_type ${form.get('grant_type')}`)
          const { payload } = await jwtVerify(form.get('assertion') ?? '', await importSPKI(account!.publicPem, 'RS256'), {
            audience: account!.creds.token_uri,
            issuer: account!.creds.client_email,
          })
          if (payload.scope !== 'https://www.googleapis.com/auth/firebase.messaging') throw new Error(`scope ${payload.scope}`)
          exchanges++
          const token = `ya29.${randomBytes(12).toString('hex')}`
          tokens.add(token)
          return Response.json({ access_token: token, expires_in: 3599, token_type: 'Bearer' })
        }
        if (url.pathname !== `/v1/projects/${account!.creds.project_id}/messages:send`) throw new Error(`path ${url.pathname}`)
        const bearer = (req.headers.get('authorization') ?? '').replace(/^Bearer /, '')
        if (!tokens.has(bearer)) return Response.json({ error: { code: 401, status: 'UNAUTHENTICATED' } }, { status: 401 })
        const body = (await req.json()) as FcmReceived
        if (gone.has(body.message.token))
          return Response.json(
            {
              error: {
                code: 404,
                status: 'NOT_FOUND',
                details: [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode: 'UNREGISTERED' }],
              },
            },
            { status: 404 },
          )
        received.push(body)
        return Response.json({ name: `projects/${account!.creds.project_id}/messages/${received.length}` })
      } catch (err) {
        problems.push(String(err))
        return new Response(String(err), { status: 400 })
      }
    },
  })
  account = serviceAccount(`http://127.0.0.1:${server.port}/token`, dir)
  return {
    url: `http://127.0.0.1:${server.port}`,
    file: account.file,
    received,
    problems,
    gone,
    exchanges: () => exchanges,
    stop: () => server.stop(true),
  }
}

export interface ApnsReceived {
  token: string
  headers: Record<string, string>
  body: { aps: { alert: { title: string; body: string }; badge: number }; room: string; seq: string; msg: string }
}

/**
 * A self-signed certificate made by openssl (by default for 127.0.0.1; `name` a DNS name), and
 * the file the server's NODE_EXTRA_CA_CERTS names.
 */
export function selfSigned(dir: string, name?: string) {
  const key = join(dir, 'tls.key')
  const cert = join(dir, 'tls.crt')
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      `/CN=${name ?? '127.0.0.1'}`,
      '-addext',
      name ? `subjectAltName=DNS:${name}` : 'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  )
  return { key, cert }
}

/** APNs over HTTP/2 and TLS: POST /3/device/<token>; `gone` tokens answer 400 BadDeviceToken, `unregistered` 410. */
export async function apnsReceiver(dir: string) {
  const tls = selfSigned(dir)
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const keyFile = join(dir, 'AuthKey.p8')
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)
  const keyId = 'ABC123DEFG'
  const teamId = 'TEAM123456'
  const topic = 'com.example.chat'
  const received: ApnsReceived[] = []
  const problems: string[] = []
  const bad = new Set<string>()
  const unregistered = new Set<string>()
  const verifyKey = publicKey
  const server = http2.createSecureServer({ key: readFileSync(tls.key), cert: readFileSync(tls.cert) })
  server.on('stream', (stream: http2.ServerHttp2Stream, headers) => {
    let raw = ''
    stream.setEncoding('utf8')
    stream.on('data', (c: string) => (raw += c))
    stream.on('end', async () => {
      const answer = (status: number, body?: unknown) => {
        stream.respond({ ':status': status, 'apns-id': crypto.randomUUID() })
        stream.end(body === undefined ? undefined : JSON.stringify(body))
      }
      try {
        const path = String(headers[':path'])
        const token = path.replace(/^\/3\/device\//, '')
        if (headers[':method'] !== 'POST' || token === path) throw new Error(`request ${headers[':method']} ${path}`)
        const jwt = String(headers.authorization ?? '').replace(/^bearer /, '')
        const h = decodeProtectedHeader(jwt)
        if (h.alg !== 'ES256' || h.kid !== keyId) throw new Error(`JWT header ${JSON.stringify(h)}`)
        await jwtVerify(jwt, verifyKey, { issuer: teamId, algorithms: ['ES256'] })
        if (headers['apns-topic'] !== topic) throw new Error(`apns-topic ${headers['apns-topic']}`)
        if (headers['apns-push-type'] !== 'alert') throw new Error(`apns-push-type ${headers['apns-push-type']}`)
        if (!headers['apns-collapse-id'] || String(headers['apns-collapse-id']).length > 64)
          throw new Error(`apns-collapse-id ${headers['apns-collapse-id']}`)
        if (bad.has(token)) return answer(400, { reason: 'BadDeviceToken' })
        if (unregistered.has(token)) return answer(410, { reason: 'Unregistered', timestamp: Date.now() })
        const hs: Record<string, string> = {}
        for (const [k, v] of Object.entries(headers)) if (k.startsWith('apns-')) hs[k] = String(v)
        received.push({ token, headers: hs, body: JSON.parse(raw) })
        answer(200)
      } catch (err) {
        problems.push(String(err))
        answer(403, { reason: 'InvalidProviderToken', detail: String(err) })
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as { port: number }).port
  return {
    env: {
      PUSH_APNS_URL: `https://127.0.0.1:${port}`,
      PUSH_APNS_KEY_FILE: keyFile,
      PUSH_APNS_KEY_ID: keyId,
      PUSH_APNS_TEAM_ID: teamId,
      PUSH_APNS_TOPIC: topic,
      NODE_EXTRA_CA_CERTS: tls.cert,
    },
    received,
    problems,
    bad,
    unregistered,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  }
}

/** All three, and the environment that points a server at them. */
export async function pushReceivers() {
  const dir = mkdtempSync(join(tmpdir(), 'chat-push-'))
  const [wp, fcm, apns] = await Promise.all([webPushReceiver(), fcmReceiver(dir), apnsReceiver(dir)])
  const env: Record<string, string> = {
    PUSH_VAPID_PUBLIC_KEY: wp.vapid.publicKey,
    PUSH_VAPID_PRIVATE_KEY: wp.vapid.privateKey,
    PUSH_VAPID_SUBJECT: 'mailto:ops@example.com',
    // The receivers are plain http on loopback: the outbound rule lets them through only when allowed.
    OUTBOUND_ALLOW: '127.0.0.1',
    PUSH_FCM_CREDENTIALS_FILE: fcm.file,
    PUSH_FCM_URL: fcm.url,
    ...apns.env,
  }
  return {
    wp,
    fcm,
    apns,
    env,
    problems: () => [...wp.problems, ...fcm.problems, ...apns.problems],
    stop: async () => (wp.stop(), fcm.stop(), await apns.stop()),
  }
}

/** Waits until `check` returns a value other than undefined/false (polling), or throws with `what`. */
export async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await check()
    if (v !== undefined && v !== false) return v as T
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(25)
  }
}
