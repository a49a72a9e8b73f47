import { Elysia } from 'elysia'
import { Gauge } from 'prom-client'
import type { Metrics } from '../metrics'

/** A dependency's health: undefined when fine, else a short reason. */
export type { Check } from '../core/check'
import type { Check } from '../core/check'

/** Liveness, readiness and Prometheus metrics. */
export function opsRoutes(deps: { metrics: Metrics; checks: Record<string, Check>; draining: () => boolean }) {
  function readiness() {
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
    return { ready, checks }
  }

  // /readyz as metrics, read on scrape: what the alert rules watch.
  const registers = [deps.metrics.registry]
  new Gauge({
    name: 'chat_ready',
    help: '1 when /readyz answers ready, else 0',
    registers,
    collect() {
      this.set(readiness().ready ? 1 : 0)
    },
  })
  new Gauge({
    name: 'chat_check_ok',
    help: 'Each /readyz check: 1 when ok, else 0',
    labelNames: ['check'],
    registers,
    collect() {
      for (const [check, state] of Object.entries(readiness().checks)) this.labels({ check }).set(state === 'ok' ? 1 : 0)
    },
  })

  return new Elysia()
    .get('/healthz', () => ({ status: 'ok' }))
    .get('/readyz', ({ set }) => {
      const { ready, checks } = readiness()
      set.status = ready ? 200 : 503
      return { status: ready ? 'ready' : 'unready', checks }
    })
    .get('/metrics', async ({ set }) => {
      set.headers['content-type'] = deps.metrics.registry.contentType
      return deps.metrics.registry.metrics()
    })
}
