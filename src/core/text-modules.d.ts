/** SQL migrations and Lua scripts are imported as text (embedded by `bun build --compile`). */
declare module '*.sql' {
  const text: string
  export default text
}
declare module '*.lua' {
  const text: string
  export default text
}
