/**
 * The Grafana dashboard and the Prometheus alert rules name only metrics that a running server
 * exports (so they cannot drift from src/metrics.ts), the dashboard covers every chat_* metric,
 * and the rules pass `promtool check rules` (Debian's `prometheus` package; with CI=true a
 * missing promtool is a failure, else that check is skipped with a printed reason).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { ROOT, startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

const DASHBOARD = 'deploy/grafana/chat-server.json'
const ALERTS = 'deploy/prometheus/alerts.yml'
/** Series Prometheus makes itself, not the server. */
const SYNTHETIC = new Set(['up'])
const METRIC = /\b(?:up|(?:chat|process|nodejs)_[a-z0-9_]+)\b/g

let s: RunningServer
let exported: Set<string>
const dashboard = JSON.parse(readFileSync(join(ROOT, DASHBOARD), 'utf8'))
const rules = parse(readFileSync(join(ROOT, ALERTS), 'utf8'))

beforeAll(async () => {
  s = await startServer({ env: { API_KEY: 'observability-key-0123456789' } })
  const text = await (await fetch(`${s.url}/metrics`)).text()
  exported = new Set()
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    exported.add(name!)
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(name + suffix)
  }
})
afterAll(async () => {
  await s.stop()
})

/** Every PromQL expression of the dashboard: panel targets and template variable queries. */
function dashboardExprs(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) node.forEach((n) => dashboardExprs(n, out))
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if ((k === 'expr' || k === 'definition') && typeof v === 'string') out.push(v)
      else dashboardExprs(v, out)
    }
  }
  return out
}

const ruleExprs = (): { alert: string; expr: string }[] =>
  rules.groups.flatMap((g: any) => g.rules.map((r: any) => ({ alert: r.alert, expr: r.expr })))

const names = (expr: string) => [...expr.matchAll(METRIC)].map((m) => m[0])

describe('dashboard and alert rules against /metrics', () => {
  test('the server exports the metrics this check relies on', () => {
    for (const name of [
      'chat_connections',
      'chat_ready',
      'chat_check_ok',
      'chat_publish_latency_seconds_bucket',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
    ])
      expect(exported).toContain(name)
  })

  test('every metric the dashboard names is exported, and every chat_* metric has a panel', () => {
    const exprs = dashboardExprs(dashboard)
    expect(exprs.length).toBeGreaterThan(20)
    const used = new Set<string>()
    for (const expr of exprs) {
      const found = names(expr)
      expect({ expr, names: found.length > 0 }).toEqual({ expr, names: true })
      for (const n of found) {
        expect({ expr, missing: exported.has(n) ? undefined : n }).toEqual({ expr, missing: undefined })
        used.add(n.replace(/_(bucket|sum|count)$/, ''))
      }
    }
    const uncovered = [...exported].filter((n) => n.startsWith('chat_') && !/_(bucket|sum|count)$/.test(n) && !used.has(n))
    expect(uncovered).toEqual([])
  })

  test('every metric the alert rules name is exported (or made by Prometheus)', () => {
    const all = ruleExprs()
    expect(all.length).toBeGreaterThanOrEqual(8)
    for (const { alert, expr } of all) {
      const found = names(expr)
      expect({ alert, names: found.length > 0 }).toEqual({ alert, names: true })
      for (const n of found)
        expect({ alert, missing: exported.has(n) || SYNTHETIC.has(n) ? undefined : n }).toEqual({ alert, missing: undefined })
    }
    // What the issue asks the rules to watch.
    const text = JSON.stringify(all)
    for (const watched of [
      'chat_ready',
      'chat_broker_errors_total',
      'chat_store_errors_total',
      'chat_errors_total',
      'chat_publish_latency_seconds_bucket',
      'chat_slow_consumer_closes_total',
    ])
      expect(text).toContain(watched)
  })

  test('the dashboard is importable: unique panel ids, a datasource variable, every target with a refId', () => {
    expect(dashboard.uid).toBe('chat-server')
    expect(dashboard.templating.list.map((v: any) => v.name)).toEqual(['datasource', 'job', 'instance'])
    const ids = dashboard.panels.map((p: any) => p.id)
    expect(new Set(ids).size).toBe(ids.length)
    for (const p of dashboard.panels.filter((p: any) => p.type !== 'row')) {
      expect(p.datasource.uid).toBe('${datasource}')
      for (const t of p.targets) expect(t.refId).toMatch(/^[A-Z]$/)
    }
  })

  test('promtool check rules passes', async () => {
    const promtool = Bun.which('promtool')
    if (!promtool) {
      const reason = 'promtool is not installed (Debian package `prometheus`)'
      if (process.env.CI === 'true') throw new Error(`${reason}; CI must install it`)
      console.log(`skipping promtool check: ${reason}`)
      return
    }
    const r = Bun.spawnSync([promtool, 'check', 'rules', join(ROOT, ALERTS)], { stdout: 'pipe', stderr: 'pipe' })
    const out = r.stdout.toString() + r.stderr.toString()
    expect({ code: r.exitCode, out }).toEqual({ code: 0, out: expect.stringContaining('SUCCESS') })
  })
})
