/**
 * A Bun macro like those of demo-assets.ts: a file shipped by an npm package, read when this
 * code is bundled or transpiled and inlined as a string, so the compiled binary carries it
 * (the /docs and /admin pages load nothing from the internet).
 */
import { readFileSync } from 'node:fs'

/** `spec` as for import, e.g. `swagger-ui-dist/swagger-ui.css`. */
export function packageFile(spec: string): string {
  return readFileSync(Bun.resolveSync(spec, import.meta.dir), 'utf8')
}
