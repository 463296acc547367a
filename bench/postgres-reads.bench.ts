import type pg from 'pg';
import { createDatabase, startLocalPostgres, type LocalPostgres } from '../infra/local/postgres.js';
import { migrate } from '../pipelines/state/migrate.js';
import { createPgPool } from '../pipelines/core/pg.js';
import { median, result, type BenchResult, rng } from './harness.js';

const REGIONS = 20;
const SKUS = 100_000;
const ROUNDS = 5; // measured rounds, after one warm-up round
const PER_ROUND = 400; // queries per shape, table and round: 2000 measured
const UPSERT_ROWS = 50_000;
const BATCH = 5_000; // as in the sink suite
const T0 = 1_732_000_000_000;
const TABLES = [
  { label: 'single', table: 'cellar.regional_stock' },
  { label: 'partitioned', table: 'cellar.regional_stock_part' },
];

const regionName = (r: number) => `region-${String(r).padStart(2, '0')}`;
const skuName = (s: number) => `wine-${String(s).padStart(6, '0')}`;

const pick = (rand: () => number, n: number) => Math.floor(rand() * n);

/** Every (region, sku) once, in shuffled order (keys first arrive in no particular order), server-side. */
const FILL = `INSERT INTO cellar.regional_stock (region, sku, bottles, contributors, version, source_ts, updated_at)
SELECT 'region-' || lpad(r::text, 2, '0'), 'wine-' || lpad(s::text, 6, '0'), (r * 7 + s) % 500, 1 + s % 7, 1, now(), now()
  FROM generate_series(0, ${REGIONS - 1}) r, generate_series(0, ${SKUS - 1}) s ORDER BY random()`;

/**
 * The partitioned twin: same columns, one LIST partition per region (fillfactor 70 each). Both tables
 * are loaded without indexes, which are then built (the migration's definitions): three times faster
 * than maintaining them through 2M shuffled inserts, and the same for both tables.
 */
const SETUP = [
  'ALTER TABLE cellar.regional_stock DROP CONSTRAINT regional_stock_pkey',
  'DROP INDEX cellar.regional_stock_sku',
  'CREATE TABLE cellar.regional_stock_part (LIKE cellar.regional_stock) PARTITION BY LIST (region)',
  ...Array.from({ length: REGIONS }, (_, r) =>
    `CREATE TABLE cellar.regional_stock_part_r${String(r).padStart(2, '0')} PARTITION OF cellar.regional_stock_part FOR VALUES IN ('${regionName(r)}') WITH (fillfactor = 70)`),
];
const INDEXES = [
  'ALTER TABLE cellar.regional_stock ADD CONSTRAINT regional_stock_pkey PRIMARY KEY (region, sku)',
  'CREATE INDEX regional_stock_sku ON cellar.regional_stock (sku)',
  'ALTER TABLE cellar.regional_stock_part ADD PRIMARY KEY (region, sku)',
  'CREATE INDEX regional_stock_part_sku ON cellar.regional_stock_part (sku)',
];

/** The statement of sinks/postgres/sink.ts (UPSERT), with the table as a parameter. */
const upsertSql = (table: string) => `
INSERT INTO ${table} AS t (region, sku, bottles, contributors, version, source_ts, updated_at)
SELECT u.region, u.sku, u.bottles, u.contributors, u.version, ts.source_ts, ts.updated_at FROM unnest($1::text[], $2::text[], $3::bigint[], $4::integer[], $5::bigint[],
                     $6::double precision[], $7::double precision[])
       AS u(region, sku, bottles, contributors, version, source_ms, updated_ms)
  CROSS JOIN LATERAL (SELECT to_timestamp(u.source_ms / 1000.0), to_timestamp(u.updated_ms / 1000.0)) ts(source_ts, updated_at)
 ORDER BY u.region, u.sku
ON CONFLICT (region, sku) DO UPDATE
  SET bottles = excluded.bottles, contributors = excluded.contributors, version = excluded.version,
      source_ts = excluded.source_ts, updated_at = excluded.updated_at
  WHERE t.version < excluded.version`;

/** A query shape; every query must return `rows` rows. */
interface Shape { name: string; rows: number; sql: (table: string) => string; params: (rand: () => number) => unknown[] }

const SHAPES: Shape[] = [
  { name: 'per-key read', rows: 1, sql: (t) => `SELECT bottles, version FROM ${t} WHERE region = $1 AND sku = $2`, params: (r) => [regionName(pick(r, REGIONS)), skuName(pick(r, SKUS))] },
  {
    name: 'region page keyset', rows: 100,
    sql: (t) => `SELECT sku, bottles, version FROM ${t} WHERE region = $1 AND sku > $2 ORDER BY sku LIMIT 100`,
    params: (r) => [regionName(pick(r, REGIONS)), skuName(pick(r, SKUS - 100))],
  },
  {
    // `sku LIKE 'wine-0123%'` as an index range; 'wine-0' + 3 digits matches 100 SKUs per region.
    name: 'region page prefix', rows: 100,
    sql: (t) => `SELECT sku, bottles, version FROM ${t} WHERE region = $1 AND sku >= $2::text AND sku < $2::text || chr(255) ORDER BY sku LIMIT 100`,
    params: (r) => [regionName(pick(r, REGIONS)), `wine-0${String(pick(r, 1000)).padStart(3, '0')}`],
  },
  { name: 'sku across regions', rows: REGIONS, sql: (t) => `SELECT region, bottles FROM ${t} WHERE sku = $1`, params: (r) => [skuName(pick(r, SKUS))] },
];

const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const round2 = (n: number) => Math.round(n * 100) / 100;

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? 0;

/** The plan's first line, and its scan nodes with a count each (partitions as _rNN: an Append or Limit hides them). */
async function explain(client: pg.PoolClient, sql: string, params: unknown[]): Promise<{ plan: string; scans: Record<string, number> }> {
  const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN (FORMAT TEXT) ${sql}`, params);
  const scans: Record<string, number> = {};
  for (const { 'QUERY PLAN': line } of rows) {
    const scan = /(?:Seq|Index Only|Bitmap Index|Bitmap Heap|Index) Scan(?: using \S+)? on \S+/.exec(line)?.[0].replace(/_r\d\d(?!\d)/g, '_rNN');
    if (scan) scans[scan] = (scans[scan] ?? 0) + 1;
  }
  return { plan: rows[0]?.['QUERY PLAN'] ?? '', scans };
}

/** 50,000 distinct existing keys at `version`, written in sink-sized batches; returns rows/s and batch latencies. */
async function upsert(client: pg.PoolClient, table: string, seed: number, version: number): Promise<{ rowsPerSec: number; batchMs: number[] }> {
  const rand = rng(seed);
  const chosen = new Set<number>();
  while (chosen.size < UPSERT_ROWS) chosen.add(pick(rand, REGIONS * SKUS));
  const keys = [...chosen];
  const sql = upsertSql(table);
  const batchMs: number[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < keys.length; i += BATCH) {
    const b = keys.slice(i, i + BATCH);
    const s = process.hrtime.bigint();
    const r = await client.query(sql, [
      b.map((k) => regionName(k % REGIONS)), b.map((k) => skuName(Math.floor(k / REGIONS))), b.map((k) => (k + version) % 500),
      b.map((k) => 1 + (k % 7)), b.map(() => version), b.map(() => T0 + version), b.map(() => T0 + version + 1),
    ]);
    batchMs.push(ms(s));
    if (r.rowCount !== b.length) throw new Error(`${table}: upsert applied ${r.rowCount} of ${b.length} rows`);
  }
  return { rowsPerSec: keys.length / seconds(t0), batchMs };
}

/**
 * Read-path suite for `cellar.regional_stock` at 2,000,000 rows (20 regions × 100,000 SKUs, loaded in
 * shuffled order), against a LIST-by-region partitioned twin with the same data, on a private Postgres
 * started here (and always destroyed). From one connection, per table and query shape (per-key read,
 * keyset region page, prefix region page, one SKU across regions): latency p50 (runs: each round's p50
 * over 400 queries, 5 rounds after a warm-up, tables interleaved) with p99 and the EXPLAIN first line in
 * details; then the sink's upsert statement on 50,000 random existing keys per run, in rows/s.
 */
export async function postgresReadBenchmarks(): Promise<BenchResult[]> {
  let server: LocalPostgres | undefined;
  let pool: pg.Pool | undefined;
  let client: pg.PoolClient | undefined;
  try {
    server = await startLocalPostgres();
    pool = createPgPool(await createDatabase(server.url, 'bench_reads'), { max: 1 });
    await migrate(pool);
    client = await pool.connect();
    const c = client;
    const t0 = process.hrtime.bigint();
    await c.query("SET work_mem = '256MB'");
    await c.query("SET maintenance_work_mem = '512MB'");
    await c.query('SELECT setseed(0.42)');
    for (const stmt of SETUP) await c.query(stmt);
    await c.query(FILL);
    // Scan order is the shuffled insert order, so each partition is shuffled too.
    await c.query('INSERT INTO cellar.regional_stock_part SELECT * FROM cellar.regional_stock');
    for (const stmt of INDEXES) await c.query(stmt);
    await c.query('RESET ALL');
    // VACUUM as well: otherwise autovacuum would start on the fresh rows in the middle of the measurements.
    await c.query('VACUUM (ANALYZE) cellar.regional_stock, cellar.regional_stock_part');
    const sizeMiB = async (table: string) => {
      const { rows } = await c.query<{ b: string }>('SELECT sum(pg_total_relation_size(oid))::bigint AS b FROM pg_class WHERE oid = $1::regclass OR oid IN (SELECT relid FROM pg_partition_tree($1::regclass))', [table]);
      return Math.round(Number(rows[0]?.b ?? 0) / 2 ** 20);
    };
    const setup = { rows: REGIONS * SKUS, regions: REGIONS, skus: SKUS, loadS: round2(seconds(t0)) };

    const out: BenchResult[] = [];
    const lat = new Map<string, number[][]>(); // `${shape}|${label}` → latencies per measured round
    for (let round = 0; round <= ROUNDS; round++) {
      const tables = round % 2 ? [...TABLES].reverse() : TABLES;
      for (const [si, shape] of SHAPES.entries()) {
        for (const { label, table } of tables) {
          const rand = rng(round * 100 + si);
          const sql = shape.sql(table);
          const xs: number[] = [];
          for (let i = 0; i < PER_ROUND; i++) {
            const params = shape.params(rand);
            const s = process.hrtime.bigint();
            const r = await c.query(sql, params);
            xs.push(ms(s));
            if (r.rowCount !== shape.rows) throw new Error(`${shape.name} on ${table} returned ${r.rowCount} rows for ${JSON.stringify(params)}`);
          }
          if (round > 0) lat.set(`${shape.name}|${label}`, [...(lat.get(`${shape.name}|${label}`) ?? []), xs]);
        }
      }
    }
    for (const shape of SHAPES) {
      for (const { label, table } of TABLES) {
        const rounds = lat.get(`${shape.name}|${label}`)!;
        const all = rounds.flat();
        const plan = await explain(c, shape.sql(table), shape.params(rng(999)));
        out.push(result(`read ${shape.name} (${label})`, 'ms', rounds.map(median), {
          higherIsBetter: false,
          details: { p50Ms: round2(median(all)), p99Ms: round2(quantile(all, 0.99)), maxMs: round2(Math.max(...all)), queries: all.length, ...plan },
        }));
      }
    }

    const up = new Map<string, { runs: number[]; batchMs: number[] }>(TABLES.map((t) => [t.label, { runs: [], batchMs: [] }]));
    for (let round = 0; round <= ROUNDS; round++) {
      for (const { label, table } of round % 2 ? [...TABLES].reverse() : TABLES) {
        const r = await upsert(c, table, 7000 + round, round + 2); // every run raises the version: every row applies
        if (round > 0) {
          up.get(label)!.runs.push(r.rowsPerSec);
          up.get(label)!.batchMs.push(...r.batchMs);
        }
      }
    }
    for (const { label, table } of TABLES) {
      const f = up.get(label)!;
      out.push(result(`upsert 50k existing keys (${label})`, 'rows/s', f.runs, {
        details: { rowsPerRun: UPSERT_ROWS, batch: BATCH, p50BatchMs: round2(median(f.batchMs)), p99BatchMs: round2(quantile(f.batchMs, 0.99)), sizeMiB: await sizeMiB(table), ...setup },
      }));
    }
    return out;
  } finally {
    client?.release();
    await pool?.end().catch(() => undefined);
    await server?.destroy().catch(() => undefined);
  }
}
