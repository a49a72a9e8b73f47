/**
 * A small S3-compatible object store for tests (there is no S3 here): path-style
 * `/<bucket>/<key>` PUT, GET, HEAD, DELETE, and the multipart upload calls Bun's S3 writer
 * makes for large bodies. Every request must carry an AWS SigV4 Authorization header naming
 * `accessKeyId` (the signature itself is not verified); others answer 403.
 */
export function s3Receiver(accessKeyId: string) {
  const objects = new Map<string, Uint8Array>()
  const multipart = new Map<string, Map<number, Uint8Array>>()
  const requests: { method: string; path: string }[] = []
  let refused = 0
  const xml = (body: string, status = 200) =>
    new Response(`<?xml version="1.0" encoding="UTF-8"?>${body}`, { status, headers: { 'content-type': 'application/xml' } })
  const server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    maxRequestBodySize: 1024 ** 3,
    async fetch(req) {
      const url = new URL(req.url)
      const path = decodeURIComponent(url.pathname)
      requests.push({ method: req.method, path })
      const auth = req.headers.get('authorization') ?? ''
      if (!auth.startsWith('AWS4-HMAC-SHA256 ') || !auth.includes(`Credential=${accessKeyId}/`) || !auth.includes('Signature=')) {
        refused++
        return xml('<Error><Code>AccessDenied</Code><Message>SigV4 Authorization naming the access key required</Message></Error>', 403)
      }
      const uploadId = url.searchParams.get('uploadId')
      if (req.method === 'POST' && url.searchParams.has('uploads')) {
        const id = Bun.randomUUIDv7()
        multipart.set(id, new Map())
        return xml(
          `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>${path}</Key><UploadId>${id}</UploadId></InitiateMultipartUploadResult>`,
        )
      }
      if (req.method === 'PUT' && uploadId) {
        const parts = multipart.get(uploadId)
        if (!parts) return xml('<Error><Code>NoSuchUpload</Code></Error>', 404)
        const n = Number(url.searchParams.get('partNumber'))
        parts.set(n, new Uint8Array(await req.arrayBuffer()))
        return new Response(null, { headers: { etag: `"part-${n}"` } })
      }
      if (req.method === 'POST' && uploadId) {
        const parts = multipart.get(uploadId)
        if (!parts) return xml('<Error><Code>NoSuchUpload</Code></Error>', 404)
        await req.text()
        const ordered = [...parts.entries()].sort((a, b) => a[0] - b[0]).map(([, p]) => p)
        objects.set(path, new Uint8Array(Buffer.concat(ordered)))
        multipart.delete(uploadId)
        return xml(`<CompleteMultipartUploadResult><Key>${path}</Key><ETag>"done"</ETag></CompleteMultipartUploadResult>`)
      }
      if (req.method === 'DELETE' && uploadId) {
        multipart.delete(uploadId)
        return new Response(null, { status: 204 })
      }
      if (req.method === 'PUT') {
        objects.set(path, new Uint8Array(await req.arrayBuffer()))
        return new Response(null, { headers: { etag: '"x"' } })
      }
      const obj = objects.get(path)
      if (req.method === 'GET' || req.method === 'HEAD') {
        if (!obj) return xml('<Error><Code>NoSuchKey</Code></Error>', 404)
        return new Response(req.method === 'HEAD' ? null : (obj as Uint8Array<ArrayBuffer>), {
          headers: { 'content-length': String(obj.length), etag: '"x"', 'last-modified': new Date().toUTCString() },
        })
      }
      if (req.method === 'DELETE') {
        objects.delete(path)
        return new Response(null, { status: 204 })
      }
      return xml('<Error><Code>NotImplemented</Code></Error>', 501)
    },
  })
  return {
    url: `http://127.0.0.1:${server.port}`,
    objects,
    requests,
    refused: () => refused,
    stop: () => server.stop(true),
  }
}
