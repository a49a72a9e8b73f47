/**
 * The example app's entry: `?ws=` the server's /ws (default: this page's host), `?user=&name=`
 * with auth off, `?rooms=team,random` the rooms to start in. Bundle it with
 * `bun build client/react/example/main.tsx --outdir out` and serve it beside index.html.
 */
import { ChatProvider } from '@chat-server/react'
import { StrictMode } from 'react'
import { createRoot } from 'react-dom/client'
import { App } from './App'

const q = new URLSearchParams(location.search)
const url = q.get('ws') ?? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`
const rooms = (q.get('rooms') ?? 'team').split(',').filter(Boolean)

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    {/* With auth on, pass `token={() => fetchToken()}` instead of user and name. */}
    <ChatProvider url={url} user={q.get('user') ?? undefined} name={q.get('name') ?? undefined} reconnect={{ initialMs: 200, maxMs: 2000 }}>
      <App rooms={rooms} />
    </ChatProvider>
  </StrictMode>,
)
