// Regenerates .env.example from the config schema (src/config.ts): `bun run scripts/env-example.ts`.
import { envExample } from '../src/config'

await Bun.write(new URL('../.env.example', import.meta.url), envExample())
