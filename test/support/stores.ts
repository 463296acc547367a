import type pg from 'pg';
import type { Redis } from 'ioredis';
import { readRegionalStock } from '../../sinks/postgres/read.js';
import { readRegionSnapshot } from '../../sinks/redis/read.js';
import { diffTotals, type Totals } from './pipeline.js';

/**
 * Waits until `cellar.regional_stock` and the Redis snapshots of `regions` equal `expected()` (recomputed
 * on every poll from the suppliers' rows); returns the remaining differences (empty when they converged).
 * Stores that are not readable yet (not migrated, not started) count as not converged.
 */
export async function storesConverged(expected: () => Promise<Totals>, pool: pg.Pool, redis: Redis, regions: string[], timeoutMs = 90_000): Promise<string[]> {
  let diff = ['not checked'];
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const want = await expected();
      const pgTotals: Totals = new Map(
        (await readRegionalStock(pool)).filter((r) => regions.includes(r.region)).map((r) => [`${r.region}|${r.sku}`, { bottles: r.bottles, contributors: r.contributors }]),
      );
      const redisTotals = new Map<string, number>();
      for (const region of regions) for (const [sku, b] of await readRegionSnapshot(redis, region)) redisTotals.set(`${region}|${sku}`, b);
      diff = diffTotals(want, pgTotals, redisTotals);
      if (diff.length === 0) return diff;
    } catch (err) {
      diff = [`not readable yet: ${(err as Error).message}`];
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return diff;
}

/** Adds one supplier row's bottles to `out` under `region|sku`. */
export function addRow(out: Totals, region: string, sku: string, bottles: number): void {
  const k = `${region}|${sku}`;
  const cur = out.get(k) ?? { bottles: 0, contributors: 0 };
  out.set(k, { bottles: cur.bottles + bottles, contributors: cur.contributors + 1 });
}

/**
 * What the stock history must say of every total in `regions` (a fresh database, history kept from the
 * start): versions 1..N each once, each row's total the previous one plus its delta, and the last row
 * equal to the total in `cellar.regional_stock`. Returns the keys that disagree, with why.
 */
export async function historyDisagreements(pool: pg.Pool, regions: string[]): Promise<string[]> {
  const { rows } = await pool.query<{ region: string; sku: string; total: string; version: string; n: string; maxv: string; sum: string; last: string | null; broken: string }>(
    `WITH h AS (
       SELECT region, sku, version, bottles, delta,
              bottles - delta - coalesce(lag(bottles) OVER (PARTITION BY region, sku ORDER BY version), 0) AS gap
         FROM cellar.stock_history WHERE region = ANY($1))
     SELECT r.region, r.sku, r.bottles AS total, r.version,
            count(h.version) AS n, coalesce(max(h.version), 0) AS maxv, coalesce(sum(h.delta), 0) AS sum,
            (array_agg(h.bottles ORDER BY h.version DESC))[1] AS last, count(*) FILTER (WHERE h.gap <> 0) AS broken
       FROM cellar.regional_stock r LEFT JOIN h ON h.region = r.region AND h.sku = r.sku
      WHERE r.region = ANY($1) GROUP BY r.region, r.sku, r.bottles, r.version`, [regions]);
  const out: string[] = [];
  for (const r of rows) {
    const why = [
      Number(r.n) !== Number(r.version) || Number(r.maxv) !== Number(r.version) ? `${r.n} history rows up to version ${r.maxv}, total at version ${r.version}` : '',
      Number(r.sum) !== Number(r.total) ? `deltas sum to ${r.sum}, total ${r.total}` : '',
      r.last !== null && Number(r.last) !== Number(r.total) ? `last history row ${r.last}, total ${r.total}` : '',
      Number(r.broken) ? `${r.broken} rows whose delta does not follow from the row before` : '',
    ].filter(Boolean);
    if (why.length) out.push(`${r.region}|${r.sku}: ${why.join('; ')}`);
  }
  return out;
}
