import { writeSync } from 'node:fs'

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
  out(`${JSON.stringify(line)}\n`)
}

/**
 * The lines of one turn of the event loop, written together: a reconnect storm logs two lines
 * per socket, and one write each (a syscall, and a wake-up of whatever reads the pipe) cost
 * more than the line itself. The next turn writes them; so does the process's exit.
 */
let pending = ''
const FLUSH_AT = 64 * 1024

function out(line: string) {
  if (pending === '') setImmediate(flush)
  pending += line
  if (pending.length >= FLUSH_AT) flush()
}

function flush() {
  if (pending === '') return
  const lines = pending
  pending = ''
  process.stdout.write(lines)
}

// process.exit() skips the pending turn: what was logged before it is written now.
process.on('exit', () => {
  if (pending === '') return
  try {
    writeSync(1, pending)
  } catch {
    // stdout gone: nothing left to tell it
  }
  pending = ''
})

export const log = {
  debug: (msg: string, fields?: Record<string, unknown>) => write('debug', msg, fields),
  info: (msg: string, fields?: Record<string, unknown>) => write('info', msg, fields),
  warn: (msg: string, fields?: Record<string, unknown>) => write('warn', msg, fields),
  error: (msg: string, fields?: Record<string, unknown>) => write('error', msg, fields),
}
