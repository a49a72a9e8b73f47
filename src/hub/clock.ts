/**
 * `new Date().toISOString()` for the message timestamps, without a Date and a full format per
 * message: the text up to the seconds is made once a second, the milliseconds appended.
 */
let second = NaN
let prefix = ''

export function isoNow(now = Date.now()): string {
  const ms = now % 1000
  const s = now - ms
  if (s !== second) {
    second = s
    prefix = new Date(s).toISOString().slice(0, -4) // up to and with the `.` before the milliseconds
  }
  return `${prefix + (ms < 10 ? '00' : ms < 100 ? '0' : '') + ms}Z`
}
