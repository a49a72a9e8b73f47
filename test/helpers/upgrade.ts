const UPGRADE = {
  upgrade: 'websocket',
  connection: 'Upgrade',
  'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
  'sec-websocket-version': '13',
}

/**
 * The HTTP answer to a WebSocket upgrade request (a WebSocket client would hide a refusal's
 * status and body). A 101 answer never completes as a fetch, so it shows up as status 101
 * after a short wait.
 */
export async function upgrade(baseUrl: string, query: Record<string, string> = {}, headers: Record<string, string> = {}) {
  const qs = new URLSearchParams(query).toString()
  const res = await fetch(`${baseUrl}/ws${qs ? `?${qs}` : ''}`, {
    headers: { ...UPGRADE, ...headers },
    signal: AbortSignal.timeout(1500),
  }).catch((err) => {
    if (err.name === 'TimeoutError') return undefined
    throw err
  })
  if (!res || res.status === 101) return { status: 101, body: undefined as any }
  const text = await res.text()
  let body: any = text
  try {
    body = JSON.parse(text)
  } catch {}
  return { status: res.status, body }
}
