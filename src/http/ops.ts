import { Elysia } from 'elysia'
import type { Metrics } from '../metrics'

/** A dependency's health: undefined when fine, else a short reason. */
export type Check = () => string | undefined

/** Liveness, readiness and Prometheus metrics. */
export function opsRoutes(deps: { metrics: Metrics; checks: Record<string, Check>; draining: () => boolean }) {
  return new Elysia()
    .get('/healthz', () => ({ status: 'ok' }))
    .get('/readyz', ({ set }) => {
      const checks: Record<string, string> = {}
      let ready = true
      for (const [name, check] of Object.entries(deps.checks)) {
        const problem = check()
        checks[name] = problem ?? 'ok'
        if (problem) ready = false
      }
      if (deps.draining()) {
        checks.node = 'draining'
        ready = false
      } else checks.node = 'ok'
      set.status = ready ? 200 : 503
      return { status: ready ? 'ready' : 'unready', checks }
    })
    .get('/metrics', async ({ set }) => {
      set.headers['content-type'] = deps.metrics.registry.contentType
      return deps.metrics.registry.metrics()
    })
}
