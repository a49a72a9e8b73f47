/**
 * Bun macros: they run when this code is bundled (`bun build --compile`) or transpiled
 * (`bun src/main.ts`), and their results are inlined as string literals. So the demo page's
 * HTML, CSS and bundled JS live inside the compiled binary, with no files beside it.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

const WEB = join(import.meta.dir, '..', '..', 'web')

/** A file of web/, as text. */
export function webFile(name: string): string {
  return readFileSync(join(WEB, name), 'utf8')
}

/** web/app.ts and the client package, bundled for browsers (Bun.build cannot run inside a macro). */
export function webBundle(entry: string): string {
  const r = Bun.spawnSync([process.execPath, 'build', join(WEB, entry), '--target=browser', '--format=esm', '--minify'], {
    stdout: 'pipe',
    stderr: 'pipe',
  })
  if (r.exitCode !== 0) throw new Error(`bundling web/${entry} failed: ${r.stderr.toString()}`)
  return r.stdout.toString()
}
