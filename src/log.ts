/** Structured logs: one JSON object per line on stdout. Never pass a token or a body at info. */
const levels = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const
export type Level = keyof typeof levels

let threshold: number = levels.info
let base: Record<string, unknown> = {}

export function configureLog(level: Level, fields: Record<string, unknown> = {}) {
  threshold = levels[level]
  base = fields
}

function write(level: Exclude<Level, 'silent'>, msg: string, fields?: Record<string, unknown>) {
  if (levels[level] < threshold) return
  const line: Record<string, unknown> = { time: new Date().toISOString(), level, msg, ...base, ...fields }
  if (fields?.err instanceof Error) line.err = { message: fields.err.message, name: fields.err.name }
  process.stdout.write(`${JSON.stringify(line)}\n`)
}

export const log = {
  debug: (msg: string, fields?: Record<string, unknown>) => write('debug', msg, fields),
  info: (msg: string, fields?: Record<string, unknown>) => write('info', msg, fields),
  warn: (msg: string, fields?: Record<string, unknown>) => write('warn', msg, fields),
  error: (msg: string, fields?: Record<string, unknown>) => write('error', msg, fields),
}
