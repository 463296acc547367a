import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { createDatabase, startLocalPostgres } from '../infra/local/postgres.js';
import { tempDir } from '../infra/local/process.js';
import { startLocalRedis } from '../infra/local/redis.js';
import { loadRuntimeConfig } from '../pipelines/core/config.js';
import { createLogger } from '../pipelines/core/logger.js';
import { Reconciler } from '../pipelines/reconcile/runner.js';
import { migrate } from '../pipelines/state/migrate.js';
import { createPgPool } from '../pipelines/core/pg.js';
import { rebuildRedisFromPostgres } from '../sinks/redis/rebuild.js';
import { repeat, result, type BenchResult } from './harness.js';

const ROWS = 200_000;
const SKUS = 40_000;
const WAREHOUSES = 6;
const region = (w: number) => ['eu-west', 'us-east', 'us-west'][w % 3]!;

/**
 * Reconciliation speed: source rows compared per second for one Postgres supplier of 200,000 rows whose
 * contributions, totals and Redis snapshots Cellar holds in step (a clean run: the whole scan, the
 * normalization of every row with the supplier's mapping, and the comparison of totals and Redis fields).
 */
export async function reconcileBenchmarks(): Promise<BenchResult[]> {
  const pgServer = await startLocalPostgres();
  const redisServer = await startLocalRedis();
  const log = createLogger('bench', 'warn');
  try {
    const supplierUrl = await createDatabase(pgServer.url, 'supplier');
    const cellarUrl = await createDatabase(pgServer.url, 'cellar');
    const sup = createPgPool(supplierUrl, { max: 1 });
    await sup.query('CREATE TABLE public.stock (id int PRIMARY KEY, sku text NOT NULL, wh text NOT NULL, cases int NOT NULL)');
    await sup.query(`INSERT INTO public.stock SELECT g, 'sku-' || (g % ${SKUS}), 'w' || (g % ${WAREHOUSES}), g % 40 FROM generate_series(1, ${ROWS}) g`);
    await sup.end();
    const pool = createPgPool(cellarUrl, { max: 2 });
    await migrate(pool);
    // Cellar in step with the source: one contribution per row, totals per key.
    await pool.query(`INSERT INTO cellar.stock_contributions (region, sku, contributor_id, supplier_id, warehouse_id, bottles, source_version, source_ts, deleted, key_version, partition)
      SELECT (ARRAY['eu-west', 'us-east', 'us-west'])[1 + (g % ${WAREHOUSES}) % 3], 'sku-' || (g % ${SKUS}), 'bench/public.stock/id=' || g, 'bench', 'w' || (g % ${WAREHOUSES}),
             (g % 40) * 6, lpad(g::text, 20, '0'), now(), false, 1, -1 FROM generate_series(1, ${ROWS}) g`);
    await pool.query(`INSERT INTO cellar.regional_stock (region, sku, bottles, contributors, version, source_ts, updated_at)
      SELECT region, sku, sum(bottles), count(*), 1, now(), now() FROM cellar.stock_contributions GROUP BY region, sku`);
    const redis = new Redis(redisServer.url);
    await rebuildRedisFromPostgres({ pool, redis });
    redis.disconnect();
    await pool.end();

    const dir = tempDir('bench-suppliers');
    mkdirSync(dir, { recursive: true });
    const u = new URL(supplierUrl);
    const regions = Object.fromEntries(Array.from({ length: WAREHOUSES }, (_, w) => [`w${w}`, region(w)]));
    writeFileSync(join(dir, 'bench.yaml'), `id: bench
name: Bench
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${u.port}, database: supplier, user: postgres }
  tables: [{ name: public.stock }]
mapping: { sku: sku, warehouse: wh, quantity: cases, unit: case6, regions: ${JSON.stringify(regions)} }
`);
    const cfg = loadRuntimeConfig({ ...process.env, CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redisServer.url, CELLAR_SUPPLIERS_DIR: dir });
    const reconciler = new Reconciler(cfg, log);
    let last: Record<string, unknown> = {};
    try {
      const runs = await repeat(async () => {
        const [r] = await reconciler.run({ supplierId: 'bench', settleMs: 0 });
        if (!r || r.outcome !== 'clean' || r.rowsCompared !== ROWS) throw new Error(`bench run not clean: ${JSON.stringify({ outcome: r?.outcome, rows: r?.rowsCompared, drift: r?.drift.slice(0, 3) })}`);
        last = { rows: r.rowsCompared, seconds: r.durationMs / 1000 };
        return (r.rowsCompared * 1000) / r.durationMs;
      }, 3, 1);
      return [result('reconcile: source rows compared (Postgres supplier, 200k rows, clean)', 'rows/s', runs, { target: 50_000, details: { ...last, keys: SKUS * 3 } })];
    } finally {
      await reconciler.close();
    }
  } finally {
    await redisServer.destroy();
    await pgServer.destroy();
  }
}
