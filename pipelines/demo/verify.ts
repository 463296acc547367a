import pg from 'pg';
import type { Redis } from 'ioredis';
import { readRegionalStock } from '../../sinks/postgres/read.js';
import { readRegionSnapshot } from '../../sinks/redis/read.js';
import type { CellarMetrics } from '../core/metrics.js';
import { skuTable, type DemoSupplier } from './catalog.js';
import { openSupplierDb } from './supplier-db.js';
import { histogramQuantile } from '../core/histogram.js';

/** region → canonical SKU → bottles. */
export type Totals = Map<string, Map<string, number>>;

/**
 * The regional totals computed straight from the suppliers' rows: each supplier's own SQL converts its
 * unit to bottles, then the demo catalog (not Cellar's mapping code or registry files) gives the
 * canonical SKU and the warehouse's region. Throws if a row is not a whole number of bottles.
 */
export async function expectedTotals(suppliers: Array<{ supplier: DemoSupplier; url: string }>): Promise<Totals> {
  const totals: Totals = new Map();
  for (const { supplier, url } of suppliers) {
    const skus = skuTable(supplier);
    const c = await openSupplierDb(supplier.engine, url);
    try {
      const rows = await c.query<{ code: string; warehouse: string; bottles: string; whole?: boolean }>(supplier.sqlBottles);
      for (const r of rows) {
        if (r.whole === false) throw new Error(`${supplier.id}: ${r.code} at ${r.warehouse} is not a whole number of bottles`);
        const sku = skus.get(r.code);
        const region = supplier.regions[r.warehouse];
        if (!sku || !region) throw new Error(`${supplier.id}: row ${r.code} at ${r.warehouse} is outside the demo catalog`);
        const m = totals.get(region) ?? new Map<string, number>();
        totals.set(region, m);
        m.set(sku, (m.get(sku) ?? 0) + Number(r.bottles));
      }
    } finally {
      await c.end();
    }
  }
  return totals;
}

/** How each region compares, Postgres and Redis against the expected totals (missing counts as 0). */
export interface RegionCheck {
  region: string;
  skus: number;
  bottles: number;
  postgres: boolean;
  redis: boolean;
  /** Keys that differ in Postgres / Redis. */
  pgDiff: number;
  redisDiff: number;
}

function diff(expected: Map<string, number>, actual: Map<string, number>): number {
  let n = 0;
  for (const k of new Set([...expected.keys(), ...actual.keys()])) if ((expected.get(k) ?? 0) !== (actual.get(k) ?? 0)) n++;
  return n;
}

/** Reads `cellar.regional_stock` and the Redis snapshots and compares them with `expected`. */
export async function checkRegions(pool: pg.Pool, redis: Redis, regions: string[], expected: Totals): Promise<RegionCheck[]> {
  const pgTotals: Totals = new Map();
  for (const r of await readRegionalStock(pool)) {
    const m = pgTotals.get(r.region) ?? new Map<string, number>();
    pgTotals.set(r.region, m);
    m.set(r.sku, r.bottles);
  }
  const out: RegionCheck[] = [];
  for (const region of new Set([...regions, ...expected.keys(), ...pgTotals.keys()])) {
    const exp = expected.get(region) ?? new Map<string, number>();
    const pgDiff = diff(exp, pgTotals.get(region) ?? new Map());
    const redisDiff = diff(exp, await readRegionSnapshot(redis, region));
    const values = [...exp.values()];
    out.push({ region, skus: values.filter((b) => b > 0).length, bottles: values.reduce((a, b) => a + b, 0), postgres: pgDiff === 0, redis: redisDiff === 0, pgDiff, redisDiff });
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
