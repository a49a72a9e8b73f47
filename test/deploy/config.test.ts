import { describe, expect, test } from 'bun:test'
import { ConfigError, envExample, loadConfig, variables } from '../../src/config'
import { runServerOnce } from '../helpers/server'

const errorsOf = (env: Record<string, string>) => {
  try {
    loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) return err.lines
    throw err
  }
  return []
}

describe('config', () => {
  test('defaults match the contract', () => {
    const c = loadConfig({})
    expect(c.PORT).toBe(8080)
    expect(c.HOST).toBe('0.0.0.0')
    expect(c.DEFAULT_ROOM).toBe('general')
    expect(c.MAX_FRAME_BYTES).toBe(65536)
    expect(c.MAX_BODY_CHARS).toBe(4000)
    expect(c.RATE_LIMIT_PER_SEC).toBe(20)
    expect(c.RATE_LIMIT_BURST).toBe(40)
    expect(c.MAX_BUFFERED_BYTES).toBe(1048576)
    expect(c.HISTORY_LIMIT).toBe(1000)
    expect(c.IDLE_TIMEOUT_S).toBe(60)
    expect(c.SHUTDOWN_GRACE_S).toBe(10)
    expect(c.ENABLE_DEMO).toBe(true)
    expect(c.ENABLE_PERSISTENCE).toBe(false)
    expect(c.authMode).toBe('off')
  })

  test('one line per bad variable, naming it', () => {
    expect(errorsOf({ PORT: 'abc' })).toEqual(['PORT: expected a port number from 0 to 65535, got "abc"'])
    expect(errorsOf({ REDIS_URL: 'localhost:6379', LOG_LEVEL: 'loud' }).map((l) => l.split(':')[0])).toEqual(['REDIS_URL', 'LOG_LEVEL'])
    expect(errorsOf({ ENABLE_PERSISTENCE: 'true' })).toEqual(['ENABLE_PERSISTENCE: true needs POSTGRES_DSN to be set'])
    expect(errorsOf({ DEFAULT_ROOM: 'has space' })[0]).toMatch(/^DEFAULT_ROOM:/)
    expect(errorsOf({ ENABLE_DEMO: 'maybe' })[0]).toMatch(/^ENABLE_DEMO: expected true or false/)
    expect(errorsOf({ JWT_SECRET: 'x'.repeat(32), JWT_JWKS_URL: 'https://issuer.example/jwks' })[0]).toMatch(
      /JWT_SECRET, JWT_JWKS_URL: set only one/,
    )
  })

  test('APP_ENV=production refuses short secrets', () => {
    expect(errorsOf({ APP_ENV: 'production', JWT_SECRET: 's'.repeat(20), API_KEY: 'k'.repeat(20) })).toEqual([
      'JWT_SECRET: must be at least 32 characters when APP_ENV=production',
      'API_KEY: must be at least 32 characters when APP_ENV=production',
    ])
    expect(errorsOf({ APP_ENV: 'development', JWT_SECRET: 's'.repeat(20) })).toEqual([])
    expect(errorsOf({ APP_ENV: 'production', JWT_SECRET: 's'.repeat(32), API_KEY: 'k'.repeat(32) })).toEqual([])
  })

  test('ALLOWED_ORIGINS is a comma list', () => {
    expect(loadConfig({ ALLOWED_ORIGINS: 'https://a.example, https://b.example' }).ALLOWED_ORIGINS).toEqual([
      'https://a.example',
      'https://b.example',
    ])
  })

  test('Redis Cluster seeds and workers: lists need REDIS_CLUSTER, workers need Redis and a fixed port', () => {
    const seeds = 'redis://10.0.0.1:7000,redis://10.0.0.2:7000'
    expect(loadConfig({ REDIS_URL: seeds, REDIS_CLUSTER: 'true' }).REDIS_CLUSTER).toBe(true)
    expect(errorsOf({ REDIS_URL: seeds })).toEqual(['REDIS_URL: a comma list of seed nodes needs REDIS_CLUSTER=true'])
    expect(errorsOf({ REDIS_URL: 'redis://a:1,http://b:2', REDIS_CLUSTER: 'true' })[0]).toMatch(
      /^REDIS_URL: expected a URL starting with redis:\/\/ or rediss:\/\/ \(or a comma list of them\)/,
    )
    expect(errorsOf({ REDIS_CLUSTER: 'true' })).toEqual(["REDIS_CLUSTER: true needs REDIS_URL (the cluster's seed nodes)"])
    expect(errorsOf({ WORKERS: '2' })).toEqual(['WORKERS: 2 workers are nodes of one cluster and need REDIS_URL'])
    expect(errorsOf({ WORKERS: '2', REDIS_URL: 'redis://127.0.0.1:6379', PORT: '0' })).toEqual([
      'WORKERS: several workers share one port; set PORT (0 would give each its own)',
    ])
    expect(errorsOf({ WORKERS: 'many' })[0]).toBe('WORKERS: expected a number from 1 to 256 or auto, got "many"')
    expect(loadConfig({ WORKERS: 'auto', REDIS_URL: 'redis://127.0.0.1:6379' }).WORKERS).toBe(navigator.hardwareConcurrency)
    expect(loadConfig({}).WORKERS).toBe(1)
  })

  test('.env.example is generated from the schema and lists every variable', async () => {
    const committed = await Bun.file(new URL('../../.env.example', import.meta.url)).text()
    expect(committed).toBe(envExample())
    for (const name of Object.keys(variables)) expect(committed).toContain(`${name}=`)
  })

  test('a bad value stops startup with status 1 and a line naming the variable', async () => {
    const r = await runServerOnce({ PORT: 'abc' })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('PORT: expected a port number from 0 to 65535, got "abc"')
  })
})
