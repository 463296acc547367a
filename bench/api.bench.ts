import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { createDatabase, startLocalPostgres } from '../infra/local/postgres.js';
import { freePort, spawnManaged, stopChild, tempDir } from '../infra/local/process.js';
import { startLocalRedis } from '../infra/local/redis.js';
import { CELLAR_NODE_FLAGS } from '../infra/local/cellar-process.js';
import { createApiKey } from '../pipelines/api/keys-store.js';
import { assetPath } from '../pipelines/core/paths.js';
import type { RegionalStock } from '../schemas/records.js';
import { migrate } from '../pipelines/state/migrate.js';
import { createPgPool } from '../pipelines/core/pg.js';
import { upsertRegionalStock } from '../sinks/postgres/sink.js';
import { createRedisSnapshotSink } from '../sinks/redis/sink.js';
import { median, result, rng, type BenchResult } from './harness.js';
import { parentPid, processCpuMs } from './proc.js';

const REGIONS = ['eu-west', 'us-east', 'ap-south'];
const SKUS = 2_000;
const CONNECTIONS = 32;
const RUN_S = 10;
const RUNS = 3;
/** API processes (CELLAR_API_WORKERS): one per core of this 2-core machine. */
const API_WORKERS = 2;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface LoadRun {
  readsPerS: number;
  p50: number;
  p99: number;
  errors: number;
  requests: number;
}

/** The pid of the private redis-server on `port` (found by its command line). */
function redisPid(port: number): number {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      // redis-server rewrites its title to `redis-server <host>:<port>`.
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (cmd.startsWith('redis-server') && (cmd.includes(`:${port}`) || cmd.includes(`\0${port}\0`))) return Number(d);
    } catch {
      /* gone */
    }
  }
  throw new Error(`no redis-server on port ${port}`);
}

/** CPU time (user + system) a process has used, ms; a process that is gone fails the run. */
function cpuMs(pid: number): number {
  const ms = processCpuMs(pid);
  if (ms === undefined) throw new Error(`no CPU time for process ${pid}: it is gone`);
  return ms;
}

/** CPU time of a process and its children (the API's cluster workers), ms. */
function treeCpuMs(pid: number): number {
  let total = cpuMs(pid);
  for (const d of readdirSync('/proc')) {
    if (/^\d+$/.test(d) && parentPid(Number(d)) === pid) total += processCpuMs(Number(d)) ?? 0;
  }
  return total;
}

/** True when Debian's wrk (a load tool in C, far cheaper per request than autocannon) is installed. */
function hasWrk(): boolean {
  return spawnSync('wrk', ['--version']).error === undefined;
}

/**
 * One wrk run (one thread, CONNECTIONS connections) of `durationS` over random keys; every answer must be 200.
 * Returns the run and the CPU wrk used (ms, from /proc, read until it exits).
 */
async function loadWithWrk(url: string, key: string, paths: string[], durationS: number, seed: number): Promise<LoadRun & { cpuMs: number }> {
  const script = join(tempDir('bench-wrk'), 'reads.lua');
  writeFileSync(script, `math.randomseed(${seed})
local paths = {${paths.map((p) => `"${p}"`).join(',')}}
wrk.headers["Authorization"] = "Bearer ${key}"
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, e.connect + e.read + e.write + e.status + e.timeout, summary.duration, latency:percentile(50), latency:percentile(99)))
end
`);
  const child = spawn('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${durationS}s`, '-s', script, url], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  let used = 0;
  const poll = setInterval(() => {
    used = processCpuMs(child.pid) ?? used; // the last reading once wrk has exited
  }, 100);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearInterval(poll);
  const m = /RESULT (\d+) (\d+) (\d+) (\d+) (\d+)/.exec(out);
  if (code !== 0 || !m) throw new Error(`wrk failed (exit ${code}): ${out}`);
  const [requests, errors, durUs, p50Us, p99Us] = m.slice(1).map(Number) as [number, number, number, number, number];
  return { requests, errors, readsPerS: requests / (durUs / 1e6), p50: p50Us / 1000, p99: p99Us / 1000, cpuMs: used };
}

/** One autocannon run of `durationS` over random keys; every answer must be 200. */
function load(url: string, key: string, paths: string[], durationS: number, seed: number): Promise<LoadRun> {
  const next = rng(seed);
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url,
        connections: CONNECTIONS,
        duration: durationS,
        headers: { authorization: `Bearer ${key}` },
        requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: paths[Math.floor(next() * paths.length)]! }) }],
      },
      (err, r) => {
        if (err) return reject(err);
        const bad = r.non2xx + r.errors + r.timeouts;
        resolve({ readsPerS: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: bad, requests: r.requests.total });
      },
    );
  });
}

/**
 * Read API throughput and latency: the API runs in its own process from the compiled code (`cellar run
 * api`), over a private Postgres and Redis seeded with 3 regions × 2,000 SKUs; autocannon in this
 * process sends authenticated `GET /v1/stock/{region}/{sku}` for random keys over 32 connections,
 * 3 runs of 10 s after a warm-up. Reported: reads/s, p50 and p99 (ms) per run.
 */
export async function apiBenchmarks(): Promise<BenchResult[]> {
  const main = assetPath('dist', 'pipelines', 'cli', 'main.js');
  if (!existsSync(main)) throw new Error('the API benchmark runs the compiled code: run `npm run build` (make bench does) first');
  const [pgServer, redis] = await Promise.all([startLocalPostgres({ walLevel: 'replica' }), startLocalRedis()]);
  let api: ChildProcess | undefined;
  try {
    const url = await createDatabase(pgServer.url, 'bench_api');
    const pool = createPgPool(url, { max: 2 });
    await migrate(pool);
    const rows: RegionalStock[] = REGIONS.flatMap((region) =>
      Array.from({ length: SKUS }, (_, i) => ({ region, sku: `wine-${String(i).padStart(5, '0')}`, bottleSizeMl: 750, bottles: (i * 7) % 500, contributors: 3, version: 1 + (i % 5), sourceTsMs: Date.now(), updatedTsMs: Date.now() })),
    );
    await upsertRegionalStock(pool, rows);
    const sink = createRedisSnapshotSink({ url: redis.url });
    await sink.connect();
    await sink.writeBatch([]);
    await sink.writeBatch(rows);
    await sink.close();
    const key = (await createApiKey(pool, { name: 'bench', role: 'reader', rateLimitPerS: 0 })).key;
    await pool.end();

    const port = await freePort();
    api = spawnManaged(process.execPath, [...CELLAR_NODE_FLAGS, ...(process.env.API_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof'] : []), main, 'run', 'api'], {
      env: { ...process.env, CELLAR_PG_URL: url, CELLAR_REDIS_URL: redis.url, CELLAR_API_PORT: String(port), CELLAR_API_HOST: '127.0.0.1', CELLAR_API_WORKERS: String(API_WORKERS), CELLAR_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      const ok = await fetch(`${base}/readyz`).then((r) => r.ok, () => false);
      if (ok) break;
      if (i > 150 || api.exitCode !== null) throw new Error('the API process did not become ready');
      await sleep(200);
    }
    const paths = rows.map((r) => `/v1/stock/${r.region}/${r.sku}`);
    const check = await fetch(`${base}${paths[17]}`, { headers: { authorization: `Bearer ${key}` } });
    const body = (await check.json()) as { freshness?: { store?: string } };
    if (check.status !== 200 || body.freshness?.store !== 'redis') throw new Error(`unexpected answer ${check.status} ${JSON.stringify(body)}`);

    const wrk = hasWrk();
    const run = async (durationS: number, seed: number) => (wrk ? loadWithWrk(base, key, paths, durationS, seed) : { ...(await load(base, key, paths, durationS, seed)), cpuMs: undefined });
    await run(3, 1); // warm-up: JIT, connection pools, script cache
    const runs: LoadRun[] = [];
    const apiCpuUs: number[] = [];
    const loadCpuUs: number[] = [];
    const redisCpuUs: number[] = [];
    const rpid = redisPid(redis.port);
    for (let i = 0; i < RUNS; i++) {
      const before = { api: treeCpuMs(api.pid!), redis: cpuMs(rpid), self: process.cpuUsage() };
      const r = await run(RUN_S, 100 + i);
      if (r.errors) throw new Error(`${r.errors} requests failed or were not 200 during the run`);
      runs.push(r);
      const self = process.cpuUsage(before.self);
      apiCpuUs.push(((treeCpuMs(api.pid!) - before.api) * 1000) / r.requests);
      redisCpuUs.push(((cpuMs(rpid) - before.redis) * 1000) / r.requests);
      loadCpuUs.push(r.cpuMs !== undefined ? (r.cpuMs * 1000) / r.requests : (self.user + self.system) / r.requests);
    }
    // CPU per read of each process: on a shared machine the throughput follows whatever else runs, while
    // these say what one read costs the API (and what the load tool and Redis spent alongside).
    const cpu = { apiCpuUsPerRead: median(apiCpuUs), redisCpuUsPerRead: median(redisCpuUs), loadToolCpuUsPerRead: median(loadCpuUs) };
    const details = { ...cpu, readsPerApiCoreSecond: Math.round(1e6 / cpu.apiCpuUsPerRead), apiWorkers: API_WORKERS, connections: CONNECTIONS, runSeconds: RUN_S, regions: REGIONS.length, skusPerRegion: SKUS, endpoint: 'GET /v1/stock/{region}/{sku}', loadTool: wrk ? 'wrk, one thread (separate process from the API)' : 'autocannon (separate process from the API; install wrk for a cheaper load tool)', p50Ms: runs.map((r) => r.p50) };
    return [
      result('api key reads', 'reads/s', runs.map((r) => r.readsPerS), { target: 20_000, details }),
      result('api key read p99', 'ms', runs.map((r) => r.p99), { target: 10, higherIsBetter: false, details: { p50Ms: runs.map((r) => r.p50), p50MedianMs: median(runs.map((r) => r.p50)) } }),
    ];
  } finally {
    if (api) await stopChild(api, 'SIGTERM');
    await redis.destroy();
    await pgServer.destroy();
  }
}
