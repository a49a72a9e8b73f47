// `chat-server --healthcheck`: the container HEALTHCHECK for images without curl.
import { describe, expect, test } from 'bun:test'
import { healthcheckUrl } from '../../src/healthcheck'
import { runServerOnce, startServer } from '../helpers/server'

describe('healthcheckUrl', () => {
  test('targets /healthz on the configured port, via loopback for wildcard hosts', () => {
    expect(healthcheckUrl({})).toBe('http://127.0.0.1:8080/healthz')
    expect(healthcheckUrl({ PORT: '9000', HOST: '0.0.0.0' })).toBe('http://127.0.0.1:9000/healthz')
    expect(healthcheckUrl({ PORT: '9000', HOST: '::' })).toBe('http://127.0.0.1:9000/healthz')
    expect(healthcheckUrl({ PORT: '9000', HOST: '10.1.2.3' })).toBe('http://10.1.2.3:9000/healthz')
    expect(healthcheckUrl({ PORT: '9000', HOST: '::1' })).toBe('http://[::1]:9000/healthz')
  })

  test('refuses a port it cannot probe', () => {
    expect(() => healthcheckUrl({ PORT: 'abc' })).toThrow(/^PORT:/)
    expect(() => healthcheckUrl({ PORT: '0' })).toThrow(/^PORT:/)
  })
})

describe('--healthcheck', () => {
  test('exits 0 while the server answers /healthz, 1 once it is gone', async () => {
    const srv = await startServer()
    try {
      const ok = await runServerOnce({ PORT: String(srv.port) }, ['--healthcheck'])
      expect(ok.code).toBe(0)
      expect(ok.stdout).toContain(`http://127.0.0.1:${srv.port}/healthz: 200`)
      expect(await srv.stop()).toBe(0)
      const gone = await runServerOnce({ PORT: String(srv.port) }, ['--healthcheck'])
      expect(gone.code).toBe(1)
      expect(gone.stderr).toContain('healthcheck failed')
    } finally {
      await srv.stop('SIGKILL')
    }
  })

  test('exits 1 on a bad PORT without starting a server', async () => {
    const r = await runServerOnce({ PORT: 'abc' }, ['--healthcheck'])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('PORT:')
    expect(r.stdout).not.toContain('listening')
  })
})
