/**
 * `bun run bench/uploads.ts`: what an upload costs the server. A 200 MiB file (--mib=200) is
 * streamed to POST /api/uploads (UPLOAD_MAX_BYTES raised to 300 MiB) from a generator, on disk
 * storage (and, with --s3, on the S3 test receiver of test/helpers in this process), while the
 * server's RSS is sampled every 20 ms: throughput (MiB/s) and RSS before, at peak and after.
 * For comparison, a bare Bun.serve that reads the same body with `request.formData()` (which
 * holds the whole body in memory) is measured the same way.
 *
 * Flags: --mib=200  --s3  --no-formdata
 */
import { mkdtempSync, readdirSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BUN, rssBytes, startServer } from './lib/proc'
import { s3Receiver } from '../test/helpers/s3-receiver'

const flag = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1]
const MIB = Number(flag('mib') ?? 200)
const has = (name: string) => process.argv.includes(`--${name}`)
const mib = (n: number) => (n / 1024 / 1024).toFixed(1)

/** A multipart body of `size` bytes of file (a PNG header, then filler) made as it is read. */
function body(boundary: string, size: number): ReadableStream<Uint8Array> {
  const enc = new TextEncoder()
  const head = enc.encode(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n`,
  )
  const tail = enc.encode(`\r\n--${boundary}--\r\n`)
  const chunk = new Uint8Array(256 * 1024).fill(0x42)
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0, 0, 4, 0, 0, 0, 3, 0])
  let sent = 0
  let started = false
  return new ReadableStream({
    pull(c) {
      if (!started) {
        started = true
        c.enqueue(head)
        const first = chunk.slice()
        first.set(png)
        sent += first.length
        return c.enqueue(first)
      }
      if (sent >= size) {
        c.enqueue(tail)
        return c.close()
      }
      const n = Math.min(chunk.length, size - sent)
      sent += n
      c.enqueue(n === chunk.length ? chunk : chunk.subarray(0, n))
    },
  })
}

async function measure(label: string, pid: number, url: string) {
  Bun.gc(true)
  const before = rssBytes(pid)
  let peak = before
  const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 20)
  const boundary = `bench${Date.now()}`
  const size = MIB * 1024 * 1024
  const t0 = performance.now()
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    body: body(boundary, size),
    duplex: 'half',
  } as RequestInit)
  const text = await res.text()
  const secs = (performance.now() - t0) / 1000
  clearInterval(sampler)
  const after = rssBytes(pid)
  console.log(
    `${label}: ${res.status} ${MIB} MiB in ${secs.toFixed(2)} s = ${(MIB / secs).toFixed(0)} MiB/s; server RSS before ${mib(before)} MiB, peak ${mib(peak)} MiB (+${mib(peak - before)}), after ${mib(after)} MiB`,
  )
  if (res.status !== 201 && res.status !== 200) console.log(`  answer: ${text.slice(0, 200)}`)
  return { status: res.status, seconds: secs, mibPerSec: MIB / secs, rssBefore: before, rssPeak: peak }
}

const env = { UPLOAD_MAX_BYTES: String(300 * 1024 * 1024), LOG_LEVEL: 'info', RATE_LIMIT_PER_SEC: '0' }
const dir = mkdtempSync(join(tmpdir(), 'bench-uploads-'))
const disk = await startServer('chat', { ...env, UPLOAD_DIR: dir })
if (!disk.ok) throw new Error(`server did not start: ${disk.stderr}`)
await measure('chat-server, disk', disk.server.pid, `http://127.0.0.1:${disk.server.port}/api/uploads?user=bench`)
const stored = readdirSync(dir).map((f) => statSync(join(dir, f)).size)
console.log(`  stored: ${stored.length} file(s), ${stored.map(mib).join(', ')} MiB`)
await disk.server.stop()

if (has('s3')) {
  const s3 = s3Receiver('AKIABENCH')
  const srv = await startServer('chat', {
    ...env,
    S3_BUCKET: 'bench',
    S3_ENDPOINT: s3.url,
    S3_REGION: 'us-east-1',
    S3_ACCESS_KEY_ID: 'AKIABENCH',
    S3_SECRET_ACCESS_KEY: 'bench-secret-0123456789',
  })
  if (!srv.ok) throw new Error(`server did not start: ${srv.stderr}`)
  await measure(
    'chat-server, S3 (receiver in the bench process)',
    srv.server.pid,
    `http://127.0.0.1:${srv.server.port}/api/uploads?user=bench`,
  )
  console.log(`  stored: ${[...s3.objects.values()].map((o) => mib(o.length)).join(', ')} MiB`)
  await srv.server.stop()
  s3.stop()
}

if (!has('no-formdata')) {
  // The comparison: Bun's formData() on the same body.
  const code = `const s = Bun.serve({ port: 0, hostname: '127.0.0.1', maxRequestBodySize: 1024 ** 3, async fetch(req) { const f = await req.formData(); const file = f.get('file'); return new Response(String(file.size)) } }); console.log(s.port)`
  const proc = Bun.spawn([BUN, '-e', code], { stdout: 'pipe', stderr: 'inherit' })
  const reader = proc.stdout.getReader()
  const port = Number(new TextDecoder().decode((await reader.read()).value).trim())
  await measure('bare Bun.serve with request.formData()', proc.pid, `http://127.0.0.1:${port}/`)
  proc.kill()
}
