import { Elysia } from 'elysia'
import { webBundle, webFile } from './demo-assets' with { type: 'macro' }

// Inlined at build time (see demo-assets.ts).
const html = webFile('index.html')
const css = webFile('style.css')
const js = webBundle('app.ts')

/** The page may load only its own script and style and talk only to this origin. */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const asset =
  (body: string, type: string, extra: Record<string, string> = {}) =>
  () =>
    new Response(body, { headers: { 'content-type': type, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff', ...extra } })

/** The demo chat page at `/` and its two assets; mounted only when ENABLE_DEMO is on. */
export function demoRoutes(enabled: boolean) {
  const app = new Elysia({ name: 'demo' })
  if (!enabled) return app
  return app
    .get('/', asset(html, 'text/html; charset=utf-8', { 'content-security-policy': CSP, 'referrer-policy': 'no-referrer' }))
    .get('/demo/app.js', asset(js, 'text/javascript; charset=utf-8'))
    .get('/demo/style.css', asset(css, 'text/css; charset=utf-8'))
}
