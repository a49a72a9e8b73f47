// Deployment artefacts checked without a Docker engine or a cluster: the Dockerfile's claims,
// the Kubernetes manifests, the compose example, the systemd unit, and .env.example, all
// against the config schema and package.json.
import { describe, expect, test } from 'bun:test'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join, posix } from 'node:path'
import { parse, parseAllDocuments } from 'yaml'
import pkg from '../../package.json'
import { envExample, loadConfig, variables } from '../../src/config'
import { healthcheckUrl } from '../../src/healthcheck'
import { ROOT } from '../helpers/server'

const read = (p: string) => readFileSync(join(ROOT, p), 'utf8')
const KNOWN = new Set(Object.keys(variables))
const DEFAULT_PORT = Number(variables.PORT.default)
const SECRET_VARS = ['API_KEY', 'JWT_SECRET', 'JWT_PUBLIC_KEY', 'POSTGRES_DSN', 'REDIS_URL']

test('.env.example is the one envExample() generates (run scripts/env-example.ts)', () => {
  expect(read('.env.example')).toBe(envExample())
})

// ---------------------------------------------------------------- Dockerfile

interface Instr {
  cmd: string
  args: string
}
interface Stage {
  from: string
  name?: string
  instrs: Instr[]
}

/** Enough of the Dockerfile grammar for these checks: continuations, comments, stages. */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = []
  let cur = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!cur && (line === '' || line.startsWith('#'))) continue
    if (cur && line.startsWith('#')) continue // comments inside a continued instruction
    if (line.endsWith('\\')) cur += `${line.slice(0, -1)} `
    else {
      logical.push(cur + line)
      cur = ''
    }
  }
  const stages: Stage[] = []
  for (const l of logical) {
    const m = /^(\S+)\s*(.*)$/.exec(l)!
    const instr = { cmd: m[1]!.toUpperCase(), args: m[2]!.trim() }
    if (instr.cmd === 'FROM') {
      const f = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instr.args)!
      stages.push({ from: f[1]!, name: f[2], instrs: [] })
    } else stages.at(-1)!.instrs.push(instr)
  }
  return stages
}

const all = (s: Stage, cmd: string) => s.instrs.filter((i) => i.cmd === cmd)
const one = (s: Stage, cmd: string) => {
  const found = all(s, cmd)
  expect(found.length).toBe(1)
  return found[0]!
}
/** `ENV A=1 B=2` (and the old `ENV A 1`) as a record. */
function envOf(s: Stage): Record<string, string> {
  const out: Record<string, string> = {}
  for (const i of all(s, 'ENV')) {
    if (!i.args.includes('=')) {
      const [k, ...v] = i.args.split(/\s+/)
      out[k!] = v.join(' ')
    } else for (const m of i.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) out[m[1]!] = m[2]!.replace(/^"|"$/g, '')
  }
  return out
}

describe('Dockerfile', () => {
  const stages = parseDockerfile(read('Dockerfile'))
  const build = stages.find((s) => s.from.startsWith('oven/bun:'))!
  const runtime = stages.at(-1)!

  test('builds with the official oven/bun image at the bun devDependency version, from the lockfile', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2)
    expect(build).toBeDefined()
    expect(build.name).toBeDefined()
    expect(build.from).toBe(`oven/bun:${pkg.devDependencies.bun}`)
    const runs = all(build, 'RUN').map((i) => i.args)
    expect(runs.some((r) => /bun install\b.*--frozen-lockfile|\bnpm ci\b/.test(r))).toBe(true)
    // The lockfile it installs from is in the context.
    const copied = all(build, 'COPY')
      .map((i) => i.args)
      .join(' ')
    expect(copied).toContain('package-lock.json')
  })

  test('runs the binary on a small base as a non-root user', () => {
    expect(runtime).not.toBe(build)
    expect(runtime.from).toMatch(/^gcr\.io\/distroless\/|-slim\b/)
    const user = one(runtime, 'USER').args
    const [uid] = user.split(':')
    expect(['root', '0']).not.toContain(uid)
    // The Kubernetes Deployment runs as the same uid.
    const dep = k8s().find((d) => d.kind === 'Deployment')!
    expect(String(dep.spec.template.spec.securityContext.runAsUser)).toBe(uid!)
  })

  test('the entrypoint is the file the build stage writes', () => {
    // The build stage runs package.json's build script; its --outfile is relative to WORKDIR.
    const runs = all(build, 'RUN').map((i) => i.args)
    expect(runs.some((r) => /\bbun run build\b/.test(r))).toBe(true)
    const words = pkg.scripts.build.split(/\s+/)
    expect(words).toContain('--compile')
    const outfile = posix.join(one(build, 'WORKDIR').args, words[words.indexOf('--outfile') + 1]!)

    const copy = all(runtime, 'COPY').find((i) => i.args.includes(`--from=${build.name}`))!
    expect(copy).toBeDefined()
    const [src, dst] = copy.args.replace(/--\S+\s+/g, '').split(/\s+/)
    expect(src).toBe(outfile)

    const entry = JSON.parse(one(runtime, 'ENTRYPOINT').args) as string[]
    const installed = dst!.endsWith('/') ? posix.join(dst!, posix.basename(src!)) : dst!
    expect(entry[0]).toBe(installed)
  })

  test('exposes the default PORT and health-checks /healthz with the binary itself', () => {
    expect(one(runtime, 'EXPOSE').args).toBe(String(DEFAULT_PORT))
    const env = envOf(runtime)
    if (env.PORT) expect(Number(env.PORT)).toBe(DEFAULT_PORT)
    const hc = one(runtime, 'HEALTHCHECK').args
    const cmd = JSON.parse(hc.slice(hc.indexOf('CMD') + 3).trim()) as string[]
    const entry = JSON.parse(one(runtime, 'ENTRYPOINT').args) as string[]
    expect(cmd).toEqual([entry[0]!, '--healthcheck'])
    // What --healthcheck asks for, with the image's own environment.
    expect(healthcheckUrl(env)).toBe(`http://127.0.0.1:${DEFAULT_PORT}/healthz`)
  })

  test('bakes in no secrets', () => {
    for (const s of stages) {
      const env = envOf(s)
      const args = all(s, 'ARG').map((i) => i.args.split('=')[0]!)
      for (const v of SECRET_VARS) {
        expect(Object.keys(env)).not.toContain(v)
        expect(args).not.toContain(v)
      }
      for (const c of all(s, 'COPY').concat(all(s, 'ADD'))) expect(c.args).not.toMatch(/(^|\s)\.env(\s|$)/)
      for (const [k] of Object.entries(env)) expect(KNOWN.has(k)).toBe(true)
    }
    const ignore = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
    for (const p of ['.env', 'node_modules', 'dist', '.git']) expect(ignore).toContain(p)
  })
})

// ---------------------------------------------------------------- Kubernetes

type Doc = Record<string, any>
const K8S_DIR = 'deploy/k8s'
function k8s(): Doc[] {
  const docs: Doc[] = []
  for (const f of readdirSync(join(ROOT, K8S_DIR)).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml')) {
    for (const d of parseAllDocuments(read(join(K8S_DIR, f)))) {
      expect(d.errors).toEqual([])
      const js = d.toJS() as Doc | null
      if (js) docs.push({ ...js, __file: f })
    }
  }
  return docs
}

describe('Kubernetes manifests', () => {
  const docs = k8s()
  const kind = (k: string) => {
    const found = docs.filter((d) => d.kind === k)
    expect(found.length).toBe(1)
    return found[0]!
  }
  const dep = kind('Deployment')
  const pod = dep.spec.template.spec
  const container = pod.containers[0]
  const cm = kind('ConfigMap')
  const secret = kind('Secret')
  const cmData: Record<string, string> = cm.data
  const secretData: Record<string, string> = secret.stringData ?? {}

  test('every manifest parses and has apiVersion, kind and a name', () => {
    expect(docs.length).toBeGreaterThanOrEqual(6)
    for (const d of docs) {
      expect(typeof d.apiVersion).toBe('string')
      expect(typeof d.kind).toBe('string')
      expect(typeof d.metadata?.name).toBe('string')
    }
    for (const k of ['Service', 'PodDisruptionBudget', 'HorizontalPodAutoscaler']) kind(k)
  })

  test('Deployment: 3 replicas, probes on /readyz and /healthz at the container port', () => {
    expect(dep.spec.replicas).toBe(3)
    expect(pod.containers.length).toBe(1)
    const port = container.ports.find((p: Doc) => p.name === 'http')
    expect(port.containerPort).toBe(Number(cmData.PORT ?? DEFAULT_PORT))
    const samePort = (p: string | number) => p === port.name || p === port.containerPort
    expect(container.readinessProbe.httpGet.path).toBe('/readyz')
    expect(samePort(container.readinessProbe.httpGet.port)).toBe(true)
    expect(container.livenessProbe.httpGet.path).toBe('/healthz')
    expect(samePort(container.livenessProbe.httpGet.port)).toBe(true)
    if (container.startupProbe) expect(samePort(container.startupProbe.httpGet.port)).toBe(true)
  })

  test('Deployment: the grace period covers preStop plus SHUTDOWN_GRACE_S', () => {
    const grace = Number(cmData.SHUTDOWN_GRACE_S ?? variables.SHUTDOWN_GRACE_S.default)
    const preStop = container.lifecycle?.preStop
    expect(preStop).toBeDefined()
    const preStopS = Number(preStop.sleep?.seconds ?? 0)
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(grace)
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(grace + preStopS)
  })

  test('Deployment: resources, non-root, env from the ConfigMap and the Secret', () => {
    for (const r of ['requests', 'limits']) for (const k of ['cpu', 'memory']) expect(container.resources[r][k]).toBeDefined()
    expect(pod.securityContext.runAsNonRoot).toBe(true)
    const refs = container.envFrom.map((e: Doc) => e.configMapRef?.name ?? e.secretRef?.name)
    expect(refs).toContain(cm.metadata.name)
    expect(refs).toContain(secret.metadata.name)
  })

  test('Service, PDB and HPA select the Deployment', () => {
    const labels: Record<string, string> = dep.spec.template.metadata.labels
    const selects = (sel: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v)
    expect(selects(dep.spec.selector.matchLabels)).toBe(true)
    const svc = kind('Service')
    expect(selects(svc.spec.selector)).toBe(true)
    expect(svc.spec.sessionAffinity ?? 'None').toBe('None')
    const targets = svc.spec.ports.map((p: Doc) => p.targetPort)
    expect(targets.some((t: string | number) => t === 'http' || t === Number(cmData.PORT ?? DEFAULT_PORT))).toBe(true)
    expect(selects(kind('PodDisruptionBudget').spec.selector.matchLabels)).toBe(true)
    const hpa = kind('HorizontalPodAutoscaler')
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: dep.metadata.name })
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(dep.spec.replicas)
  })

  test('every env key is a config variable, and ConfigMap + Secret form a valid config', () => {
    const keys = [...Object.keys(cmData), ...Object.keys(secretData), ...(container.env ?? []).map((e: Doc) => e.name)]
    for (const k of keys) expect(KNOWN.has(k) ? k : `${k} (unknown)`).toBe(k)
    for (const v of Object.values(cmData)) expect(typeof v).toBe('string') // ConfigMap values must be strings
    for (const k of SECRET_VARS) expect(Object.keys(cmData)).not.toContain(k)
    expect(() => loadConfig({ ...cmData, ...secretData })).not.toThrow()
  })

  test('kustomization lists the manifests but not the example Secret', () => {
    const kust = parse(read(join(K8S_DIR, 'kustomization.yaml'))) as Doc
    for (const r of kust.resources as string[]) expect(existsSync(join(ROOT, K8S_DIR, r))).toBe(true)
    expect(kust.resources).not.toContain(secret.__file)
    for (const d of docs.filter((d) => d.kind !== 'Secret')) expect(kust.resources).toContain(d.__file)
  })
})

// ---------------------------------------------------------------- compose, nginx, systemd

/** Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` with sample values. */
function interpolate(v: string, env: Record<string, string>) {
  return v.replace(
    /\$\{(\w+)(?::?([-?])([^}]*))?\}/g,
    (_, name: string, op?: string, rest?: string) => env[name] ?? (op === '-' ? rest! : ''),
  )
}

describe('docker-compose example', () => {
  const compose = parse(read('deploy/compose/docker-compose.yml'), { merge: true }) as Doc
  const nodes = Object.entries(compose.services as Record<string, Doc>).filter(
    ([, s]) => s.build || String(s.image).startsWith('chat-server'),
  )
  const sample = { POSTGRES_PASSWORD: 'pw', API_KEY: 'k'.repeat(32), JWT_SECRET: 's'.repeat(32) }

  test('two chat nodes built from the Dockerfile, with Redis, PostgreSQL and a proxy', () => {
    expect(nodes.map(([n]) => n).sort()).toEqual(['chat1', 'chat2'])
    for (const [, s] of nodes) expect(s.build.dockerfile ?? 'Dockerfile').toBe('Dockerfile')
    expect(existsSync(join(ROOT, 'deploy/compose', nodes[0]![1].build.context, 'Dockerfile'))).toBe(true)
    for (const svc of ['redis', 'postgres', 'proxy']) expect(compose.services[svc]).toBeDefined()
  })

  test('every chat node env key is a config variable; the values form a valid config', () => {
    for (const [, s] of nodes) {
      const env = s.environment as Record<string, string>
      for (const k of Object.keys(env)) expect(KNOWN.has(k) ? k : `${k} (unknown)`).toBe(k)
      const resolved = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(String(v), sample)]))
      expect(() => loadConfig(resolved)).not.toThrow()
      // Secrets come from the operator's environment, never from the file.
      for (const k of ['API_KEY', 'JWT_SECRET']) if (env[k]) expect(env[k]).toMatch(/^\$\{\w+:\?/)
      const grace = Number(env.SHUTDOWN_GRACE_S ?? variables.SHUTDOWN_GRACE_S.default)
      expect(Number(String(s.stop_grace_period).replace(/s$/, ''))).toBeGreaterThan(grace)
    }
  })

  test('the nginx config upgrades WebSockets and points at the nodes', () => {
    const conf = read('deploy/compose/nginx.conf')
    expect(conf).toMatch(/proxy_set_header\s+Upgrade\s+\$http_upgrade;/)
    expect(conf).toMatch(/proxy_set_header\s+Connection\s+\$connection_upgrade;/)
    expect(conf).toMatch(/proxy_http_version\s+1\.1;/)
    const port = Number(nodes[0]![1].environment.PORT ?? DEFAULT_PORT)
    for (const [name] of nodes) expect(conf).toContain(`server ${name}:${port}`)
    expect(compose.services.proxy.volumes.join(' ')).toContain('./nginx.conf:')
  })
})

describe('Redis Cluster variants', () => {
  test('compose: the cluster file layered on the base gives every node a valid cluster config', () => {
    const base = parse(read('deploy/compose/docker-compose.yml'), { merge: true }) as Doc
    const over = parse(read('deploy/compose/docker-compose.cluster.yml'), { merge: true }) as Doc
    const sample = {
      POSTGRES_PASSWORD: 'pw',
      API_KEY: 'k'.repeat(32),
      JWT_SECRET: 's'.repeat(32),
      REDIS_CLUSTER_URL: 'redis://10.0.0.1:7000,redis://10.0.0.2:7000',
    }
    for (const [name, svc] of Object.entries(over.services as Record<string, Doc>)) {
      expect(base.services[name]).toBeDefined()
      const env = { ...base.services[name].environment, ...svc.environment } as Record<string, string>
      for (const k of Object.keys(env)) expect(KNOWN.has(k) ? k : `${k} (unknown)`).toBe(k)
      const c = loadConfig(Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(String(v), sample)])))
      expect(c.REDIS_CLUSTER).toBe(true)
      expect(c.REDIS_URL).toBe(sample.REDIS_CLUSTER_URL)
    }
  })

  test('k8s: the redis-cluster overlay builds on the base and turns REDIS_CLUSTER on', () => {
    const kust = parse(read(join(K8S_DIR, 'redis-cluster/kustomization.yaml'))) as Doc
    expect(kust.resources).toEqual(['../'])
    const ops = kust.patches.flatMap((p: Doc) => parse(p.patch) as Doc[])
    const data = Object.fromEntries(ops.map((o: Doc) => [String(o.path).replace('/data/', ''), o.value]))
    for (const k of Object.keys(data)) expect(KNOWN.has(k) ? k : `${k} (unknown)`).toBe(k)
    const cm = k8s().find((d) => d.kind === 'ConfigMap')!
    expect(loadConfig({ ...cm.data, ...data, REDIS_URL: 'rediss://chat:pw@clustercfg.example:6379' }).REDIS_CLUSTER).toBe(true)
  })
})

describe('systemd unit', () => {
  const unit = read('deploy/systemd/chat-server.service')
  const keys: Record<string, string> = {}
  for (const l of unit.split('\n')) {
    const m = /^(\w+)=(.*)$/.exec(l.trim())
    if (m) keys[m[1]!] = m[2]!
  }

  test('runs the binary with env from a file, unprivileged, with room for many sockets and the drain', () => {
    expect(keys.ExecStart).toBe('/usr/local/bin/chat-server')
    expect(keys.EnvironmentFile).toBeDefined()
    expect(keys.DynamicUser === 'yes' || (keys.User !== undefined && keys.User !== 'root')).toBe(true)
    expect(keys.KillSignal).toBe('SIGTERM')
    expect(Number(keys.TimeoutStopSec)).toBeGreaterThan(Number(variables.SHUTDOWN_GRACE_S.default))
    expect(Number(keys.LimitNOFILE)).toBeGreaterThanOrEqual(65536)
  })
})

test('README links docs/deploy.md', () => {
  expect(read('README.md').includes('(docs/deploy.md)')).toBe(true)
  expect(existsSync(join(ROOT, 'docs/deploy.md'))).toBe(true)
})

/** README.md without its code blocks. */
const readmeProse = () => read('README.md').replace(/```[\s\S]*?```/g, '')

test('README: the configuration table lists every variable of src/config.ts, and only those', () => {
  const lines = readmeProse().split('\n')
  const start = lines.findIndex((l) => l.startsWith('Every variable of `src/config.ts`'))
  expect(start).toBeGreaterThanOrEqual(0)
  const rows: string[] = []
  for (let i = start + 1; i < lines.length && rows.length < 1000; i++) {
    if (lines[i]!.startsWith('|')) rows.push(lines[i]!)
    else if (rows.length) break
  }
  // The first cell names the variables of a row: `HOST` / `PORT`, `S3_BUCKET` (+ `S3_ENDPOINT`, …).
  const named = new Set(rows.slice(2).flatMap((r) => [...(r.split('|')[1] ?? '').matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((m) => m[1]!)))
  expect([...KNOWN].filter((v) => !named.has(v))).toEqual([])
  expect([...named].filter((v) => !KNOWN.has(v))).toEqual([])
})

test('README repeats no run of ten words (a garbled merge shows as one)', () => {
  const words = readmeProse()
    .split('\n')
    .filter((l) => !l.startsWith('|'))
    .join(' ')
    .split(/\s+/)
    .filter(Boolean)
  const first = new Map<string, number>()
  const repeated: string[] = []
  for (let i = 0; i + 10 <= words.length; i++) {
    const run = words.slice(i, i + 10).join(' ')
    const at = first.get(run)
    if (at === undefined) first.set(run, i)
    else if (i - at >= 10) repeated.push(run)
  }
  expect(repeated).toEqual([])
})
