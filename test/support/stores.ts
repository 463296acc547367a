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
