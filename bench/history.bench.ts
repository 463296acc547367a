import os from 'node:os';
import type pg from 'pg';
import { createDatabase, startLocalPostgres, type LocalPostgres } from '../infra/local/postgres.js';
import { startLocalRedis, type LocalRedis } from '../infra/local/redis.js';
import { createApiServer, type ApiServer } from '../pipelines/api/server.js';
import { createApiKey } from '../pipelines/api/keys-store.js';
import { createPgPool } from '../pipelines/core/pg.js';
import { createLogger } from '../pipelines/core/logger.js';
import { CellarMetrics } from '../pipelines/core/metrics.js';
import { DEMO_SUPPLIERS, skuEntries } from '../pipelines/demo/catalog.js';
import { maintainHistory, historyOf, stockAsOf } from '../pipelines/state/history.js';
import { migrate } from '../pipelines/state/migrate.js';
import { median, result, rng, type BenchResult } from './harness.js';
import { percentile } from './workload.js';
import { processCpuMs } from './proc.js';

const DAY_MS = 86_400_000;
/** The month of history: 30 daily partitions from this day (UTC), as CELLAR_HISTORY_RETENTION_DAYS=30 keeps. */
const T0 = Date.UTC(2026, 9, 1);
const DAYS = 30;
/** `cellar demo`'s default rate (row changes/s, each one effective change of a total). */
const DEMO_RATE = 500;
/**
 * Scales: mean changes per key and day (each key its own rate, uniform from 1 to 2×mean−1). A month at the
 * demo's rate (500/s: 43.2M rows a day, 1.3G in all) does not fit this machine; these are 99k and 396k rows
 * a day, and the measured cost is shown against them.
 */
const SCALES = [
  { label: 'small', perKeyDay: 10, baseline: 3 },
  { label: 'month', perKeyDay: 40, baseline: 2 },
];
const ROUNDS = 5; // measured rounds per shape, after one warm-up round
const AS_OF_PER_ROUND = 30;
const HISTORY_PER_ROUND = 100;
const PAGE = 100; // the API's default page
const DAY_PAGE = 1_000; // the history route's default limit
const TARGET_P99_MS = 100;

/** The old as-of query (DISTINCT ON over every change of the region up to the time), kept as the baseline. */
const OLD_AS_OF = `SELECT h.sku, h.bottles, h.version, extract(epoch from h.source_ts) * 1000 AS ms, r.bottle_size_ml
       FROM (SELECT DISTINCT ON (sku) sku, bottles, version, source_ts FROM cellar.stock_history
              WHERE region = $1 AND source_ts <= to_timestamp($2 / 1000.0) AND sku COLLATE "C" > $3 AND ($4::text IS NULL OR starts_with(sku, $4))
              ORDER BY sku, version DESC) h
       LEFT JOIN cellar.regional_stock r ON r.region = $1 AND r.sku = h.sku
      ORDER BY h.sku COLLATE "C" LIMIT $5`;

/** The demo's key space: every (region, canonical SKU) a demo supplier can stock (its warehouses' regions × its SKUs). */
function demoKeys(): Array<{ region: string; sku: string; ml: number; supplier: string }> {
  const keys = new Map<string, { region: string; sku: string; ml: number; supplier: string }>();
  for (const s of DEMO_SUPPLIERS) {
    for (const e of skuEntries(s)) for (const region of new Set(Object.values(s.regions))) keys.set(`${region}|${e.sku}`, { region, sku: e.sku, ml: e.ml, supplier: s.id });
  }
  return [...keys.values()];
}

/**
 * A month of history, in SQL: key k changes m_k times a day (m_k fixed per key, mean `perKeyDay`), its
 * versions 1, 2, … in time order, each change at a random time within its share of the day; 1% of the rows
 * arrive late (stamped up to 2 h before, so before changes of lower version, some in the day before or the
 * default partition). Loaded without the primary key, which is then built as the migration defines it.
 */
const FILL = (perKeyDay: number) => `
INSERT INTO cellar.stock_history (region, sku, version, bottles, delta, source_ts, contributor_id, supplier_id, warehouse_id, op, recorded_at)
SELECT k.region, k.sku, d * k.m + j + 1, hashint8(k.id::bigint * 1000000 + d * k.m + j) & 511, (hashint8(k.id::bigint * 1000000 + d * k.m + j + 7) & 31) - 16,
       t.ts, k.supplier || '/' || (k.id * 3 + j % 3), k.supplier, 'wh-' || (j % 3), CASE WHEN j % 23 = 22 THEN 'DELETE' ELSE 'UPSERT' END, t.ts + interval '2 seconds'
  FROM (SELECT *, 1 + (hashint4(id) & 1073741823) % ${2 * perKeyDay - 1} AS m FROM bench_keys) k, generate_series(0, ${DAYS - 1}) d, generate_series(0, k.m - 1) j,
       LATERAL (SELECT to_timestamp(${T0 / 1000}) + (d + (j + random()) / k.m) * interval '1 day'
                       - CASE WHEN random() < 0.01 THEN random() * interval '2 hours' ELSE interval '0' END AS ts) t`;

const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const round2 = (n: number) => Math.round(n * 100) / 100;

/** A statement's plan summary (EXPLAIN ANALYZE, BUFFERS): times, buffers, and the top of the plan. */
interface PlanSummary { statement: string; planningMs: number; executionMs: number; sharedHit: number; sharedRead: number; tempBlocks: number; top: string }

function summarize(statement: string, plan: Record<string, unknown>): PlanSummary {
  const root = plan.Plan as Record<string, unknown>;
  const nodes: string[] = [];
  for (let n: Record<string, unknown> | undefined = root; n && nodes.length < 4; n = (n.Plans as Array<Record<string, unknown>> | undefined)?.[0]) nodes.push(String(n['Node Type']));
  return {
    statement, planningMs: round2(Number(plan['Planning Time'])), executionMs: round2(Number(plan['Execution Time'])),
    sharedHit: Number(root['Shared Hit Blocks'] ?? 0), sharedRead: Number(root['Shared Read Blocks'] ?? 0),
    tempBlocks: Number(root['Temp Read Blocks'] ?? 0) + Number(root['Temp Written Blocks'] ?? 0), top: nodes.join(' > '),
  };
}

/**
 * A pool stand-in that runs EXPLAIN (ANALYZE, BUFFERS) of each statement before running it: the plans of
 * the real function's statements, as it sends them.
 */
function explaining(pool: pg.Pool, out: PlanSummary[]): pg.Pool {
  return {
    query: async (text: string, values?: unknown[]) => {
      const { rows } = await pool.query<{ 'QUERY PLAN': Array<Record<string, unknown>> }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`, values);
      out.push(summarize(text.includes('RECURSIVE') ? 'walk' : text.includes('DISTINCT ON') ? 'old DISTINCT ON' : 'upper bound', rows[0]!['QUERY PLAN'][0]!));
      return pool.query(text, values);
    },
  } as unknown as pg.Pool;
}

type Scale = (typeof SCALES)[number];

interface Loaded {
  rows: number;
  rowsPerDay: number;
  changesPerS: number;
  genS: number;
  indexS: number;
  vacuumS: number;
  heapMiB: number;
  indexMiB: number;
  partitions: number;
}

/**
 * A fresh database whose default collation is ICU en-US (as the compose stack's postgres image, which
 * initializes in en_US.utf8; this machine has no en_US libc locale): the as-of walk must not depend on the
 * database sorting like C. The server's default (C) when ICU is not there.
 */
async function icuDatabase(adminUrl: string, name: string): Promise<string> {
  const admin = createPgPool(adminUrl, { max: 1 });
  try {
    await admin.query(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'`);
  } catch {
    return createDatabase(adminUrl, name);
  } finally {
    await admin.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Creates the month's partitions (with `maintainHistory`, as the runtime does day by day), loads the history and the totals. */
async function load(pool: pg.Pool, scale: Scale, keys: ReturnType<typeof demoKeys>): Promise<Loaded> {
  for (let d = 0; d < DAYS; d++) await maintainHistory(pool, DAYS + 30, T0 + d * DAY_MS);
  const c = await pool.connect();
  try {
    await c.query("SET work_mem = '256MB'");
    await c.query("SET maintenance_work_mem = '512MB'");
    await c.query('SELECT setseed(0.42)');
    await c.query(`CREATE TABLE bench_keys AS SELECT (row_number() OVER ())::int AS id, region, sku, ml, supplier FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) AS u(region, sku, ml, supplier)`,
      [keys.map((k) => k.region), keys.map((k) => k.sku), keys.map((k) => k.ml), keys.map((k) => k.supplier)]);
    await c.query('ALTER TABLE cellar.stock_history DROP CONSTRAINT stock_history_pkey');
    let t = process.hrtime.bigint();
    const { rowCount } = await c.query(FILL(scale.perKeyDay));
    const genS = seconds(t);
    t = process.hrtime.bigint();
    await c.query('ALTER TABLE cellar.stock_history ADD PRIMARY KEY (region, sku, version, source_ts)');
    const indexS = seconds(t);
    // Each key's total as the last change left it (the page's bottle sizes come from here).
    await c.query(`INSERT INTO cellar.regional_stock (region, sku, bottle_size_ml, bottles, contributors, version, source_ts, updated_at)
      SELECT k.region, k.sku, k.ml, 100, 1, ${DAYS} * (1 + (hashint4(k.id) & 1073741823) % ${2 * scale.perKeyDay - 1}), to_timestamp(${(T0 + DAYS * DAY_MS) / 1000}), now() FROM bench_keys k`);
    await c.query('RESET ALL');
    t = process.hrtime.bigint();
    // VACUUM too: the visibility map lets the walk read the index alone (autovacuum does this to past days).
    await c.query('VACUUM (ANALYZE) cellar.stock_history, cellar.regional_stock');
    const vacuumS = seconds(t);
    const { rows: size } = await c.query<{ heap: string; idx: string; parts: string }>(
      `SELECT sum(pg_relation_size(relid))::bigint AS heap, sum(pg_indexes_size(relid))::bigint AS idx, count(*) FILTER (WHERE isleaf) AS parts
         FROM pg_partition_tree('cellar.stock_history')`);
    const rows = rowCount ?? 0;
    return {
      rows, rowsPerDay: Math.round(rows / DAYS), changesPerS: round2(rows / DAYS / 86_400), genS: round2(genS), indexS: round2(indexS), vacuumS: round2(vacuumS),
      heapMiB: Math.round(Number(size[0]!.heap) / 2 ** 20), indexMiB: Math.round(Number(size[0]!.idx) / 2 ** 20), partitions: Number(size[0]!.parts),
    };
  } finally {
    c.release();
  }
}

/** Latencies of one shape: ms per call, per measured round; with the server's CPU per call when measured. */
interface Measured { perRound: number[][]; serverCpuMsPerCall?: number; loadAvg1m: number }

/**
 * Latencies (ms) of `fn` over ROUNDS measured rounds of `n` calls each, after a warm-up round; each call
 * checked by `fn`. With `pool` (one connection), also the CPU its Postgres backend spent per call: on this
 * shared machine latency follows whatever else runs, the backend's CPU much less so.
 */
async function rounds(n: number, seed: number, fn: (rand: () => number) => Promise<void>, pool?: pg.Pool): Promise<Measured> {
  const perRound: number[][] = [];
  const cpu: number[] = [];
  const load: number[] = [];
  for (let round = 0; round <= ROUNDS; round++) {
    const rand = rng(seed + round);
    const pid = pool && (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const before = pid === undefined ? undefined : processCpuMs(pid);
    const xs: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = process.hrtime.bigint();
      await fn(rand);
      xs.push(ms(t));
    }
    if (round === 0) continue;
    perRound.push(xs);
    load.push(os.loadavg()[0]!);
    const after = pid === undefined ? undefined : processCpuMs(pid);
    // The same backend all round (a pool of one connection, not recycled while busy).
    if (before !== undefined && after !== undefined && (await pool!.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid === pid) cpu.push((after - before) / n);
  }
  return { perRound, ...(cpu.length === ROUNDS ? { serverCpuMsPerCall: round2(median(cpu)) } : {}), loadAvg1m: round2(median(load)) };
}

/** p99 per round (the runs), with the p50/p99/max of every measured call in details. */
function latency(name: string, m: Measured, details: Record<string, unknown>, target?: number): BenchResult {
  const all = m.perRound.flat();
  return result(name, 'ms', m.perRound.map((xs) => percentile(xs, 99)), {
    higherIsBetter: false, ...(target === undefined ? {} : { target }),
    details: {
      p50Ms: round2(percentile(all, 50)), p99Ms: round2(percentile(all, 99)), maxMs: round2(Math.max(...all)), p50PerRoundMs: m.perRound.map((xs) => round2(median(xs))), calls: all.length,
      ...(m.serverCpuMsPerCall === undefined ? {} : { serverCpuMsPerCall: m.serverCpuMsPerCall }), loadAvg1m: m.loadAvg1m, ...details,
    },
  });
}

/**
 * As-of and history reads over a month of stock history, on a private Postgres (a database in ICU en-US, as
 * the compose stack's is in en_US), with the real functions (`stockAsOf`, `historyOf`) and through the read
 * API (in this process, over HTTP): the demo's key space (3 regions × 3,300 SKUs: every key a demo supplier
 * can stock), 30 daily partitions made by `maintainHistory`, at two scales (99k and 396k rows a day: 1.1
 * and 4.6 changes/s, 0.2% and 0.9% of the demo's 500/s; a month at 500/s is 1.3G rows). Per scale: the
 * first page (100 SKUs) of a random region as of a random time of the month, as of the month's last day
 * (every partition), after a random SKU and under a prefix; one SKU's changes over one day; p99 per round
 * of 30 calls (100 for history), 5 rounds after a warm-up, with the Postgres backend's CPU per call. The old
 * DISTINCT ON query is timed on a few of the same reads (and must answer the same), and EXPLAIN ANALYZE of
 * both at the month's end is in the details. Target: as-of p99 ≤ 100 ms.
 */
export async function historyBenchmarks(): Promise<BenchResult[]> {
  const keys = demoKeys();
  const regions = [...new Set(keys.map((k) => k.region))].sort();
  const prefixes = [...new Set(keys.map((k) => k.sku.replace(/-\d{4}-\d{4}(-magnum)?$/, '-')))].sort();
  // Pages after a SKU start within the first 90% of the region's SKUs (so that the page is not empty).
  const skusOf = new Map(regions.map((r) => [r, keys.filter((k) => k.region === r).map((k) => k.sku).sort()]));
  const afterIn = (reg: string, r: () => number) => {
    const list = skusOf.get(reg)!;
    return list[Math.floor(r() * list.length * 0.9)]!;
  };
  const out: BenchResult[] = [];
  const p99ByScale: Record<string, number> = {};
  let server: LocalPostgres | undefined;
  let redis: LocalRedis | undefined;
  try {
    server = await startLocalPostgres({ walLevel: 'replica' });
    for (const scale of SCALES) {
      const db = `bench_history_${scale.label}`;
      const url = await icuDatabase(server.url, db);
      const pool = createPgPool(url, { max: 1 });
      let api: ApiServer | undefined;
      try {
        await migrate(pool);
        const loaded = await load(pool, scale, keys);
        // datlocale from Postgres 17, daticulocale before.
        const { rows: coll } = await pool.query<{ c: string }>(
          `SELECT CASE d.datlocprovider WHEN 'i' THEN 'ICU ' WHEN 'b' THEN 'builtin ' ELSE 'libc ' END || coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale', d.datcollate) AS c
             FROM pg_database d WHERE d.datname = current_database()`);
        const setup = {
          databaseCollation: coll[0]!.c,
          scale: scale.label, rowsPerDay: loaded.rowsPerDay, totalRows: loaded.rows, days: DAYS, equivalentChangesPerS: loaded.changesPerS,
          ofDemoRate: `${round2((loaded.changesPerS / DEMO_RATE) * 100)}% of ${DEMO_RATE}/s`, keys: keys.length, regions: regions.length,
          skusPerRegion: Math.round(keys.length / regions.length), meanChangesPerKeyDay: scale.perKeyDay, generationS: loaded.genS, primaryKeyBuildS: loaded.indexS,
          vacuumAnalyzeS: loaded.vacuumS, heapMiB: loaded.heapMiB, indexMiB: loaded.indexMiB, partitions: loaded.partitions,
        };
        const tag = `${scale.label}: ${DAYS} d × ${Math.round(loaded.rowsPerDay / 1000)}k rows/d = ${round2(loaded.rows / 1e6)}M rows ≈ ${loaded.changesPerS} changes/s`;
        const region = (r: () => number) => regions[Math.floor(r() * regions.length)]!;
        const randomTime = (r: () => number) => T0 + Math.floor(r() * DAYS * DAY_MS);
        const lastDay = (r: () => number) => T0 + (DAYS - 1) * DAY_MS + Math.floor(r() * DAY_MS);
        const page = async (r: () => number, asOf: (r: () => number) => number, o: { after?: boolean; prefix?: string } = {}) => {
          const reg = region(r);
          const items = await stockAsOf(pool, reg, asOf(r), { ...(o.after ? { after: afterIn(reg, r) } : {}), ...(o.prefix ? { prefix: o.prefix } : {}), limit: PAGE });
          if (!items.length) throw new Error(`as-of answered no SKU (${JSON.stringify(o)})`);
        };

        const shapes: Array<[string, (r: () => number) => Promise<void>]> = [
          ['first page, random time of the month', (r) => page(r, randomTime)],
          ['first page, last day of the month (every partition)', (r) => page(r, lastDay)],
          ['page after a random SKU, random time', (r) => page(r, randomTime, { after: true })],
          ['page of a prefix (an appellation), random time', (r) => page(r, randomTime, { prefix: prefixes[Math.floor(r() * prefixes.length)]! })],
        ];
        let firstPageP50 = NaN;
        for (const [i, [label, fn]] of shapes.entries()) {
          const m = await rounds(AS_OF_PER_ROUND, 100 * i + 1, fn, pool);
          const res = latency(`as-of p99, ${label} (stockAsOf, ${PAGE} SKUs; ${tag})`, m, i === 0 ? setup : { scale: scale.label }, TARGET_P99_MS);
          if (i === 0) {
            p99ByScale[scale.label] = res.median;
            firstPageP50 = Number((res.details as { p50Ms: number }).p50Ms);
          }
          out.push(res);
        }
        const hist = await rounds(HISTORY_PER_ROUND, 900, async (r) => {
          const k = keys[Math.floor(r() * keys.length)]!;
          const day = T0 + Math.floor(r() * DAYS) * DAY_MS;
          const rows = await historyOf(pool, k.region, k.sku, { fromMs: day, toMs: day + DAY_MS, limit: DAY_PAGE });
          if (!rows.length) throw new Error(`no history for ${k.region}|${k.sku} on ${new Date(day).toISOString()}`);
        }, pool);
        out.push(latency(`history p99, one SKU over one day (historyOf; ${tag})`, hist, { scale: scale.label, meanRowsPerAnswer: scale.perKeyDay }));

        // The old query on a few of the same reads: its time, and the same answer as stockAsOf.
        const r = rng(4242);
        const oldMs: number[] = [];
        for (let i = 0; i < scale.baseline; i++) {
          const reg = region(r);
          const at = randomTime(r);
          const t = process.hrtime.bigint();
          const { rows } = await pool.query<{ sku: string; bottles: string; version: string }>(OLD_AS_OF, [reg, at, '', null, PAGE]);
          oldMs.push(ms(t));
          const now = await stockAsOf(pool, reg, at, { limit: PAGE });
          if (JSON.stringify(rows.map((x) => [x.sku, Number(x.bottles), Number(x.version)])) !== JSON.stringify(now.map((x) => [x.sku, x.bottles, x.version]))) {
            throw new Error(`stockAsOf and the old query disagree for ${reg} as of ${new Date(at).toISOString()}`);
          }
        }
        const plans: PlanSummary[] = [];
        const endAt = T0 + DAYS * DAY_MS - 60_000;
        await stockAsOf(explaining(pool, plans), regions[0]!, endAt, { limit: PAGE });
        await explaining(pool, plans).query(OLD_AS_OF, [regions[0]!, endAt, '', null, PAGE]);
        out.push(result(`as-of, old DISTINCT ON query, first page, random time (${tag})`, 'ms', oldMs, {
          higherIsBetter: false,
          details: { scale: scale.label, queries: oldMs.length, sameAnswerAsStockAsOf: true, newP50Ms: firstPageP50, oldOverNewP50: round2(median(oldMs) / firstPageP50), plansAtMonthEnd: plans },
        }));

        if (scale === SCALES.at(-1)) {
          // Through the read API (Fastify in this process, HTTP over loopback): GET /v1/stock/{region}?asOf= and the history route.
          redis = await startLocalRedis();
          api = await createApiServer({ pgUrl: url, redisUrl: redis.url, log: createLogger('bench-history', 'silent'), metrics: new CellarMetrics(false) });
          const base = await api.listen(0, '127.0.0.1');
          const { key } = await createApiKey(pool, { name: 'bench', role: 'reader', rateLimitPerS: 0 });
          const get = async (path: string) => {
            const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${key}` } });
            const body = (await res.json()) as { items?: unknown[]; changes?: unknown[] };
            if (res.status !== 200 || !(body.items ?? body.changes)?.length) throw new Error(`GET ${path} answered ${res.status} ${JSON.stringify(body).slice(0, 200)}`);
          };
          const asOfApi = await rounds(AS_OF_PER_ROUND, 500, (r) => get(`/v1/stock/${region(r)}?asOf=${new Date(randomTime(r)).toISOString()}`));
          out.push(latency(`api as-of p99, GET /v1/stock/{region}?asOf= (first page of ${PAGE}), random time (${tag})`, asOfApi, { scale: scale.label }, TARGET_P99_MS));
          const histApi = await rounds(HISTORY_PER_ROUND, 600, (r) => {
            const k = keys[Math.floor(r() * keys.length)]!;
            const day = T0 + Math.floor(r() * DAYS) * DAY_MS;
            return get(`/v1/stock/${k.region}/${encodeURIComponent(k.sku)}/history?from=${day}&to=${day + DAY_MS}`);
          });
          out.push(latency(`api history p99, GET /v1/stock/{region}/{sku}/history over one day (${tag})`, histApi, { scale: scale.label }));
        }
      } finally {
        await api?.close().catch(() => undefined);
        await pool.end().catch(() => undefined);
      }
      // One scale's data at a time on disk.
      const admin = createPgPool(server.url, { max: 1 });
      await admin.query(`DROP DATABASE IF EXISTS ${db}`).finally(() => admin.end());
    }
    const [small, month] = SCALES.map((s) => p99ByScale[s.label]!);
    out.push(result('as-of p99 growth from the small to the month scale (first page, random time; rows per day ×4)', 'ratio', [round2(month! / small!)], { higherIsBetter: false, details: { smallP99Ms: small, monthP99Ms: month, rowsPerDayRatio: SCALES[1]!.perKeyDay / SCALES[0]!.perKeyDay } }));
    return out;
  } finally {
    await redis?.destroy().catch(() => undefined);
    await server?.destroy().catch(() => undefined);
  }
}
