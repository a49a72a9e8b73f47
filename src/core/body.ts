/** A request's body, read up to `max` bytes; undefined past it (also when it comes chunked without a length). */
export async function readCapped(req: Request, max: number): Promise<string | undefined> {
  const length = Number(req.headers.get('content-length') ?? Number.NaN)
  if (length > max) return undefined
  if (!req.body) return ''
  const chunks: Uint8Array[] = []
  let n = 0
  for await (const chunk of req.body as unknown as AsyncIterable<Uint8Array>) {
    n += chunk.byteLength
    if (n > max) return undefined
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}
