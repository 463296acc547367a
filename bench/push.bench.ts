import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDatabase, startLocalPostgres } from '../infra/local/postgres.js';
import { tempDir } from '../infra/local/process.js';
import { startLocalRedis } from '../infra/local/redis.js';
import { createApiServer } from '../pipelines/api/server.js';
import { createApiKey } from '../pipelines/api/keys-store.js';
import { createPgPool } from '../pipelines/core/pg.js';
import { createLogger } from '../pipelines/core/logger.js';
import { CellarMetrics } from '../pipelines/core/metrics.js';
import { migrate } from '../pipelines/state/migrate.js';
import { repeat, result, type BenchResult } from './harness.js';
import { percentile } from './workload.js';

/** Rows per pushed request, requests per run, and requests in flight at once. */
const ROWS = 1_000;
const REQUESTS = 100;
const CONCURRENCY = 4;

/**
 * HTTP push (`POST /v1/suppliers/{id}/feed`): rows/s the API accepts (read the JSON body, check each row's
 * key, queue the request in Postgres with its idempotency answer) and the p99 of one request, with requests
 * of 1,000 rows, 4 in flight, each with its own Idempotency-Key, from this process to the API on a private
 * Postgres. Applying the queued rows is the runtime's work (normalize, aggregate, commit), measured by the
 * embedded suite.
 */
export async function pushBenchmarks(): Promise<BenchResult[]> {
  const [pgServer, redis] = await Promise.all([startLocalPostgres(), startLocalRedis()]);
  const dir = tempDir('bench-push');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'bench.yaml'), `id: bench
name: bench
source:
  kind: http
  tables: [{ name: push.stock, key: [sku, store] }]
  push: { maxRows: 10000 }
mapping: { sku: sku, warehouse: store, quantity: bottles, regions: { s1: eu-west } }
`);
  const url = await createDatabase(pgServer.url, 'bench_push');
  const pool = createPgPool(url, { max: 2 });
  const server = await createApiServer({ pgUrl: url, redisUrl: redis.url, suppliersDir: dir, log: createLogger('bench-push', 'silent'), metrics: new CellarMetrics(false) });
  try {
    await migrate(pool);
    const base = await server.listen(0, '127.0.0.1');
    const { key } = await createApiKey(pool, { name: 'bench', role: 'supplier', supplierId: 'bench', rateLimitPerS: 0 });
    let n = 0;
    const latencies: number[] = [];
    const body = () => JSON.stringify(Array.from({ length: ROWS }, (_, i) => ({ sku: `wine-${i}`, store: 's1', bottles: (n + i) % 50, updated: '2026-11-30T06:00:00Z' })));
    const run = async (): Promise<number> => {
      const bodies = Array.from({ length: REQUESTS }, body);
      let next = 0;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
        while (next < bodies.length) {
          const b = bodies[next++]!;
          const t = performance.now();
          const res = await fetch(`${base}/v1/suppliers/bench/feed`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': `r${++n}` }, body: b });
          await res.arrayBuffer();
          if (res.status !== 202) throw new Error(`push answered ${res.status}`);
          latencies.push(performance.now() - t);
        }
      }));
      return (REQUESTS * ROWS) / ((performance.now() - t0) / 1000);
    };
    const runs = await repeat(run, 5, 1);
    const p99 = percentile(latencies.slice(REQUESTS), 99);
    return [
      result('push: rows accepted by POST /v1/suppliers/{id}/feed (1,000-row JSON requests, 4 in flight)', 'rows/s', runs, { details: { rowsPerRequest: ROWS, requestsPerRun: REQUESTS, concurrency: CONCURRENCY } }),
      result('push: one 1,000-row request, p99', 'ms', [p99], { higherIsBetter: false, details: { p50: percentile(latencies.slice(REQUESTS), 50) } }),
    ];
  } finally {
    await server.close();
    await pool.end();
    await redis.destroy();
    await pgServer.destroy();
  }
}
