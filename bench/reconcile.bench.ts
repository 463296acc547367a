import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { createDatabase, startLocalPostgres, type LocalPostgres } from '../infra/local/postgres.js';
import { tempDir } from '../infra/local/process.js';
import { startLocalRedis, type LocalRedis } from '../infra/local/redis.js';
import { loadRuntimeConfig } from '../pipelines/core/config.js';
import { createLogger, type Logger } from '../pipelines/core/logger.js';
import { Reconciler } from '../pipelines/reconcile/runner.js';
import { migrate } from '../pipelines/state/migrate.js';
import { createPgPool } from '../pipelines/core/pg.js';
import { rebuildRedisFromPostgres } from '../sinks/redis/rebuild.js';
import { repeat, result, type BenchResult } from './harness.js';

const ROWS = 200_000;
const SKUS = 40_000;
const WAREHOUSES = 6;
/** Rows of the large supplier: `CELLAR_BENCH_RECONCILE_ROWS` (e.g. 10000000), else a size that stays quick. */
const LARGE_ROWS = Number(process.env.CELLAR_BENCH_RECONCILE_ROWS ?? 300_000);
/**
 * Its SKUs: `CELLAR_BENCH_RECONCILE_SKUS`, else as many as the 200k supplier's, so that its memory figure
 * shows what rows cost (every unlisted SKU is pinned in the mapping's catalog for the run, as in the runtimes).
 */
const LARGE_SKUS = Number(process.env.CELLAR_BENCH_RECONCILE_SKUS ?? SKUS);
const REGIONS = ['eu-west', 'us-east', 'us-west'];
const region = (w: number) => REGIONS[w % 3]!;

/**
 * Reconciliation speed: source rows compared per second for one Postgres supplier of 200,000 rows whose
 * contributions, totals and Redis snapshots Cellar holds in step (a clean run: the whole scan, the
 * normalization of every row with the supplier's mapping, and the comparison of totals and Redis fields).
 * Then one run over a large supplier (`CELLAR_BENCH_RECONCILE_ROWS` rows) with its rate and the process'
 * peak resident memory, sampled every 100 ms: it must not grow with the rows.
 */
export async function reconcileBenchmarks(): Promise<BenchResult[]> {
  const pgServer = await startLocalPostgres();
  const redisServer = await startLocalRedis();
  const log = createLogger('bench', 'warn');
  try {
    const out: BenchResult[] = [];
    {
      const reconciler = await supplierInStep(pgServer, redisServer, log, 'std', ROWS, SKUS);
      let last: Record<string, unknown> = {};
      try {
        const runs = await repeat(async () => {
          const r = await cleanRun(reconciler, ROWS);
          last = { rows: r.rowsCompared, seconds: r.durationMs / 1000 };
          return (r.rowsCompared * 1000) / r.durationMs;
        }, 3, 1);
        out.push(result('reconcile: source rows compared (Postgres supplier, 200k rows, clean)', 'rows/s', runs, { target: 150_000, details: { ...last, keys: SKUS * 3 } }));
      } finally {
        await reconciler.close();
      }
    }
    {
      const skus = LARGE_SKUS;
      const flush = new Redis(redisServer.url);
      await flush.flushall();
      flush.disconnect();
      const large = await supplierInStep(pgServer, redisServer, log, 'large', LARGE_ROWS, skus);
      try {
        const baseRss = process.memoryUsage().rss;
        let peakRss = baseRss;
        const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
        let r: Awaited<ReturnType<typeof cleanRun>>;
        try {
          r = await cleanRun(large, LARGE_ROWS);
        } finally {
          clearInterval(sampler);
        }
        const mib = (b: number) => Math.round(b / 2 ** 20);
        const details = { rows: LARGE_ROWS, skus, seconds: r.durationMs / 1000, rssBeforeMiB: mib(baseRss), peakRssMiB: mib(peakRss) };
        out.push(result(`reconcile: large supplier (${LARGE_ROWS.toLocaleString('en-US')} rows, clean)`, 'rows/s', [(r.rowsCompared * 1000) / r.durationMs], { details }));
        out.push(result(`reconcile: peak RSS over the large supplier's run (${LARGE_ROWS.toLocaleString('en-US')} rows)`, 'MiB', [mib(peakRss)], { higherIsBetter: false, details }));
      } finally {
        await large.close();
      }
    }
    return out;
  } finally {
    await redisServer.destroy();
    await pgServer.destroy();
  }
}

/** One clean run of the bench supplier; throws unless it compared every row and found nothing. */
async function cleanRun(reconciler: Reconciler, rows: number) {
  const [r] = await reconciler.run({ supplierId: 'bench', settleMs: 0 });
  if (!r || r.outcome !== 'clean' || r.rowsCompared !== rows) throw new Error(`bench run not clean: ${JSON.stringify({ outcome: r?.outcome, rows: r?.rowsCompared, drift: r?.drift.slice(0, 3) })}`);
  return r;
}

/**
 * A supplier database of `rows` rows (`public.stock`, generated in SQL) and a Cellar database holding it
 * in step: one contribution per row, totals per key, Redis rebuilt from them. Returns a reconciler for it.
 */
async function supplierInStep(pgServer: LocalPostgres, redisServer: LocalRedis, log: Logger, name: string, rows: number, skus: number): Promise<Reconciler> {
  const supplierUrl = await createDatabase(pgServer.url, `supplier_${name}`);
  const cellarUrl = await createDatabase(pgServer.url, `cellar_${name}`);
  const sup = createPgPool(supplierUrl, { max: 1 });
  await sup.query('CREATE TABLE public.stock (id int PRIMARY KEY, sku text NOT NULL, wh text NOT NULL, cases int NOT NULL)');
  await sup.query(`INSERT INTO public.stock SELECT g, 'sku-' || (g % ${skus}), 'w' || (g % ${WAREHOUSES}), g % 40 FROM generate_series(1, ${rows}) g`);
  await sup.end();
  const pool = createPgPool(cellarUrl, { max: 2 });
  await migrate(pool);
  await pool.query(`INSERT INTO cellar.stock_contributions (region, sku, contributor_id, supplier_id, warehouse_id, bottles, source_version, source_ts, deleted, key_version, partition)
    SELECT (ARRAY['eu-west', 'us-east', 'us-west'])[1 + (g % ${WAREHOUSES}) % 3], 'sku-' || (g % ${skus}), 'bench/public.stock/id=' || g, 'bench', 'w' || (g % ${WAREHOUSES}),
           (g % 40) * 6, lpad(g::text, 20, '0'), now(), false, 1, -1 FROM generate_series(1, ${rows}) g`);
  await pool.query(`INSERT INTO cellar.regional_stock (region, sku, bottles, contributors, version, source_ts, updated_at)
    SELECT region, sku, sum(bottles), count(*), 1, now(), now() FROM cellar.stock_contributions GROUP BY region, sku`);
  const redis = new Redis(redisServer.url);
  await rebuildRedisFromPostgres({ pool, redis });
  redis.disconnect();
  await pool.end();

  const dir = tempDir(`bench-suppliers-${name}`);
  mkdirSync(dir, { recursive: true });
  const u = new URL(supplierUrl);
  const regions = Object.fromEntries(Array.from({ length: WAREHOUSES }, (_, w) => [`w${w}`, region(w)]));
  writeFileSync(join(dir, 'bench.yaml'), `id: bench
name: Bench
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${u.port}, database: supplier_${name}, user: postgres }
  tables: [{ name: public.stock }]
mapping: { sku: sku, warehouse: wh, quantity: cases, unit: case6, regions: ${JSON.stringify(regions)} }
`);
  const cfg = loadRuntimeConfig({ ...process.env, CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redisServer.url, CELLAR_SUPPLIERS_DIR: dir });
  return new Reconciler(cfg, log);
}
