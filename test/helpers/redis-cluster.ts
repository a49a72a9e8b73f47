import { test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Subprocess } from 'bun'
import { freePort, listening } from './services'

/** True when redis-server and redis-cli are on PATH (what a local Redis Cluster needs). */
export const haveRedisBinaries = () => Bun.which('redis-server') !== null && Bun.which('redis-cli') !== null

/** `test` when redis-server and redis-cli are there; a failing test under CI=true; else a printed skip. */
export function needRedisBinaries(): typeof test {
  if (haveRedisBinaries()) return test
  if (process.env.CI === 'true')
    return ((label: string) =>
      test(label, () => {
        throw new Error('redis-server/redis-cli are not on PATH (CI=true: a missing service is a failure)')
      })) as unknown as typeof test
  console.warn('skipping the Redis Cluster suites: redis-server/redis-cli are not on PATH')
  return test.skip
}

interface Instance {
  port: number
  dir: string
  proc: Subprocess
}

export interface RedisCluster {
  ports: number[]
  /** `redis://127.0.0.1:p1,redis://127.0.0.1:p2,...`: the seed list for REDIS_URL. */
  url: string
  /** Runs redis-cli against one instance and returns its output. */
  cli(port: number, ...args: string[]): Promise<string>
  /** Ports of the current primaries. */
  primaries(): Promise<number[]>
  /** SIGKILLs the instance on `port` (a crash: no save, no goodbye to the cluster). */
  kill(port: number): Promise<void>
  /** Starts it again with its nodes.conf, so it rejoins (as a replica of whoever was promoted). */
  restart(port: number): Promise<void>
  waitOk(ms?: number): Promise<void>
  stop(): Promise<void>
}

/**
 * A real Redis Cluster on loopback: 6 `redis-server --cluster-enabled yes` (3 primaries,
 * 3 replicas), created by `redis-cli --cluster create`. A short node timeout makes a failover
 * take a couple of seconds instead of fifteen.
 */
export async function startRedisCluster(opts: { nodeTimeoutMs?: number } = {}): Promise<RedisCluster> {
  const root = mkdtempSync(join(tmpdir(), 'chat-rcluster-'))
  const instances = new Map<number, Instance>()
  const nodeTimeout = String(opts.nodeTimeoutMs ?? 2000)
  const spawn = (port: number, dir: string) =>
    Bun.spawn(
      [
        'redis-server',
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        'nodes.conf',
        '--cluster-node-timeout',
        nodeTimeout,
        '--save',
        '',
        '--appendonly',
        'no',
        '--protected-mode',
        'no',
      ],
      { stdout: 'ignore', stderr: 'ignore' },
    )
  const waitUp = async (port: number) => {
    for (let i = 0; i < 250 && !(await listening(port)); i++) await Bun.sleep(20)
    if (!(await listening(port))) throw new Error(`redis-server on ${port} did not start`)
  }
  for (let i = 0; i < 6; i++) {
    // Redis Cluster also listens on port + 10000 (the cluster bus): pick ports where both are free.
    let port = freePort()
    while (port > 55_000 || instances.has(port) || (await listening(port + 10_000))) port = freePort()
    const dir = join(root, String(port))
    await Bun.$`mkdir -p ${dir}`.quiet()
    instances.set(port, { port, dir, proc: spawn(port, dir) })
  }
  const ports = [...instances.keys()]
  const cli = async (port: number, ...args: string[]) => {
    const p = Bun.spawn(['redis-cli', '-h', '127.0.0.1', '-p', String(port), ...args], { stdout: 'pipe', stderr: 'pipe' })
    const [out] = await Promise.all([new Response(p.stdout).text(), p.exited])
    return out
  }
  const cluster: RedisCluster = {
    ports,
    url: ports.map((p) => `redis://127.0.0.1:${p}`).join(','),
    cli,
    async primaries() {
      const out = await cli(alive()[0]!, 'cluster', 'nodes')
      return out
        .split('\n')
        .filter((l) => / master /.test(l.replace(/,/g, ' ')) && !l.includes('fail'))
        .map((l) => Number(l.split(' ')[1]!.split('@')[0]!.split(':')[1]))
    },
    async kill(port) {
      const inst = instances.get(port)!
      inst.proc.kill('SIGKILL')
      await inst.proc.exited
    },
    async restart(port) {
      const inst = instances.get(port)!
      inst.proc = spawn(port, inst.dir)
      await waitUp(port)
    },
    async waitOk(ms = 20_000) {
      const end = Date.now() + ms
      while (Date.now() < end) {
        const infos = await Promise.all(alive().map((p) => cli(p, 'cluster', 'info')))
        if (infos.every((i) => i.includes('cluster_state:ok'))) return
        await Bun.sleep(100)
      }
      throw new Error('the Redis Cluster did not reach cluster_state:ok')
    },
    async stop() {
      for (const inst of instances.values()) inst.proc.kill('SIGKILL')
      await Promise.all([...instances.values()].map((i) => i.proc.exited))
      rmSync(root, { recursive: true, force: true })
    },
  }
  const alive = () => [...instances.values()].filter((i) => i.proc.exitCode === null && i.proc.signalCode === null).map((i) => i.port)
  try {
    await Promise.all(ports.map(waitUp))
    const create = Bun.spawn(
      ['redis-cli', '--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'],
      { stdout: 'pipe', stderr: 'pipe' },
    )
    const [out, err, code] = await Promise.all([new Response(create.stdout).text(), new Response(create.stderr).text(), create.exited])
    if (code !== 0) throw new Error(`redis-cli --cluster create failed (${code}): ${out}\n${err}`)
    await cluster.waitOk()
    // Every replica attached and in sync, so that a failover has someone to promote.
    const end = Date.now() + 20_000
    while (Date.now() < end) {
      const roles = await Promise.all(ports.map((p) => cli(p, 'info', 'replication')))
      if (roles.filter((r) => r.includes('role:slave') && r.includes('master_link_status:up')).length === 3) break
      await Bun.sleep(100)
    }
  } catch (err) {
    await cluster.stop()
    throw err
  }
  return cluster
}
