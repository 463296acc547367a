import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import pg from 'pg';
import { createDatabase, startLocalPostgres } from '../infra/local/postgres.js';
import { tempDir } from '../infra/local/process.js';
import { startLocalRedis } from '../infra/local/redis.js';
import { loadRuntimeConfig } from '../pipelines/core/config.js';
import { createLogger } from '../pipelines/core/logger.js';
import { CellarMetrics } from '../pipelines/core/metrics.js';
import { startEmbedded } from '../pipelines/runtime/embedded-runtime.js';
import { median, result, type BenchResult } from './harness.js';

const SKUS = 2_000;
const WAREHOUSES = 6;
const ROWS = SKUS * WAREHOUSES;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU time of the whole machine (every core, user + system + irq), ms. */
function machineCpuMs(): number {
  return os.cpus().reduce((a, c) => a + c.times.user + c.times.sys + c.times.irq + c.times.nice, 0);
}

/** CPU time of this process, ms. */
function ownCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
}

/**
 * End to end on the embedded runtime, in this process, against a private Postgres (supplier and Cellar
 * databases) and Redis: sustained changes/s from supplier commit to visible in Postgres and Redis, and
 * freshness (source commit → Redis write) p50/p99 at a fixed 5k changes/s.
 */
export async function embeddedBenchmarks(): Promise<BenchResult[]> {
  const [server, redis] = await Promise.all([startLocalPostgres(), startLocalRedis()]);
  let stopRuntime: (() => Promise<void>) | undefined;
  const supplier = new pg.Client(await createDatabase(server.url, 'bench_supplier'));
  try {
    const cellarUrl = await createDatabase(server.url, 'bench_cellar');
    await supplier.connect();
    await supplier.query('CREATE TABLE public.stock (id int PRIMARY KEY, item_code text NOT NULL, depot text NOT NULL, qty int NOT NULL)');
    await supplier.query(`INSERT INTO public.stock SELECT g, 'wine-' || (g % ${SKUS}), 'd' || (g % ${WAREHOUSES}), 100 FROM generate_series(0, ${ROWS - 1}) g`);
    const dir = tempDir('bench-suppliers');
    mkdirSync(dir, { recursive: true });
    const u = new URL(server.url);
    writeFileSync(join(dir, 'bench.yaml'), `id: bench
name: Bench
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${u.port}, database: bench_supplier, user: postgres }
  topicPrefix: bench
  tables: [{ name: public.stock }]
mapping:
  sku: item_code
  warehouse: depot
  quantity: qty
  regions: { d0: eu, d1: eu, d2: us, d3: us, d4: ap, d5: ap }
`);
    const cfg = loadRuntimeConfig({ CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redis.url, CELLAR_SUPPLIERS_DIR: dir });
    const metrics = new CellarMetrics(false);
    const samples: number[] = [];
    const observe = metrics.freshness.observe.bind(metrics.freshness);
    metrics.freshness.observe = ((labels: never, v: number) => {
      samples.push(v * 1000);
      return observe(labels, v);
    }) as typeof metrics.freshness.observe;
    const rt = await startEmbedded(cfg, createLogger('bench-embedded', 'warn'), metrics);
    stopRuntime = () => rt.stop();
    const processed = () => metrics.value('cellar_events_in_total', { stage: 'embedded' });
    const caughtUp = async (target: number, timeoutMs = 300_000) => {
      const deadline = Date.now() + timeoutMs;
      while ((await processed()) < target) {
        if (Date.now() > deadline) throw new Error(`embedded runtime processed ${await processed()} of ${target} changes`);
        await sleep(20);
      }
    };
    await caughtUp(ROWS); // the snapshot

    // Sustained: transactions of 500 row updates, as fast as the supplier accepts them.
    const throughput: number[] = [];
    /** How long the supplier took to commit the changes: the writer's own ceiling. */
    const writerMs: number[] = [];
    /** CPU per change, µs: the whole machine, and this process (the embedded runtime and the writer). */
    const cpuUs: Array<{ machine: number; runtime: number }> = [];
    for (let run = 0; run < 3; run++) {
      const n = 60_000;
      const start = await processed();
      const t0 = Date.now();
      const cpu0 = { machine: machineCpuMs(), own: ownCpuMs() };
      for (let i = 0; i < n / 500; i++) {
        const from = (i * 500) % ROWS;
        await supplier.query('UPDATE public.stock SET qty = qty + 1 WHERE id >= $1 AND id < $2', [from, from + 500]);
      }
      writerMs.push(Date.now() - t0);
      await caughtUp(start + n);
      throughput.push(n / ((Date.now() - t0) / 1000));
      cpuUs.push({ machine: Math.round(((machineCpuMs() - cpu0.machine) * 1000) / n), runtime: Math.round(((ownCpuMs() - cpu0.own) * 1000) / n) });
    }

    // Freshness at a fixed 5,000 changes/s: 50 changes every 10 ms for 15 s.
    samples.length = 0;
    const start = await processed();
    const t0 = Date.now();
    let sent = 0;
    while (Date.now() - t0 < 15_000) {
      const due = Math.floor(((Date.now() - t0) / 1000) * 5_000);
      while (sent < due) {
        const from = (sent * 7) % (ROWS - 50);
        await supplier.query('UPDATE public.stock SET qty = qty + 1 WHERE id >= $1 AND id < $2', [from, from + 50]);
        sent += 50;
      }
      await sleep(5);
    }
    await caughtUp(start + sent);
    const p50 = percentile(samples, 50);
    const p99 = percentile(samples, 99);
    return [
      result('embedded: sustained changes/s, commit → Postgres + Redis', 'changes/s', throughput, { target: 50_000, details: { transactionRows: 500, rows: ROWS, writerChangesPerS: writerMs.map((ms) => Math.round(60_000 / (ms / 1000))), cpuMicrosPerChange: cpuUs, cores: os.cpus().length } }),
      result('embedded: freshness p50 at 5k changes/s', 'ms', [p50], { target: 50, higherIsBetter: false, details: { samples: samples.length, changes: sent, rate: Math.round(sent / 15) } }),
      result('embedded: freshness p99 at 5k changes/s', 'ms', [p99], { target: 250, higherIsBetter: false, details: { max: Math.max(...samples), median: median(samples) } }),
    ];
  } finally {
    await stopRuntime?.().catch(() => undefined);
    await supplier.end().catch(() => undefined);
    await redis.destroy();
    await server.destroy();
  }
}
