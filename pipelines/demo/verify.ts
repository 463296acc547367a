import pg from 'pg';
import type { Redis } from 'ioredis';
import { readRegionalStock } from '../../sinks/postgres/read.js';
import { readRegionSnapshot } from '../../sinks/redis/read.js';
import type { CellarMetrics } from '../core/metrics.js';
import { MAGNUM_ML, skuEntries, type DemoSupplier } from './catalog.js';
import { openSupplierDb } from './supplier-db.js';
import { histogramQuantile } from '../core/histogram.js';

/** A regional total as expected from the suppliers' rows: bottles of one canonical SKU, all of one size. */
export interface Expected {
  bottles: number;
  bottleSizeMl: number;
}

/** region → canonical SKU → expected total. */
export type Totals = Map<string, Map<string, Expected>>;

/**
 * The SKU map as a table in the supplier's own SQL (`m(code, ml, sku)`), from one JSON parameter `$1`.
 */
function mapTable(s: DemoSupplier): string {
  return s.engine === 'postgres'
    ? 'jsonb_to_recordset($1::jsonb) AS m(code text, ml integer, sku text)'
    : "JSON_TABLE($1, '$[*]' COLUMNS (code VARCHAR(64) PATH '$.code', ml INT PATH '$.ml', sku VARCHAR(255) PATH '$.sku')) AS m";
}

/**
 * The supplier's totals per (canonical SKU, bottle size, warehouse), in one SQL statement over its own
 * table: each row's code and bottle size are joined to the demo's SKU map, which gives each size of a
 * wine its own canonical SKU, and the rows are summed grouped by that SKU. Rows the map does not cover
 * come out with a null SKU.
 */
export function totalsSql(s: DemoSupplier): string {
  const pg = s.engine === 'postgres';
  const whole = s.sql.whole ?? '1 = 1';
  // MariaDB joins a JSON_TABLE by nested loops unless hash joins are allowed (join_cache_level 4): 40x slower.
  return `${pg ? '' : 'SET STATEMENT join_cache_level = 4 FOR '}SELECT m.sku AS sku, m.ml AS ml, t.${s.whCol} AS warehouse,
                 ${pg ? `sum(${s.sql.bottles})::bigint` : `CAST(SUM(${s.sql.bottles}) AS SIGNED)`} AS bottles,
                 sum(CASE WHEN ${whole} THEN 0 ELSE 1 END) AS fractional, min(${s.sql.code}) AS code, min(${s.sql.size}) AS row_ml
            FROM ${s.table} t LEFT JOIN ${mapTable(s)} ON m.code = ${s.sql.code} AND m.ml = ${s.sql.size}
           GROUP BY m.sku, m.ml, t.${s.whCol}`;
}

/**
 * The regional totals computed straight from the suppliers' rows: each supplier's own SQL converts its
 * unit to bottles and sums them per canonical SKU derived from (code, bottle size) by the demo catalog
 * (not Cellar's mapping code or registry files), so 750 ml bottles and magnums of one code are two
 * totals; the warehouse gives the region. Throws if a row is not a whole number of bottles, or has a
 * code or size outside the catalog.
 */
export async function expectedTotals(suppliers: Array<{ supplier: DemoSupplier; url: string }>): Promise<Totals> {
  type Row = { sku: string | null; ml: number | string | null; warehouse: string; bottles: string; fractional: string | number; code: string; row_ml: string | number };
  const perSupplier = await Promise.all(suppliers.map(async ({ supplier, url }) => {
    const c = await openSupplierDb(supplier.engine, url);
    try {
      return { supplier, rows: await c.query<Row>(totalsSql(supplier), [JSON.stringify(skuEntries(supplier))]) };
    } finally {
      await c.end();
    }
  }));
  const totals: Totals = new Map();
  for (const { supplier, rows } of perSupplier) {
    for (const r of rows) {
      if (Number(r.fractional) > 0) throw new Error(`${supplier.id}: ${r.code} at ${r.warehouse} is not a whole number of bottles`);
      const region = supplier.regions[r.warehouse];
      if (r.sku === null || !region) throw new Error(`${supplier.id}: row ${r.code} (${r.row_ml} ml) at ${r.warehouse} is outside the demo catalog`);
      const m = totals.get(region) ?? new Map<string, Expected>();
      totals.set(region, m);
      const cur = m.get(r.sku);
      if (cur && cur.bottleSizeMl !== Number(r.ml)) throw new Error(`${r.sku} derived for ${cur.bottleSizeMl} ml and ${r.ml} ml bottles`);
      m.set(r.sku, { bottles: (cur?.bottles ?? 0) + Number(r.bottles), bottleSizeMl: Number(r.ml) });
    }
  }
  return totals;
}

/** How each region compares, Postgres and Redis against the expected totals (missing counts as 0). */
export interface RegionCheck {
  region: string;
  /**
   * The region's SKUs as the dashboard counts them (`GET /v1/regions`, pipelines/api/stock-reader.ts):
   * its rows in `cellar.regional_stock`, one per SKU ever stocked there, a total now at 0 bottles included.
   */
  skus: number;
  /** Of those, SKUs of magnums (1500 ml). */
  magnums: number;
  /** Bottles of those rows, as the dashboard sums them. */
  bottles: number;
  postgres: boolean;
  redis: boolean;
  /** Every `cellar.regional_stock` row of the region has its SKU's catalog size (and so do the expected totals). */
  sizes: boolean;
  /** Keys that differ in Postgres / Redis; rows whose bottle size is not the catalog's. */
  pgDiff: number;
  redisDiff: number;
  sizeDiff: number;
  /** Totals compared, Postgres rows whose size was checked. */
  keys: number;
  rows: number;
}

function diff(expected: Map<string, Expected>, actual: Map<string, number>): number {
  let n = 0;
  for (const k of new Set([...expected.keys(), ...actual.keys()])) if ((expected.get(k)?.bottles ?? 0) !== (actual.get(k) ?? 0)) n++;
  return n;
}

/**
 * Reads `cellar.regional_stock` and the Redis snapshots and compares them with `expected`, per (region,
 * SKU); also checks that each `regional_stock` row's `bottle_size_ml` is the size `catalog` gives its SKU.
 */
export async function checkRegions(pool: pg.Pool, redis: Redis, regions: string[], expected: Totals, catalog: Map<string, number>): Promise<RegionCheck[]> {
  const pgTotals = new Map<string, Map<string, number>>();
  const sizeDiff = new Map<string, number>();
  const rows = new Map<string, number>();
  const magnums = new Map<string, number>();
  const bottles = new Map<string, number>();
  const add = (m: Map<string, number>, region: string, n: number) => m.set(region, (m.get(region) ?? 0) + n);
  for (const r of await readRegionalStock(pool)) {
    const m = pgTotals.get(r.region) ?? new Map<string, number>();
    pgTotals.set(r.region, m);
    m.set(r.sku, r.bottles);
    add(rows, r.region, 1);
    add(magnums, r.region, r.bottleSizeMl === MAGNUM_ML ? 1 : 0);
    add(bottles, r.region, r.bottles);
    if (r.bottleSizeMl === null || r.bottleSizeMl !== catalog.get(r.sku)) add(sizeDiff, r.region, 1);
  }
  const out: RegionCheck[] = [];
  for (const region of new Set([...regions, ...expected.keys(), ...pgTotals.keys()])) {
    const exp = expected.get(region) ?? new Map<string, Expected>();
    const pgDiff = diff(exp, pgTotals.get(region) ?? new Map());
    const redisDiff = diff(exp, await readRegionSnapshot(redis, region));
    const sizes = (sizeDiff.get(region) ?? 0) + [...exp].filter(([sku, e]) => catalog.get(sku) !== e.bottleSizeMl).length;
    out.push({
      region, skus: rows.get(region) ?? 0, magnums: magnums.get(region) ?? 0, bottles: bottles.get(region) ?? 0,
      postgres: pgDiff === 0, redis: redisDiff === 0, sizes: sizes === 0, pgDiff, redisDiff, sizeDiff: sizes,
      keys: new Set([...exp.keys(), ...(pgTotals.get(region)?.keys() ?? [])]).size, rows: rows.get(region) ?? 0,
    });
  }
  return out.sort((a, b) => a.region.localeCompare(b.region));
}

/** Cumulative bucket counts of the freshness histogram (sink `embedded`), by upper bound. */
export type Buckets = Array<[le: number, count: number]>;

/** Reads the freshness histogram's cumulative buckets. */
export async function freshnessBuckets(metrics: CellarMetrics): Promise<Buckets> {
  const { values } = await metrics.freshness.get();
  return values
    .filter((v) => v.metricName === 'cellar_freshness_seconds_bucket' && v.labels.sink === 'embedded')
    .map((v): [number, number] => {
      const le = (v.labels as Record<string, string | number | undefined>).le;
      return [le === '+Inf' ? Infinity : Number(le), v.value];
    })
    .sort((a, b) => a[0] - b[0]);
}

/** The q-quantile (seconds) of the observations between two bucket readings; undefined without observations. */
export function quantile(q: number, now: Buckets, before: Buckets = []): number | undefined {
  const base = new Map(before);
  return histogramQuantile(q, now.map(([le, c]): [number, number] => [le, c - (base.get(le) ?? 0)]));
}

/** Seconds as a short human figure: `42 ms`, `1.3 s`, or `-`. */
export function secs(s: number | undefined): string {
  if (s === undefined) return '-';
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`;
}
